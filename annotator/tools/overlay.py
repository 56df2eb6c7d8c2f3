"""Mask overlays: decode COCO RLE masks and paint them into one RGBA image (numpy + OpenCV).

Formats:
- masks: ``[N, H, W]`` bool, image resolution; index order is the drawing order (last = topmost).
- colours: ``[N, 3]`` uint8 RGB (or a sequence of ``(r, g, b)``).
- overlay: ``[H, W, 4]`` uint8 **RGBA**, straight (non-premultiplied) alpha, 0 where no mask.
- RLE: pycocotools compressed RLE dict ``{"size": [H, W], "counts": str}``.

No per-pixel Python loops: fills are boolean-index assignments, outlines a morphological edge
(``mask & ~erode(mask)``), one loop iteration per instance.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from annotator.tools.colors import RGB, category_color
from annotator.masks import decode_rle, decode_rle_crop

#: Outline colour of the selected instance (RGB).
HIGHLIGHT_COLOR: RGB = (255, 255, 255)


def decode_masks(rles: Sequence[Mapping], height: int, width: int) -> np.ndarray:
    """Decode RLEs into ``[N, H, W]`` bool (``[0, H, W]`` when empty).

    A mask whose size differs from ``(height, width)`` is resized (nearest) to fit.
    """
    out = np.zeros((len(rles), height, width), dtype=bool)
    for i, rle in enumerate(rles):
        m = decode_rle(rle)
        if m.shape != (height, width):
            m = cv2.resize(m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
        out[i] = m
    return out


def mask_outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Inner edge of a ``[H, W]`` bool mask, ``width`` pixels thick: ``mask & ~erode(mask)``.

    The image border counts as outside, so a mask touching the border is outlined there too.
    """
    if width <= 0 or not mask.any():
        return np.zeros_like(mask, dtype=bool)
    m = np.pad(mask.astype(np.uint8), 1)
    kernel = np.ones((3, 3), np.uint8)
    eroded = cv2.erode(m, kernel, iterations=int(width), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (m.astype(bool) & ~eroded.astype(bool))[1:-1, 1:-1]


def build_overlay(
    masks: np.ndarray,
    colors: Sequence[RGB] | np.ndarray,
    *,
    fill_alpha: float = 0.4,
    outline_width: int = 2,
    filled: Sequence[bool] | None = None,
    highlight: int | None = None,
) -> np.ndarray:
    """Paint instances into one ``[H, W, 4]`` uint8 RGBA overlay (later instances on top).

    Args:
        masks: ``[N, H, W]`` bool.
        colors: ``N`` RGB colours.
        fill_alpha: opacity of the translucent fill, 0..1; outlines are opaque.
        outline_width: outline thickness in pixels (0: no outline).
        filled: per instance, whether to draw the fill (default all); outlines always drawn.
        highlight: index of the selected instance: drawn last with a thicker white outline.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {masks.shape}")
    n, h, w = masks.shape
    colors = np.asarray(colors, dtype=np.uint8).reshape(n, 3)
    rgba = np.zeros((h, w, 4), dtype=np.uint8)
    fill_a = np.uint8(round(255 * float(np.clip(fill_alpha, 0.0, 1.0))))
    fills = [True] * n if filled is None else list(filled)
    order = [i for i in range(n) if i != highlight]
    if highlight is not None and 0 <= highlight < n:
        order.append(highlight)
    rows, cols = masks.any(axis=2), masks.any(axis=1)   # [N, H], [N, W]: one pass for all boxes
    pad = max(1, outline_width) + 2
    for i in order:
        ys, xs = np.flatnonzero(rows[i]), np.flatnonzero(cols[i])
        if ys.size == 0:
            continue
        y0, y1 = max(0, ys[0] - pad), min(h, ys[-1] + 1 + pad)
        x0, x1 = max(0, xs[0] - pad), min(w, xs[-1] + 1 + pad)
        # work on the instance's box (padded: outside it is background or the image border,
        # both count as outside for the outline)
        m, out = masks[i, y0:y1, x0:x1], rgba[y0:y1, x0:x1]
        if fills[i]:
            out[m, :3] = colors[i]
            out[m, 3] = fill_a
        if outline_width > 0:
            edge = mask_outline(m, outline_width)
            out[edge, :3] = colors[i]
            out[edge, 3] = 255
        if i == highlight:
            edge = mask_outline(m, max(1, outline_width) + 1)
            out[edge, :3] = HIGHLIGHT_COLOR
            out[edge, 3] = 255
    return rgba


@dataclass
class Label:
    """A text label near an instance: ``x``, ``y`` image pixels (top-left of the text)."""

    ann_id: int
    x: float
    y: float
    text: str
    color: RGB


class Sprite:
    """One instance drawn into its own RGBA box: ``rgba`` ``[h, w, 4]`` placed at image pixel
    ``(x0, y0)``; sprites are stacked in list order (last = topmost).

    :meth:`rgba_at` gives the box reduced by ``2**level`` on the global level grid (drawing
    when zoomed out), memoised per level; :meth:`argb32_at` the same as premultiplied
    ``QImage.Format_ARGB32_Premultiplied`` words (what a raster painter draws fastest)."""

    def __init__(self, x0: int, y0: int, rgba: np.ndarray) -> None:
        self.x0, self.y0 = int(x0), int(y0)
        self._rgba = rgba
        self._levels: dict[int, tuple[int, int, np.ndarray]] = {}
        self._argb: dict[int, tuple[int, int, np.ndarray]] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(x0={self.x0}, y0={self.y0}, shape={self.shape})"

    @property
    def rgba(self) -> np.ndarray:
        return self._rgba

    @property
    def shape(self) -> tuple[int, int]:
        """``(h, w)`` of the box (known without building :attr:`rgba`)."""
        return tuple(self._rgba.shape[:2])

    def rgba_at(self, level: int) -> tuple[int, int, np.ndarray]:
        """``(X, Y, rgba)``: the box reduced by ``f = 2**level``, covering level pixels
        ``X .. X + w'`` (level pixel ``X`` = image pixels ``X*f .. X*f + f``), so reduced boxes
        of different sprites line up on one grid. Level 0 is ``(x0, y0, rgba)``."""
        if level <= 0:
            return self.x0, self.y0, self.rgba
        got = self._levels.get(level)
        if got is None:
            got = self._levels[level] = self._reduce(level)
        return got

    def argb32_at(self, level: int) -> tuple[int, int, np.ndarray]:
        """``(X, Y, words)`` as :meth:`rgba_at`, ``words`` ``[h', w']`` uint32 premultiplied
        ARGB (``A << 24 | R << 16 | G << 8 | B``); memoised per level."""
        got = self._argb.get(max(0, level))
        if got is None:
            got = self._argb[max(0, level)] = self._argb32(max(0, level))
        return got

    def _argb32(self, level: int) -> tuple[int, int, np.ndarray]:
        X, Y, rgba = self.rgba_at(level)
        c = rgba.astype(np.uint32)
        a = c[..., 3]
        words = (a << 24) | ((c[..., 0] * a + 127) // 255 << 16) | ((c[..., 1] * a + 127) // 255 << 8) \
            | ((c[..., 2] * a + 127) // 255)
        return X, Y, np.ascontiguousarray(words, dtype=np.uint32)

    def _reduce(self, level: int) -> tuple[int, int, np.ndarray]:
        f = 1 << level
        X, Y, a = _aligned(self.rgba, self.x0, self.y0, f)
        hl, wl = a.shape[0] // f, a.shape[1] // f
        return X, Y, cv2.resize(a, (wl, hl), interpolation=cv2.INTER_AREA)


def _aligned(arr: np.ndarray, x0: int, y0: int, f: int) -> tuple[int, int, np.ndarray]:
    """``arr`` (at image pixel ``(x0, y0)``) zero-padded to whole ``f`` x ``f`` blocks of the
    image grid: ``(X, Y, padded)`` with ``padded`` starting at image pixel ``(X*f, Y*f)``."""
    X, Y = x0 // f, y0 // f
    ox, oy = x0 - X * f, y0 - Y * f
    h, w = arr.shape[:2]
    ph, pw = -(-(oy + h) // f) * f, -(-(ox + w) // f) * f
    out = np.zeros((ph, pw) + arr.shape[2:], arr.dtype)
    out[oy:oy + h, ox:ox + w] = arr
    return X, Y, out


def _rgb_word(color: RGB) -> np.uint32:
    """The colour as the uint32 word of an RGBA8888 pixel with alpha 0 (little-endian: bytes
    R, G, B, A)."""
    r, g, b = (int(c) for c in color)
    return np.uint32(r | (g << 8) | (b << 16))


_KERNEL3 = np.ones((3, 3), np.uint8)
_WHITE = np.uint32(0xFFFFFFFF)      # opaque white, straight RGBA and premultiplied ARGB alike


def _premultiplied_lut(color: RGB) -> np.ndarray:
    """``lut[a]``: the premultiplied ARGB32 word of ``color`` at alpha ``a`` (256 uint32)."""
    a = np.arange(256, dtype=np.uint32)
    r, g, b = (int(c) for c in color)
    return (a << 24) | ((r * a + 127) // 255 << 16) | ((g * a + 127) // 255 << 8) | ((b * a + 127) // 255)


def _edge(m: np.ndarray, width: int) -> np.ndarray:
    """``[h, w]`` uint8 0/1 inner edge of a uint8 0/1 mask (outside the array counts as
    outside, as in :func:`mask_outline`)."""
    er = cv2.erode(m, _KERNEL3, iterations=int(width), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return m - er


class InstanceSprite(Sprite):
    """The overlay box of one instance, built from its :class:`Crop` on demand: :attr:`rgba`
    (full resolution, pixels equal :func:`build_overlay`'s for that instance alone) on first
    use, each reduced level straight from the mask (no full-resolution box needed). Creating
    one costs nothing, so a layer of many instances is cheap until drawn."""

    def __init__(self, crop: "Crop", color: RGB, height: int, width: int, *, fill_alpha: float = 0.4,
                 outline_width: int = 2, filled: bool = True, highlight: bool = False) -> None:
        pad = max(1, outline_width) + 2
        mh, mw = crop.mask.shape
        y0, x0 = max(0, crop.y0 - pad), max(0, crop.x0 - pad)
        y1, x1 = min(height, crop.y0 + mh + pad), min(width, crop.x0 + mw + pad)
        super().__init__(x0, y0, None)
        self._shape = (y1 - y0, x1 - x0)
        self.crop, self.color = crop, tuple(int(c) for c in color)
        self.fill_a = np.uint8(round(255 * float(np.clip(fill_alpha, 0.0, 1.0))) if filled else 0)
        self.outline_width, self.highlight = int(outline_width), bool(highlight)

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    def _alpha(self, level: int) -> tuple[int, int, np.ndarray, np.ndarray | None]:
        """``(X, Y, alpha, white)`` of the box at ``level``: ``alpha`` uint8 (fill, outline
        255), ``white`` the bool highlight edge (``None`` when not highlighted). Level 0: the
        padded box at ``(x0, y0)``, exactly :func:`build_overlay`'s pixels; a coarser level is
        made from the mask's covered share per level pixel (fill alpha scaled by it), with a
        one-pixel outline (two for the highlight) of the pixels covered at least half."""
        c = self.crop
        if level <= 0:
            mh, mw = c.mask.shape
            m = np.zeros(self._shape, np.uint8)
            m[c.y0 - self.y0:c.y0 - self.y0 + mh, c.x0 - self.x0:c.x0 - self.x0 + mw] = c.mask.view(np.uint8)
            X, Y, alpha = self.x0, self.y0, m * self.fill_a
            edge_w, hl_w = self.outline_width, max(1, self.outline_width) + 1
        else:
            f = 1 << level
            X, Y, a = _aligned(c.mask.view(np.uint8) * np.uint8(255), c.x0, c.y0, f)
            cover = cv2.resize(a, (a.shape[1] // f, a.shape[0] // f), interpolation=cv2.INTER_AREA)
            m = (cover >= 128).view(np.uint8)
            alpha = ((cover.astype(np.uint16) * int(self.fill_a) + 127) // 255).astype(np.uint8)
            edge_w, hl_w = min(1, self.outline_width), 2
        if edge_w > 0:
            alpha[_edge(m, edge_w).view(bool)] = 255
        white = _edge(m, hl_w).view(bool) if self.highlight else None
        return X, Y, alpha, white

    def _straight(self, level: int) -> tuple[int, int, np.ndarray]:
        X, Y, alpha, white = self._alpha(level)
        if sys.byteorder != "little":                    # the uint32 words below are little-endian RGBA
            rgba = np.empty(alpha.shape + (4,), np.uint8)
            rgba[..., :3] = self.color
            rgba[..., 3] = alpha
            if white is not None:
                rgba[white] = 255
            return X, Y, rgba
        words = alpha.astype(np.uint32)
        words <<= 24
        words |= _rgb_word(self.color)
        if white is not None:
            words[white] = _WHITE
        return X, Y, words.view(np.uint8).reshape(alpha.shape + (4,))

    @property
    def rgba(self) -> np.ndarray:
        if self._rgba is None:
            self._rgba = self._straight(0)[2]
        return self._rgba

    def _reduce(self, level: int) -> tuple[int, int, np.ndarray]:
        return self._straight(level)

    def _argb32(self, level: int) -> tuple[int, int, np.ndarray]:
        X, Y, alpha, white = self._alpha(level)
        words = _premultiplied_lut(self.color)[alpha]
        if white is not None:
            words[white] = _WHITE
        return X, Y, words


@dataclass
class InstanceLayer:
    """What the canvas shows for one image: visible instances in drawing order (last = topmost).

    ``ann_ids[i]`` is the annotation id of ``masks[i]`` (a :class:`CropStack`, indexable like
    ``[N, H, W]`` bool), ``sprites[i]`` its overlay box. :attr:`rgba` composes the full-size
    ``[H, W, 4]`` overlay on demand (tests, small images; the canvas draws the sprites).
    """

    ann_ids: list[int]
    masks: "CropStack"
    sprites: list[Sprite]
    labels: list[Label] = field(default_factory=list)

    @property
    def rgba(self) -> np.ndarray:
        _, h, w = self.masks.shape
        return compose_sprites(self.sprites, h, w)

    def hit(self, x: float, y: float) -> int | None:
        """Annotation id of the topmost visible instance at image pixel ``(x, y)``."""
        i = self.masks.hit(x, y)
        return None if i is None else self.ann_ids[i]


def compose_sprites(sprites: Sequence[Sprite], height: int, width: int) -> np.ndarray:
    """Full ``[H, W, 4]`` overlay: later sprites replace earlier ones where they are opaque > 0
    (the same pixels :func:`build_overlay` paints)."""
    out = np.zeros((height, width, 4), np.uint8)
    for s in sprites:
        rgba = s.rgba
        h, w = rgba.shape[:2]
        box = out[s.y0:s.y0 + h, s.x0:s.x0 + w]
        src = rgba[:box.shape[0], :box.shape[1]]
        on = src[..., 3] > 0
        box[on] = src[on]
    return out


@dataclass(eq=False)
class Crop:
    """One decoded mask: ``mask`` ``[h, w]`` bool is the box at ``(x0, y0)``; ``sprites``
    memoises its overlay boxes per style so a redraw rebuilds only what changed."""

    x0: int
    y0: int
    mask: np.ndarray
    sprites: dict = field(default_factory=dict)


class CropStack:
    """``N`` masks of an ``H`` x ``W`` image kept as boxes; reads like ``[N, H, W]`` bool
    (``stack[i]`` the full mask, ``stack[i, y, x]`` one pixel, ``stack[list]`` a sub-stack,
    ``np.asarray(stack)`` the whole array) without storing full-size masks."""

    def __init__(self, crops: Sequence[Crop | None], height: int, width: int) -> None:
        self.crops = list(crops)
        self.shape = (len(self.crops), int(height), int(width))
        self.ndim, self.dtype = 3, np.dtype(bool)

    def __len__(self) -> int:
        return self.shape[0]

    def full(self, i: int) -> np.ndarray:
        out = np.zeros(self.shape[1:], bool)
        c = self.crops[i]
        if c is not None:
            out[c.y0:c.y0 + c.mask.shape[0], c.x0:c.x0 + c.mask.shape[1]] = c.mask
        return out

    def pixel(self, i: int, x: int, y: int) -> bool:
        c = self.crops[i]
        if c is None:
            return False
        yy, xx = y - c.y0, x - c.x0
        return 0 <= yy < c.mask.shape[0] and 0 <= xx < c.mask.shape[1] and bool(c.mask[yy, xx])

    def hit(self, x: float, y: float) -> int | None:
        """Index of the topmost mask covering pixel ``(x, y)`` (floored), or ``None``."""
        xi, yi = int(np.floor(x)), int(np.floor(y))
        for i in range(len(self.crops) - 1, -1, -1):
            if self.pixel(i, xi, yi):
                return i
        return None

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self.full(int(key))
        if isinstance(key, tuple) and len(key) == 3 and all(isinstance(k, (int, np.integer)) for k in key):
            return self.pixel(int(key[0]), int(key[2]), int(key[1]))
        if isinstance(key, (list, np.ndarray)):
            return CropStack([self.crops[int(i)] for i in np.arange(len(self))[key]], *self.shape[1:])
        return np.asarray(self)[key]

    def __array__(self, dtype=None, copy=None):
        out = np.stack([self.full(i) for i in range(len(self))]) if len(self) else np.zeros(self.shape, bool)
        return out if dtype is None else out.astype(dtype)


def crops_from_masks(masks: np.ndarray) -> list[Crop | None]:
    """``[N, H, W]`` bool -> boxes (``None`` for an empty mask)."""
    masks = np.asarray(masks, dtype=bool)
    out: list[Crop | None] = []
    for m in masks:
        ys, xs = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        out.append(None if ys.size == 0 else
                   Crop(int(xs[0]), int(ys[0]), m[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1].copy()))
    return out


def instance_sprite(crop: Crop, color: RGB, height: int, width: int, *, fill_alpha: float = 0.4,
                    outline_width: int = 2, filled: bool = True, highlight: bool = False) -> Sprite:
    """The overlay box of one instance (fill, outline, white highlight outline), memoised on
    ``crop``; pixels equal :func:`build_overlay`'s for that instance alone. An
    :class:`InstanceSprite`: its pixels are made when first drawn (or read)."""
    key = (tuple(int(c) for c in color), float(fill_alpha), int(outline_width), bool(filled), bool(highlight))
    got = crop.sprites.get(key)
    if got is None:
        got = crop.sprites[key] = InstanceSprite(crop, color, height, width, fill_alpha=fill_alpha,
                                                 outline_width=outline_width, filled=filled, highlight=highlight)
    return got


def label_text(category_name: str, score: float | None) -> str:
    """``"person 0.87"`` for a scored instance, ``"person"`` otherwise."""
    return category_name if score is None else f"{category_name} {score:.2f}"


def build_layer(
    annotations: Sequence,
    categories: Sequence,
    height: int,
    width: int,
    *,
    selected_id: int | None = None,
    show_rejected: bool = False,
    masks: np.ndarray | None = None,
) -> InstanceLayer:
    """Overlay and labels for one image's annotation records (``annotator.project`` records).

    Rejected instances are hidden unless ``show_rejected`` or they are selected, in which case
    they are drawn as an outline without fill. Scored (model) instances get a
    ``"<category> <score>"`` label at the top-left of their box (``bbox`` XYWH pixels).
    ``masks``: already decoded masks (a :class:`CropStack` from :class:`MaskCache`, or
    ``[len(annotations), H, W]`` bool), to skip decoding. Each instance becomes a
    :class:`Sprite` (memoised per crop and style: a selection change rebuilds two sprites).
    """
    names = {int(c.id): c.name for c in categories}
    colors_by_cat = {int(c.id): category_color(c.id, getattr(c, "color", None)) for c in categories}
    if masks is None:
        masks = MaskCache().masks(annotations, height, width)
    elif not isinstance(masks, CropStack):
        masks = CropStack(crops_from_masks(masks), height, width)
    keep = [
        i for i, a in enumerate(annotations)
        if a.review_state != "rejected" or show_rejected or a.id == selected_id
    ]
    visible = [annotations[i] for i in keep]
    vmasks = masks[keep]
    colors = [colors_by_cat.get(int(a.category_id), category_color(a.category_id)) for a in visible]
    ids = [int(a.id) for a in visible]
    order = [i for i in range(len(ids)) if ids[i] != selected_id] + \
        [i for i in range(len(ids)) if ids[i] == selected_id]          # selected drawn last
    sprites = [instance_sprite(vmasks.crops[i], colors[i], height, width, filled=visible[i].review_state != "rejected",
                               highlight=ids[i] == selected_id)
               for i in order if vmasks.crops[i] is not None]
    labels = []
    for a, color in zip(visible, colors):
        if a.score is None or a.review_state == "rejected":
            continue
        x, y = float(a.bbox[0]), float(a.bbox[1])
        name = names.get(int(a.category_id), str(a.category_id))
        labels.append(Label(int(a.id), x, y, label_text(name, a.score), color))
    return InstanceLayer(ids, vmasks, sprites, labels)


class MaskCache:
    """Decoded masks of one image's annotations, re-decoding only new or changed RLEs.

    Keyed by ``(annotation id, RLE counts)``; entries not asked for in the last call are
    dropped, so memory stays at one image's masks (boxes, not full-size arrays).
    """

    def __init__(self) -> None:
        self._masks: dict[tuple, np.ndarray] = {}
        self.decoded = 0  # RLEs decoded so far (for tests / profiling)

    def masks(self, annotations: Sequence, height: int, width: int) -> CropStack:
        """Masks of records with ``id`` and ``rle``, as a :class:`CropStack` (reads like
        ``[len(annotations), H, W]`` bool); each RLE is decoded into its box only."""
        crops: list[Crop | None] = []
        kept: dict[tuple, Crop | None] = {}
        for a in annotations:
            key = (int(a.id), str(a.rle.get("counts")), height, width)
            if key in self._masks:
                c = self._masks[key]
            else:
                c = _decode_crop(a.rle, height, width)
                self.decoded += 1
            kept[key] = c
            crops.append(c)
        self._masks = kept
        return CropStack(crops, height, width)


def _decode_crop(rle: Mapping, height: int, width: int) -> Crop | None:
    size = rle.get("size")
    if size is not None and (int(size[0]), int(size[1])) == (height, width):
        got = decode_rle_crop(rle)
        return None if got is None else Crop(*got)
    return crops_from_masks(decode_masks([rle], height, width))[0]   # other size: resized
