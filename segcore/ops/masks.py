"""Mask pasting: R x R mask probabilities predicted inside boxes -> full-image bool masks.

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

__all__ = ["paste_masks"]

_GPU_CHUNK = 16  # boxes per grid_sample on CUDA: bounds the grid to 16 x H x W x 2 floats


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, image_hw: tuple[int, int], threshold: float = 0.5,
                *, per_box: bool | None = None) -> torch.Tensor:
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

    Returns:
        ``[N, H, W]`` bool on the masks' device. Only pixels in the box's window ``[int(x0),
        int(x1) + 1) x [int(y0), int(y1) + 1)`` (clipped to the image; ``int`` truncates) can be
        True, and none for a degenerate box (``x1 <= x0`` or ``y1 <= y0``). Pixels outside the
        window sample the mask less than half a mask cell inside, so their value is below half
        the edge value: for ``threshold >= 0.5`` the result equals detectron2's whole-image paste.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    n = masks.shape[0]
    out = torch.zeros((n, h, w), dtype=torch.bool, device=masks.device)
    if n == 0:
        return out
    boxes = boxes.to(device=masks.device, dtype=torch.float32)
    x0, y0, x1, y1 = boxes.unbind(dim=1)
    ix0, iy0 = x0.trunc().clamp(min=0), y0.trunc().clamp(min=0)
    ix1, iy1 = (x1.trunc() + 1).clamp(max=w), (y1.trunc() + 1).clamp(max=h)
    valid = (ix1 > ix0) & (iy1 > iy0) & (x1 > x0) & (y1 > y0)
    bw = torch.where(valid, x1 - x0, torch.ones_like(x0))
    bh = torch.where(valid, y1 - y0, torch.ones_like(y0))
    if per_box is None:
        per_box = masks.device.type == "cpu"
    if per_box:
        windows = torch.stack((ix0, iy0, ix1, iy1), dim=1).to(torch.int64).tolist()  # one host read
        spans = [(i, i + 1, *win) for i, win in enumerate(windows) if bool(valid[i])]
    else:
        spans = [(i, min(i + _GPU_CHUNK, n), 0, 0, w, h) for i in range(0, n, _GPU_CHUNK)]
    for i, j, wx0, wy0, wx1, wy1 in spans:
        xs = torch.arange(wx0, wx1, device=masks.device, dtype=torch.float32)
        ys = torch.arange(wy0, wy1, device=masks.device, dtype=torch.float32)
        gx = (xs[None] + 0.5 - x0[i:j, None]) / bw[i:j, None] * 2 - 1  # [n, w'] grid x in [-1, 1] inside the box
        gy = (ys[None] + 0.5 - y0[i:j, None]) / bh[i:j, None] * 2 - 1  # [n, h']
        grid = torch.stack((gx[:, None, :].expand(-1, len(ys), -1), gy[:, :, None].expand(-1, -1, len(xs))), dim=3)
        res = F.grid_sample(masks[i:j, None].float(), grid, mode="bilinear", align_corners=False)[:, 0]
        inside = ((xs[None] >= ix0[i:j, None]) & (xs[None] < ix1[i:j, None]) & valid[i:j, None])[:, None, :] \
            & ((ys[None] >= iy0[i:j, None]) & (ys[None] < iy1[i:j, None]))[:, :, None]
        out[i:j, wy0:wy1, wx0:wx1] = (res >= threshold) & inside
    return out
