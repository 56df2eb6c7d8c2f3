"""DarkNet-53 backbone (YOLOv3) returning C3, C4, C5 (strides 8, 16, 32).

Source: Redmon & Farhadi, "YOLOv3: An Incremental Improvement", 2018 (Table 1, DarkNet-53);
as used by YOLACT (``yolact_darknet53_config``): official dbolya/yolact ``backbone.py``
(``darknetconvlayer``, ``DarkNetBlock``, ``DarkNetBackbone``) with ``args ([1, 2, 8, 8, 4],)`` and
``selected_layers range(2, 5)`` (``data/config.py``). Module names equal the official
state_dict keys (``_preconv.{0,1}``, ``layers.i.0.{0,1}`` = stride-2 conv, ``layers.i.j.conv1.{0,1}``,
``layers.i.j.conv2.{0,1}``). Every conv is conv (no bias) - BN - LeakyReLU(0.1).
Input normalisation of this backbone is RGB / 255 only (official ``darknet_transform``).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["DarkNetBackbone", "darknet_conv", "DarkNetBlock", "darknet53_backbone", "DARKNET_PIXEL_MEAN",
           "DARKNET_PIXEL_STD"]

#: DarkNet input normalisation: ``(x - 0) / 255`` on RGB 0..255 (official ``darknet_transform``).
DARKNET_PIXEL_MEAN: tuple[float, float, float] = (0.0, 0.0, 0.0)
DARKNET_PIXEL_STD: tuple[float, float, float] = (255.0, 255.0, 255.0)


def darknet_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    """Conv (no bias, padding ``kernel_size // 2``) - BatchNorm - LeakyReLU(0.1) (official ``darknetconvlayer``)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(0.1, inplace=True),
    )


class DarkNetBlock(nn.Module):
    """Residual block: 1x1 conv to ``channels``, 3x3 conv back to ``2 * channels``, plus the input."""

    expansion = 2

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.conv1 = darknet_conv(in_channels, channels, 1)
        self.conv2 = darknet_conv(channels, channels * self.expansion, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(x)) + x


class DarkNetBackbone(nn.Module):
    """DarkNet-53 trunk; ``forward`` returns ``[C3, C4, C5]`` (outputs of stages 2, 3, 4).

    Args:
        layers: residual blocks per stage (``[1, 2, 8, 8, 4]`` for DarkNet-53).

    Attributes:
        out_channels: channels of C3, C4, C5 (``[256, 512, 1024]``).
    """

    def __init__(self, layers: list[int] = (1, 2, 8, 8, 4)):
        super().__init__()
        self._preconv = darknet_conv(3, 32, 3)
        self.layers = nn.ModuleList()
        in_channels = 32
        for channels, n in zip((32, 64, 128, 256, 512), layers):
            out = channels * DarkNetBlock.expansion
            stage = [darknet_conv(in_channels, out, 3, stride=2)] + [DarkNetBlock(out, channels) for _ in range(n)]
            self.layers.append(nn.Sequential(*stage))
            in_channels = out
        self.out_channels = [c * DarkNetBlock.expansion for c in (128, 256, 512)]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")

    def forward(self, x: Tensor) -> list[Tensor]:
        """``x`` ``[B, 3, S, S]`` (RGB / 255) -> ``[C3, C4, C5]``, sides S/8, S/16, S/32 rounded up."""
        x = self._preconv(x)
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats[2:]


def darknet53_backbone() -> DarkNetBackbone:
    """DarkNet-53 with random init (the official ImageNet file ``darknet53.pth`` loads with
    ``load_state_dict`` directly: same key names)."""
    return DarkNetBackbone([1, 2, 8, 8, 4])
