"""BlendMask box prompts: the mask of a user-drawn box from the bottom module (bases) and the
top layer's attentions (BlendMask paper Sec. 3.2-3.3; AdelaiDet ``adet/modeling/blendmask/
blender.py``, ``blendmask.py``).

At inference BlendMask blends the bases inside each *detected* box with the attentions that the
top layer predicts at the detection's FCOS location. A user box has no detection, so this
module picks the FCOS location the box would be assigned to by the FCOS target rules
(AdelaiDet ``fcos_outputs.py`` ``compute_targets_for_locations``; :mod:`segcore.modeling.fcos.targets`):

* **level**: the largest regression distance of the box's centre, ``max(l, t, r, b) =
  max(w, h) / 2``, picks the level whose size range contains it (``SIZES_OF_INTEREST``, e.g.
  [-1, 64], [64, 128], ... for P3, P4, ...; a value on a boundary goes to the lower level);
* **location**: the cell of that level whose location ``(x * s + s // 2, y * s + s // 2)`` is
  nearest to the box centre (``floor(v + 0.5)``), clamped to the cells whose locations lie
  strictly inside the box (when the box is narrower than a stride and contains no location, the
  nearest cell is kept) and to the feature map.

The centre location is always positive under centre sampling, and it is the location the
regression is most reliable at (highest centerness). Then, exactly as the inference path
(:func:`segcore.modeling.blendmask.postprocess.blendmask_postprocess`): RoIAlign (``aligned=True``,
sampling ratio 1, scale 1/4) of the K bases in the box to R x R (R = 56), the location's
attentions ``[K, M, M]`` upsampled to R x R and softmaxed over K, summed, sigmoid, pasted at
the box in the original image with :func:`~segcore.ops.masks.paste_masks`
(threshold 0.5). Prompting with the box and own location of a detection that lies inside the
image therefore reproduces the predictor's mask of that detection exactly (a detection crossing
the border is blended in its unclipped box and pasted at the clipped one, as detectron2 does;
a user box is clipped first).

Symbols: N boxes, L FCOS locations (all levels), K bases, M attention size, R bottom
resolution, H x W original image, h x w resized image inside the padded network input.
Boxes are XYXY absolute pixels.
"""

from __future__ import annotations

import torch

from ...ops.masks import paste_masks
from ..fcos.targets import size_ranges
from .blender import blend

__all__ = ["prompt_locations", "blendmask_box_prompt"]


def prompt_locations(boxes: torch.Tensor, level_sizes: list[tuple[int, int]], strides: list[int],
                     sizes_of_interest) -> torch.Tensor:
    """The FCOS location each box is assigned to (rule in the module docstring).

    Args:
        boxes: ``[N, 4]`` float XYXY pixels of the network input (non-empty boxes).
        level_sizes: ``(H_l, W_l)`` per level (the raw outputs' ``level_sizes``).
        strides: stride per level (``strides``).
        sizes_of_interest: level boundaries, ``len(strides) - 1`` of them (``model.sizes_of_interest``).

    Returns:
        ``[N]`` int64 flat indices into the L locations (level-major, row-major, as
        ``outputs["locations"]``), on ``boxes.device``.

    Raises:
        ValueError: ``boxes`` is not ``[N, 4]`` or ``sizes_of_interest`` does not fit the levels.
    """
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes: expected [N, 4], got {tuple(boxes.shape)}")
    size_ranges(list(sizes_of_interest), len(strides))  # validates the count
    device = boxes.device
    b = boxes.float()
    cx, cy = (b[:, 0] + b[:, 2]) * 0.5, (b[:, 1] + b[:, 3]) * 0.5
    half = torch.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) * 0.5
    bounds = torch.tensor([float(v) for v in sizes_of_interest], dtype=torch.float32, device=device)
    # number of boundaries strictly below max(l, t, r, b): ranges are inclusive, ties go down
    level = torch.bucketize(half, bounds, right=False).clamp(max=len(strides) - 1)
    strides_t = torch.tensor([float(s) for s in strides], dtype=torch.float32, device=device)[level]
    offs = strides_t.div(2, rounding_mode="floor")      # s // 2
    sizes = torch.tensor(level_sizes, dtype=torch.int64, device=device)            # [levels, 2] (H_l, W_l)
    starts = torch.cumsum(torch.cat([sizes.new_zeros(1), sizes[:, 0] * sizes[:, 1]]), 0)[:-1]

    def axis(c, lo, hi, n):
        idx = torch.floor((c - offs) / strides_t + 0.5)
        first = torch.floor((lo - offs) / strides_t) + 1          # first location > lo
        last = torch.ceil((hi - offs) / strides_t) - 1            # last location < hi
        has = first <= last
        idx = torch.where(has, torch.minimum(torch.maximum(idx, first), last), idx)
        return torch.minimum(idx.clamp(min=0), (n - 1).to(idx.dtype)).long()

    ix = axis(cx, b[:, 0], b[:, 2], sizes[level, 1])
    iy = axis(cy, b[:, 1], b[:, 3], sizes[level, 0])
    return starts[level] + iy * sizes[level, 1] + ix


def blendmask_box_prompt(outputs: dict, boxes: torch.Tensor, image_hw: tuple[int, int], input_hw: tuple[int, int],
                         *, sizes_of_interest, locations: torch.Tensor | None = None, bottom_resolution: int = 56,
                         top_interp: str = "bilinear", mask_threshold: float = 0.5) -> dict[str, torch.Tensor]:
    """Masks of user boxes on one image from BlendMask's raw outputs.

    Args:
        outputs: raw outputs of the model for a batch of one image (``model.py``: ``bases``,
            ``top_feats``, ``logits``, ``ctrness``, ``level_sizes``, ``strides``), float32.
        boxes: ``[N, 4]`` float XYXY pixels of the **original** image, already clipped to it and
            non-empty (x1 > x0, y1 > y0).
        image_hw: ``(H, W)`` of the original image.
        input_hw: ``(h, w)`` of the resized image inside the padded network input.
        sizes_of_interest: the model's FCOS level boundaries (``model.sizes_of_interest``).
        locations: optional ``[N]`` int64 flat location indices to take the attentions from
            instead of :func:`prompt_locations` (e.g. a detection's own ``loc_inds``).
        bottom_resolution, top_interp, mask_threshold: R (56), attention upsampling, paste
            threshold, as the post-processing.

    Returns:
        dict with ``masks`` ``[N, H, W]`` bool, ``locations`` ``[N]`` int64 (the locations used),
        ``classes`` ``[N]`` int64 (the FCOS class with the highest probability at that location)
        and ``location_scores`` ``[N]`` float32 (``sqrt(cls x ctr)`` of that class there, the
        score a detection at that location would have).
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    hi, wi = int(input_hw[0]), int(input_hw[1])
    bases = outputs["bases"].float()
    top = outputs["top_feats"]  # a tensor, or model.Attentions (computed at the locations used)
    n = boxes.shape[0]
    device = bases.device
    boxes = boxes.to(device=device, dtype=torch.float32)
    if n == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return {"masks": torch.zeros((0, h, w), dtype=torch.bool, device=device), "locations": empty,
                "classes": empty.clone(), "location_scores": torch.zeros(0, device=device)}
    net = boxes.clone()
    net[:, 0::2] = boxes[:, 0::2] * (wi / w)
    net[:, 1::2] = boxes[:, 1::2] * (hi / h)
    if locations is None:
        locs = prompt_locations(net, list(outputs["level_sizes"]), list(outputs["strides"]), sizes_of_interest)
    else:
        locs = torch.as_tensor(locations, dtype=torch.int64, device=device).reshape(-1)
        if locs.numel() != n or bool(((locs < 0) | (locs >= top.shape[1])).any()):
            raise ValueError(f"locations: expected {n} indices in [0, {top.shape[1]}), got {locs.tolist()}")
    m = int(round((top.shape[-1] / bases.shape[1]) ** 0.5))
    probs = blend(bases[0:1], [net], top[0, locs].float(), resolution=bottom_resolution, attn_size=m,
                  top_interp=top_interp).sigmoid()
    masks = paste_masks(probs, boxes, (h, w), mask_threshold)
    cls_p = outputs["logits"][0, locs].float().sigmoid()
    best, classes = cls_p.max(dim=1)
    ctr = outputs["ctrness"][0, locs].float().sigmoid()
    return {"masks": masks, "locations": locs, "classes": classes.long(), "location_scores": torch.sqrt(best * ctr)}
