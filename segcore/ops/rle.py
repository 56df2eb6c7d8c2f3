"""COCO RLE of box-local masks, on top of :mod:`pycocotools.mask` (the encoder), without a
full-image array.

An RLE (COCO ``{"size": [H, W], "counts": ...}``) lists run lengths of the mask read column by
column (column-major, Fortran order), starting with a background run. A mask that is zero
outside its box's columns ``[x0, x0 + w)`` is therefore ``x0 x H`` background pixels, then the
``H x w`` strip of its columns, then ``(W - x0 - w) x H`` background pixels: the strip is encoded
by pycocotools and the two outer background runs are added to its first and last runs.

Symbols: H x W image, h x w the crop (box window) of one instance.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from pycocotools import mask as mask_utils

__all__ = ["rle_counts", "box_mask_to_rle"]


def rle_counts(rle: Mapping) -> tuple[int, int, np.ndarray]:
    """``(H, W, counts)`` of a COCO RLE: the run lengths, column-major, starting with background.

    The one reader of RLE counts (segcore and the annotator); encoding and decoding pixels is
    pycocotools' job. A compressed ``counts`` string (bytes or ASCII str) is read the way
    pycocotools' ``rleFrString`` (``maskApi.c``) reads it: 6-bit groups from ASCII 48, bit 0x20 =
    "more groups follow", bit 0x10 of the last group = sign, and from the fourth count on (index
    ``m > 2``) each count is stored as the difference to the count two places before. An
    uncompressed RLE (``counts`` a list of ints) is returned as it is.

    Returns:
        ``H``, ``W`` (ints) and ``counts`` ``[M]`` int64.

    Raises:
        ValueError: a character outside the 64-symbol alphabet, or a string ending inside a number.
    """
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, (list, tuple, np.ndarray)):
        return h, w, np.asarray(counts, dtype=np.int64)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    b = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if b.size == 0:
        return h, w, np.zeros(0, np.int64)
    if ((b < 0) | (b >= 64)).any():
        bad = chr(int(b[(b < 0) | (b >= 64)][0]) + 48)
        raise ValueError(f"invalid character {bad!r} in RLE counts")
    last = (b & 0x20) == 0                              # the last character of each number
    if not last[-1]:
        raise ValueError("RLE counts string ends inside a number")
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    group = np.cumsum(np.concatenate(([0], last[:-1].astype(np.int64))))
    k = np.arange(b.size) - starts[group]
    x = np.add.reduceat((b & 0x1F) << (5 * k), starts)
    neg = (b[ends] & 0x10) != 0
    x[neg] -= np.left_shift(np.int64(1), 5 * (ends[neg] - starts[neg] + 1))
    cnts = x.copy()
    cnts[1::2] = np.cumsum(x[1::2])                     # m > 2: x[m] += x[m - 2]
    cnts[2::2] = np.cumsum(x[2::2])
    return h, w, cnts


def box_mask_to_rle(crop: np.ndarray, x0: int, y0: int, height: int, width: int) -> dict:
    """Compressed RLE of the ``height x width`` mask that is ``crop`` at ``(x0, y0)`` and 0 elsewhere.

    Args:
        crop: ``[h, w]`` bool (or 0/1) mask of the window ``[x0, x0 + w) x [y0, y0 + h)``, which
            must lie inside the image.
        x0, y0: the window's top-left pixel in the image.
        height, width: ``H``, ``W`` of the image.

    Returns:
        ``{"size": [H, W], "counts": str}``, the same dict as ``pycocotools.mask.encode`` of the
        full mask (counts decoded to ASCII). Memory and work follow ``H x w``, not ``H x W``.

    Raises:
        ValueError: the window leaves the image.
    """
    crop = np.asarray(crop)
    h, w = int(crop.shape[0]), int(crop.shape[1])
    x0, y0, height, width = int(x0), int(y0), int(height), int(width)
    if x0 < 0 or y0 < 0 or x0 + w > width or y0 + h > height:
        raise ValueError(f"box mask window x {x0}..{x0 + w}, y {y0}..{y0 + h} leaves the {width} x {height} image")
    if w == 0 or h == 0 or not crop.any():
        return _str_counts(mask_utils.frPyObjects({"size": [height, width], "counts": [height * width]},
                                                  height, width))
    strip = np.zeros((height, w), dtype=np.uint8, order="F")
    strip[y0:y0 + h] = crop
    counts = rle_counts(mask_utils.encode(strip))[2].tolist()
    counts[0] += x0 * height
    tail = (width - x0 - w) * height
    if len(counts) % 2:  # the strip ends with a background run
        counts[-1] += tail
    elif tail:
        counts.append(tail)
    return _str_counts(mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width))


def _str_counts(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
