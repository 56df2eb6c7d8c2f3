"""FCOS locations and target assignment (AdelaiDet ``adet/modeling/fcos/fcos_outputs.py``
``compute_locations`` / ``get_sample_region`` / ``compute_targets_for_locations``; FCOS paper Sec. 3.2).

Rules: a location of level l with stride s sits at ``(x * s + s // 2, y * s + s // 2)``. It is a
candidate for a gt box when it lies inside the box's *centre region* (centre sampling, radius
1.5: the square ``centre +- 1.5 * s`` clipped to the box; strictly inside) and the largest of its
regression distances ``max(l, t, r, b)`` lies in the level's size range (both ends inclusive;
``sizes_of_interest`` [64, 128, 256, 512] -> [-1, 64], [64, 128], [128, 256], [256, 512],
[512, inf]). Among several candidates the box with the smallest area wins (ties: the first box).

Symbols: L total locations over all levels, N gt boxes of one image, K classes.
"""

from __future__ import annotations

import torch

__all__ = ["compute_locations", "size_ranges", "fcos_targets", "centerness_targets", "INF"]

INF = 1e8


def compute_locations(sizes: list[tuple[int, int]], strides: list[int], device=None) -> list[torch.Tensor]:
    """Image-pixel coordinates of every location of every level.

    Args:
        sizes: ``[(H_l, W_l), ...]`` per level; strides: ``[s_l, ...]``.

    Returns:
        Per level ``[H_l * W_l, 2]`` float32 ``(x, y)``, row-major (x fastest).
    """
    out = []
    for (h, w), s in zip(sizes, strides):
        xs = torch.arange(0, w * s, s, dtype=torch.float32, device=device)
        ys = torch.arange(0, h * s, s, dtype=torch.float32, device=device)
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        out.append(torch.stack((xx.reshape(-1), yy.reshape(-1)), dim=1) + s // 2)
    return out


def size_ranges(sizes_of_interest: list[int], num_levels: int) -> list[tuple[float, float]]:
    """``[(lo, hi), ...]`` per level from the official ``SIZES_OF_INTEREST`` (one per level boundary)."""
    if len(sizes_of_interest) != num_levels - 1:
        raise ValueError(f"{num_levels} levels need {num_levels - 1} sizes_of_interest, got {sizes_of_interest}")
    bounds = [-1.0] + [float(v) for v in sizes_of_interest] + [INF]
    return [(bounds[i], bounds[i + 1]) for i in range(num_levels)]


def fcos_targets(locations: list[torch.Tensor], strides: list[int], gt_boxes: torch.Tensor,
                 gt_classes: torch.Tensor, num_classes: int, *, sizes_of_interest=(64, 128, 256, 512),
                 center_sample_radius: float | None = 1.5) -> dict[str, torch.Tensor]:
    """Targets of one image.

    Args:
        locations: per level ``[L_l, 2]`` from :func:`compute_locations`.
        strides: per level stride.
        gt_boxes: ``[N, 4]`` float32 XYXY pixels of the network input (N may be 0).
        gt_classes: ``[N]`` int64 in 0..K-1.
        num_classes: K (background label = K).
        sizes_of_interest: level boundaries (len = levels - 1).
        center_sample_radius: radius in strides (1.5); None = the whole box (original FCOS).

    Returns:
        ``labels`` ``[L]`` int64 (K = background), ``reg_targets`` ``[L, 4]`` float32 ltrb in
        pixels, ``gt_inds`` ``[L]`` int64 index of the assigned box (-1 for background),
        ``level`` ``[L]`` int64 level of each location.
    """
    locs = torch.cat(locations, dim=0)
    device = locs.device
    num_loc = [len(x) for x in locations]
    level = torch.cat([torch.full((n,), i, dtype=torch.int64, device=device) for i, n in enumerate(num_loc)])
    total = locs.shape[0]
    n = gt_boxes.shape[0]
    if n == 0:
        return {"labels": torch.full((total,), num_classes, dtype=torch.int64, device=device),
                "reg_targets": locs.new_zeros((total, 4)),
                "gt_inds": torch.full((total,), -1, dtype=torch.int64, device=device), "level": level}
    boxes = gt_boxes.to(device=device, dtype=torch.float32)
    xs, ys = locs[:, 0:1], locs[:, 1:2]
    reg = torch.stack((xs - boxes[None, :, 0], ys - boxes[None, :, 1],
                       boxes[None, :, 2] - xs, boxes[None, :, 3] - ys), dim=2)  # [L, N, 4]
    if center_sample_radius is not None:
        stride_per_loc = torch.tensor(strides, dtype=torch.float32, device=device)[level][:, None] \
            * center_sample_radius
        cx = (boxes[:, 0] + boxes[:, 2]) * 0.5
        cy = (boxes[:, 1] + boxes[:, 3]) * 0.5
        x0 = torch.maximum(cx[None] - stride_per_loc, boxes[None, :, 0])
        y0 = torch.maximum(cy[None] - stride_per_loc, boxes[None, :, 1])
        x1 = torch.minimum(cx[None] + stride_per_loc, boxes[None, :, 2])
        y1 = torch.minimum(cy[None] + stride_per_loc, boxes[None, :, 3])
        inside = torch.stack((xs - x0, ys - y0, x1 - xs, y1 - ys), dim=2).min(dim=2).values > 0
    else:
        inside = reg.min(dim=2).values > 0
    ranges = torch.tensor(size_ranges(list(sizes_of_interest), len(locations)), dtype=torch.float32, device=device)
    max_reg = reg.max(dim=2).values
    lo, hi = ranges[level, 0:1], ranges[level, 1:2]
    cared = (max_reg >= lo) & (max_reg <= hi)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    loc_area = area[None].expand(total, n).clone()
    loc_area[~inside] = INF
    loc_area[~cared] = INF
    min_area, inds = loc_area.min(dim=1)
    labels = gt_classes.to(device)[inds].clone()
    bg = min_area == INF
    labels[bg] = num_classes
    inds = torch.where(bg, torch.full_like(inds, -1), inds)
    reg_t = reg[torch.arange(total, device=device), inds.clamp(min=0)]
    return {"labels": labels, "reg_targets": reg_t, "gt_inds": inds, "level": level}


def centerness_targets(reg_targets: torch.Tensor) -> torch.Tensor:
    """FCOS centerness ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` of ``[P, 4]`` ltrb -> ``[P]``."""
    lr = reg_targets[:, [0, 2]]
    tb = reg_targets[:, [1, 3]]
    c = (lr.min(dim=1).values / lr.max(dim=1).values) * (tb.min(dim=1).values / tb.max(dim=1).values)
    return torch.sqrt(c.clamp(min=0))
