"""Pure logic for drawing big images fast (no Qt): image pyramid, level of detail, tile grids.

- pyramid: ``levels[k]`` is the image downsampled by ``2**k`` (level 0 = the image itself, not
  copied); each level halves the previous one (``cv2.INTER_LINEAR`` at exactly 1/2 averages
  2 x 2 blocks), down to :data:`MIN_LEVEL_SIDE` pixels.
- level of detail: the coarsest level whose pixels are still at least one screen pixel
  (``2**k <= 1 / scale``), so a paint reads at most ~4 level pixels per screen pixel.
- tiles: :data:`TILE` x :data:`TILE` pixels of one level, addressed ``(level, tx, ty)``.
- crops: ``(x0, y0, mask)``: ``mask`` is the ``[h, w]`` bool box of the instance whose top-left
  pixel is ``(x0, y0)`` in the image (:func:`annotator.masks.decode_rle_crop`: never allocates
  the full ``[H, W]`` mask).
"""

from __future__ import annotations

import math
import cv2
import numpy as np

TILE = 512
MIN_LEVEL_SIDE = 256


def build_pyramid(image: np.ndarray, min_side: int = MIN_LEVEL_SIDE) -> list[np.ndarray]:
    """``[image, image/2, image/4, ...]`` until the longer side is ``<= min_side``."""
    levels = [image]
    while max(levels[-1].shape[:2]) > min_side:
        levels.append(halve(levels[-1]))
    return levels


def level_for_scale(scale: float, n_levels: int) -> int:
    """Pyramid level to draw at ``scale`` view pixels per image pixel (0 when zoomed in)."""
    if scale <= 0 or n_levels <= 1:
        return 0
    return int(min(n_levels - 1, max(0, math.floor(math.log2(1.0 / scale) + 1e-9))))


def visible_tiles(rect: tuple[float, float, float, float], level: int, height: int, width: int,
                  tile: int = TILE) -> list[tuple[int, int]]:
    """Tiles ``(tx, ty)`` of ``level`` that meet ``rect`` = ``(x0, y0, x1, y1)`` in level-0
    (image) pixels, for an image of ``height`` x ``width`` level-0 pixels."""
    span = tile * (1 << level)                      # level-0 pixels per tile side
    nx, ny = math.ceil(width / span), math.ceil(height / span)
    x0, y0, x1, y1 = rect
    tx0, ty0 = max(0, int(math.floor(x0 / span))), max(0, int(math.floor(y0 / span)))
    tx1, ty1 = min(nx - 1, int(math.ceil(x1 / span)) - 1), min(ny - 1, int(math.ceil(y1 / span)) - 1)
    return [(tx, ty) for ty in range(ty0, ty1 + 1) for tx in range(tx0, tx1 + 1)]


def tile_array(levels: list[np.ndarray], level: int, tx: int, ty: int, tile: int = TILE) -> np.ndarray:
    """The pixels of one tile (a view into the level, clipped at the image border)."""
    arr = levels[level]
    return arr[ty * tile:(ty + 1) * tile, tx * tile:(tx + 1) * tile]


def tile_rect(level: int, tx: int, ty: int, shape: tuple[int, int], tile: int = TILE) -> tuple[float, ...]:
    """Where a tile of ``shape`` (its ``(h, w)``) lies in level-0 pixels: ``(x, y, w, h)``."""
    f = float(1 << level)
    return (tx * tile * f, ty * tile * f, shape[1] * f, shape[0] * f)


def halve(image: np.ndarray) -> np.ndarray:
    """One pyramid step: half size (2 x 2 average), at least 1 x 1."""
    h, w = image.shape[:2]
    return cv2.resize(image, (max(1, (w + 1) // 2), max(1, (h + 1) // 2)), interpolation=cv2.INTER_LINEAR)


# ---------------------------------------------------------------------------- big images
#: Images with more pixels than this open with a reduced preview, the full decode off the GUI thread.
BIG_IMAGE_PIXELS = 16_000_000
_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def preview_factor(height: int, width: int, min_side: int = 1024) -> int:
    """The largest of 8, 4, 2 that keeps a preview's longer side ``>= min_side`` (1: none)."""
    return next((f for f in (8, 4, 2) if max(height, width) // f >= min_side), 1)


def load_preview(path, height: int, width: int) -> tuple[np.ndarray, int] | None:
    """``(rgb, factor)``: the image decoded at ``1/factor`` size (JPEG: scaled in the decoder,
    several times faster than a full decode), or ``None`` (small image or unreadable file)."""
    factor = preview_factor(height, width)
    if factor == 1:
        return None
    img = cv2.imread(str(path), _REDUCED[factor])
    if img is None:
        return None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), factor
