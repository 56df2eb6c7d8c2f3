"""FCOS as a detectron2-style ``proposal_generator``: runs :class:`.head.FCOSHead` on the FPN
levels and flattens its outputs over levels (AdelaiDet ``adet/modeling/fcos/fcos.py`` ``FCOS``).

Key prefix in official checkpoints: ``proposal_generator.fcos_head.*``.
Symbols: B batch, C channels, K classes, L = sum_l H_l * W_l locations (level-major, then
row-major within a level, as ``compute_locations``).
"""

from __future__ import annotations

import torch
from torch import nn

from .head import FCOSHead
from .targets import compute_locations

__all__ = ["FCOSProposalGenerator", "flatten_levels"]


def flatten_levels(maps: list[torch.Tensor]) -> torch.Tensor:
    """Per-level ``[B, C, H_l, W_l]`` -> ``[B, L, C]`` (level-major, row-major)."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, m.shape[1]) for m in maps], dim=1)


class FCOSProposalGenerator(nn.Module):
    """FCOS head over FPN levels with the given strides.

    Args:
        strides: stride per level, e.g. ``[8, 16, 32, 64, 128]``.
        **head_kwargs: :class:`.head.FCOSHead` arguments (``in_channels``, ``num_classes``, ...).

    ``forward(features)`` returns a dict: ``logits`` ``[B, L, K]``, ``bbox_reg`` ``[B, L, 4]``
    (ltrb in units of the stride, >= 0), ``ctrness`` ``[B, L]`` (logits), ``locations``
    ``[L, 2]`` float32 input pixels, ``loc_strides`` ``[L]`` float32, ``level_sizes`` list of
    ``(H_l, W_l)``, ``strides`` list of ints, and ``bbox_towers`` (per-level list
    ``[B, C, H_l, W_l]``, the box-tower features for a top layer such as BlendMask's).
    """

    def __init__(self, strides: list[int], **head_kwargs):
        super().__init__()
        self.strides = [int(s) for s in strides]
        self.fcos_head = FCOSHead(num_levels=len(self.strides), **head_kwargs)
        self._loc_cache: dict = {}

    def locations(self, sizes: list[tuple[int, int]], device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (tuple(sizes), str(device))
        if key not in self._loc_cache:
            locs = compute_locations(sizes, self.strides, device=device)
            strides = torch.cat([torch.full((len(l_),), float(s), device=device) for l_, s in zip(locs, self.strides)])
            if len(self._loc_cache) > 16:
                self._loc_cache.clear()
            self._loc_cache[key] = (torch.cat(locs), strides)
        return self._loc_cache[key]

    def forward(self, features: list[torch.Tensor]) -> dict:
        if len(features) != len(self.strides):
            raise ValueError(f"FCOS: {len(features)} feature levels for {len(self.strides)} strides")
        head = self.fcos_head(features)
        sizes = [(int(f.shape[2]), int(f.shape[3])) for f in features]
        locs, loc_strides = self.locations(sizes, features[0].device)
        return {
            "logits": flatten_levels(head["logits"]),
            "bbox_reg": flatten_levels(head["bbox_reg"]),
            "ctrness": flatten_levels(head["ctrness"]).squeeze(2),
            "locations": locs, "loc_strides": loc_strides, "level_sizes": sizes, "strides": list(self.strides),
            "bbox_towers": head["bbox_towers"],
        }
