"""Feature pyramid (YOLACT variant): C3..C5 -> P3..P7.

Source: YOLACT paper section 4 ("Backbone Detector"); official ``yolact.py`` class ``FPN`` with
``fpn_base`` / ``yolact_base_config`` settings in ``data/config.py`` (bilinear top-down,
ReLU after the 3x3 output convs, P6/P7 by stride-2 convs chained from P5 without ReLU).
Module names match the official state_dict (``lat_layers`` reversed: index 0 is on C5).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FPN"]


class FPN(nn.Module):
    """YOLACT FPN.

    Args:
        in_channels: channels of C3, C4, C5 (e.g. ``[512, 1024, 2048]``).
        out_channels: channels of every P level (256 in the paper).
        num_downsample: extra levels after P5 (2 -> P6, P7).

    ``forward([C3, C4, C5])`` returns ``[P3, P4, P5, P6, P7]``, each ``[B, out_channels, h, w]``;
    at S = 550 the sides are 69, 35, 18, 9, 5.
    """

    def __init__(self, in_channels: list[int], out_channels: int = 256, num_downsample: int = 2):
        super().__init__()
        self.lat_layers = nn.ModuleList([nn.Conv2d(c, out_channels, kernel_size=1) for c in reversed(in_channels)])
        self.pred_layers = nn.ModuleList(
            [nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1) for _ in in_channels]
        )
        self.downsample_layers = nn.ModuleList(
            [nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, stride=2) for _ in range(num_downsample)]
        )

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        n = len(feats)
        laterals: list[Tensor] = [feats[0]] * n
        x = None
        for i, lat in enumerate(self.lat_layers):  # top-down: C5 first
            j = n - 1 - i
            y = lat(feats[j])
            if x is not None:
                y = y + F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=False)
            laterals[j] = x = y
        # pred_layers are stored reversed too (index 0 is on P5)
        outs = [F.relu(self.pred_layers[i](laterals[n - 1 - i])) for i in range(n)][::-1]
        for down in self.downsample_layers:
            outs.append(down(outs[-1]))
        return outs
