"""Mask pasting and upsampling: mask probabilities -> image-size bool masks, whole or box-local.

:func:`paste_masks` (BlendMask, CenterMask) pastes masks predicted inside boxes;
:func:`upsample_masks` (YOLACT) upsamples whole-input prototype masks. Both return either
``[N, H, W]`` bool tensors or :class:`~segcore.structures.BoxMasks`, which keep each mask inside
its pixel window only, so that a 100 MP image's masks need memory in proportion to the boxes.

Symbols: N instances, R mask side (BlendMask: the bottom resolution 56; CenterMask: 28),
H x W image. Boxes are XYXY absolute pixels of the image the masks are pasted into.

Source: detectron2 ``detectron2/layers/mask_ops.py`` (``paste_masks_in_image``, ``_do_paste_mask``),
which AdelaiDet (BlendMask) and centermask2 (CenterMask) both use in ``detector_postprocess``:
every pixel centre ``(x + 0.5, y + 0.5)`` is mapped into its box and the mask is sampled there
bilinearly (``grid_sample``, ``align_corners=False``, zero outside the mask), then thresholded.
As in detectron2, the CPU pastes one box at a time over the box's pixels only and CUDA pastes
chunks of boxes over the whole image without reading the boxes on the host; both evaluate the
same expression per pixel, so they give identical masks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..structures import BoxMasks

__all__ = ["paste_masks", "upsample_masks"]

_GPU_CHUNK = 16  # boxes per grid_sample on CUDA: bounds the grid to 16 x H x W x 2 floats


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, image_hw: tuple[int, int], threshold: float = 0.5,
                *, per_box: bool | None = None, box_local: bool = False) -> torch.Tensor | BoxMasks:
    """Paste ``[N, R, R]`` mask probabilities into their boxes of an ``(H, W)`` image.

    Args:
        masks: ``[N, R, R]`` probabilities in [0, 1] (any float dtype; sampled in float32). Any
            ``R_h x R_w`` works.
        boxes: ``[N, 4]`` float XYXY pixels of the image (unclipped boxes are fine: the part
            inside the image is pasted).
        image_hw: ``(H, W)``.
        threshold: pixels with probability ``>= threshold`` are True (0.5 as detectron2).
        per_box: True = loop over the boxes, sampling only each box's pixel window (fast on the
            CPU, one host read of the boxes); False = all boxes at once over the whole image in
            chunks of 16 (CUDA: no host synchronisation); None = True on the CPU, False elsewhere.
        box_local: return a :class:`~segcore.structures.BoxMasks` holding each mask inside its
            window only (memory ``sum h_i x w_i`` instead of ``N x H x W``; implies ``per_box``).

    Returns:
        ``[N, H, W]`` bool on the masks' device, or the same masks as ``BoxMasks``. Only pixels
        in the box's window ``[int(x0), int(x1) + 1) x [int(y0), int(y1) + 1)`` (clipped to the
        image; ``int`` truncates) can be True, and none for a degenerate box (``x1 <= x0`` or
        ``y1 <= y0``). Pixels outside the window sample the mask less than half a mask cell
        inside, so their value is below half the edge value: for ``threshold >= 0.5`` the result
        equals detectron2's whole-image paste.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    n = masks.shape[0]
    if n == 0:
        empty = torch.zeros((0, h, w), dtype=torch.bool, device=masks.device)
        return BoxMasks((h, w), torch.zeros((0, 4), dtype=torch.int64), []) if box_local else empty
    boxes = boxes.to(device=masks.device, dtype=torch.float32)
    x0, y0, x1, y1 = boxes.unbind(dim=1)
    ix0, iy0 = x0.trunc().clamp(min=0), y0.trunc().clamp(min=0)
    ix1, iy1 = (x1.trunc() + 1).clamp(max=w), (y1.trunc() + 1).clamp(max=h)
    valid = (ix1 > ix0) & (iy1 > iy0) & (x1 > x0) & (y1 > y0)
    bw = torch.where(valid, x1 - x0, torch.ones_like(x0))
    bh = torch.where(valid, y1 - y0, torch.ones_like(y0))
    if per_box is None:
        per_box = masks.device.type == "cpu"
    if per_box or box_local:
        return _paste_in_windows(masks, boxes, valid, bw, bh, (ix0, iy0, ix1, iy1), (h, w), threshold, box_local)
    out = torch.zeros((n, h, w), dtype=torch.bool, device=masks.device)
    xs = torch.arange(w, device=masks.device, dtype=torch.float32)
    ys = torch.arange(h, device=masks.device, dtype=torch.float32)
    for i in range(0, n, _GPU_CHUNK):
        j = min(i + _GPU_CHUNK, n)
        gx = (xs[None] + 0.5 - x0[i:j, None]) / bw[i:j, None] * 2 - 1  # [n, W] grid x in [-1, 1] inside the box
        gy = (ys[None] + 0.5 - y0[i:j, None]) / bh[i:j, None] * 2 - 1  # [n, H]
        grid = torch.stack((gx[:, None, :].expand(-1, h, -1), gy[:, :, None].expand(-1, -1, w)), dim=3)
        res = F.grid_sample(masks[i:j, None].float(), grid, mode="bilinear", align_corners=False)[:, 0]
        inside = ((xs[None] >= ix0[i:j, None]) & (xs[None] < ix1[i:j, None]) & valid[i:j, None])[:, None, :] \
            & ((ys[None] >= iy0[i:j, None]) & (ys[None] < iy1[i:j, None]))[:, :, None]
        out[i:j] = (res >= threshold) & inside
    return out


#: Padded window pixels per ``grid_sample`` call of :func:`_paste_in_windows` (bounds its floats).
_GROUP_PIXELS = 1 << 22


def _paste_in_windows(masks, boxes, valid, bw, bh, win, image_hw, threshold, box_local):
    """The per-box paste, batched: boxes sorted by window area are sampled in groups, each over
    its largest window (at most :data:`_GROUP_PIXELS` padded pixels per group), and each mask is
    cut to its own window. Every pixel evaluates the per-box expression (same grid arithmetic,
    same ``grid_sample``), so the masks equal one-box-at-a-time pasting; hundreds of small boxes
    cost a few calls instead of one Python round per box."""
    h, w = image_hw
    x0, y0 = boxes[:, 0], boxes[:, 1]
    windows = torch.stack(win, dim=1).to(torch.int64)
    windows[~valid] = 0  # degenerate or outside the image: an empty window
    wl = windows.tolist()  # one host read
    sizes = [(b - t, r - le) for le, t, r, b in wl]
    device = masks.device
    crops = [torch.zeros((0, 0), dtype=torch.bool, device=device)] * len(wl)
    groups, cur, gh, gw = [], [], 0, 0
    for i in sorted(range(len(wl)), key=lambda k: sizes[k][0] * sizes[k][1]):
        hh, ww = sizes[i]
        if hh <= 0 or ww <= 0:
            continue
        nh, nw = max(gh, hh), max(gw, ww)
        if cur and (len(cur) + 1) * nh * nw > _GROUP_PIXELS:
            groups.append((cur, gh, gw))
            cur, nh, nw = [], hh, ww
        cur.append(i)
        gh, gw = nh, nw
    if cur:
        groups.append((cur, gh, gw))
    for idx, gh, gw in groups:
        t = torch.tensor(idx, device=device)
        xs = windows[t, 0, None].float() + torch.arange(gw, device=device, dtype=torch.float32)  # [g, gw]
        ys = windows[t, 1, None].float() + torch.arange(gh, device=device, dtype=torch.float32)  # [g, gh]
        gx = (xs + 0.5 - x0[t, None]) / bw[t, None] * 2 - 1  # grid x in [-1, 1] inside the box
        gy = (ys + 0.5 - y0[t, None]) / bh[t, None] * 2 - 1
        grid = torch.stack((gx[:, None, :].expand(-1, gh, -1), gy[:, :, None].expand(-1, -1, gw)), dim=3)
        res = F.grid_sample(masks[t, None].float(), grid, mode="bilinear", align_corners=False)[:, 0] >= threshold
        for k, i in enumerate(idx):
            crops[i] = res[k, :sizes[i][0], :sizes[i][1]].clone()  # own window: every pixel inside the box
    if box_local:
        return BoxMasks((h, w), windows.cpu(), crops)
    out = torch.zeros((len(wl), h, w), dtype=torch.bool, device=device)
    for i, (le, t, r, b) in enumerate(wl):
        if crops[i].numel():
            out[i, t:b, le:r] = crops[i]
    return out


def _linear_sources(out_n: int, in_n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices and weights of ``F.interpolate(mode="bilinear", align_corners=False)`` along
    one axis (PyTorch ``compute_source_index_and_lambda``): ``(i0, i1, l0, l1)``, each ``[out_n]``;
    output ``o`` reads ``l0[o] x in[i0[o]] + l1[o] x in[i1[o]]``. The source coordinate
    ``scale x (o + 0.5) - 0.5`` is rounded once from float64, as the fused multiply-add of
    PyTorch's CPU kernel rounds it (plain float32 arithmetic differs by an ulp of the
    coordinate, ~1e-5 in the weights at 10,000 px)."""
    scale = torch.tensor(float(in_n), dtype=torch.float32) / out_n
    real = (scale.double() * (torch.arange(out_n, dtype=torch.float64) + 0.5) - 0.5).float().clamp(min=0)
    i0 = real.floor().to(torch.int64).clamp(max=in_n - 1)
    i1 = torch.where(i0 < in_n - 1, i0 + 1, i0)
    l1 = (real - i0).clamp(0, 1)
    return i0, i1, 1 - l1, l1


#: Output pixels computed per band by :func:`upsample_masks` (bounds its float32 temporaries).
_BAND_PIXELS = 1 << 21


def upsample_masks(probs: torch.Tensor, image_hw: tuple[int, int], threshold: float = 0.5, *,
                   box_local: bool = False) -> torch.Tensor | BoxMasks:
    """Upsample ``[N, h, w]`` mask probabilities to ``(H, W)`` bilinearly and threshold them, as
    YOLACT's official ``postprocess`` (``layers/output_utils.py``: ``F.interpolate(...,
    mode="bilinear", align_corners=False)`` of the cropped prototype masks, then ``> 0.5``).

    Args:
        probs: ``[N, h, w]`` float probabilities (zero outside each box, as after the crop).
        image_hw: ``(H, W)``.
        threshold: pixels with probability ``> threshold`` are True.
        box_local: return a :class:`~segcore.structures.BoxMasks`. Each mask is then computed
            only in its window: the output rows and columns that read a source row / column with a
            value above ``threshold`` (bilinear output is a convex combination of its sources, so
            no pixel outside can pass). The window is evaluated in bands of about 2 M pixels with
            the source indices and weights of PyTorch's kernel (:func:`_linear_sources`). It
            equals the full ``F.interpolate`` up to float32 rounding of the blend (1 ulp; the
            thresholded masks differ only where a value lies within ~1e-6 of ``threshold``).
            Memory: the windows' bool pixels plus one band, never ``N x H x W``.

    Returns:
        ``[N, H, W]`` bool on the probabilities' device (``F.interpolate`` in chunks of 16
        masks), or the same masks as ``BoxMasks``.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    n, hp, wp = probs.shape
    probs = probs.float()
    if not box_local:
        full = torch.empty((n, h, w), dtype=torch.bool, device=probs.device)
        for start in range(0, n, 16):
            up = F.interpolate(probs[start:start + 16, None], size=(h, w), mode="bilinear", align_corners=False)
            full[start:start + 16] = up[:, 0] > threshold
        return full
    r0, r1, a0, a1 = (t.to(probs.device) for t in _linear_sources(h, hp))
    c0, c1, b0, b1 = (t.to(probs.device) for t in _linear_sources(w, wp))
    above = probs > threshold
    rows_any, cols_any = above.any(dim=2), above.any(dim=1)  # [N, hp], [N, wp]
    # first and last source row / column with a value above threshold, all masks at once
    first_row, last_row = rows_any.int().argmax(dim=1), hp - 1 - rows_any.flip(1).int().argmax(dim=1)
    first_col, last_col = cols_any.int().argmax(dim=1), wp - 1 - cols_any.flip(1).int().argmax(dim=1)
    # outputs whose sources {i0, i0 + 1} meet the source rows [p0, p1] with values above threshold
    bounds = torch.stack((torch.searchsorted(c0, first_col - 1), torch.searchsorted(r0, first_row - 1),
                          torch.searchsorted(c0, last_col, right=True), torch.searchsorted(r0, last_row, right=True),
                          rows_any.any(dim=1).long()), dim=1).tolist()  # one host read
    src_rows0, src_rows1 = r0.tolist(), r1.tolist()
    windows, crops = [], []
    for i, (x0, y0, x1, y1, hot) in enumerate(bounds):
        if not hot:
            windows.append((0, 0, 0, 0))
            crops.append(torch.zeros((0, 0), dtype=torch.bool, device=probs.device))
            continue
        # columns first, as PyTorch's separable CPU kernel, on the source rows the window reads
        s0, s1 = src_rows0[y0], src_rows1[y1 - 1] + 1
        rows_src = probs[i, s0:s1]
        cols = (rows_src.index_select(1, c0[x0:x1]) * b0[x0:x1]
                + rows_src.index_select(1, c1[x0:x1]) * b1[x0:x1])  # [s1 - s0, x1 - x0]
        crop = torch.empty((y1 - y0, x1 - x0), dtype=torch.bool, device=probs.device)
        band = max(1, _BAND_PIXELS // max(1, x1 - x0))
        for ya in range(y0, y1, band):  # then rows, in bands that bound the float32 temporaries
            yb = min(y1, ya + band)
            top = cols.index_select(0, r0[ya:yb] - s0).mul_(a0[ya:yb, None])
            bot = cols.index_select(0, r1[ya:yb] - s0).mul_(a1[ya:yb, None])
            crop[ya - y0:yb - y0] = top.add_(bot) > threshold
        windows.append((x0, y0, x1, y1))
        crops.append(crop)
    return BoxMasks((h, w), torch.tensor(windows, dtype=torch.int64).reshape(-1, 4), crops)
