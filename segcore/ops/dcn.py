"""Modulated deformable convolution (DCNv2) on ``torchvision.ops.deform_conv2d``.

Symbol legend: B batch, C channels, H x W feature map, kh x kw kernel, G deformable groups.
Source: Zhu et al., "Deformable ConvNets v2", CVPR 2019 (modulated sampling, section 3.1);
YOLACT++ (Bolya et al., TPAMI 2020, section 3.2) uses it in the ResNet backbone. Parameter names
and the offset/mask split equal the official ``external/DCNv2/dcn_v2.py`` class ``DCN`` of
dbolya/yolact (``weight``, ``bias``, ``conv_offset_mask``), so official YOLACT++ checkpoints load
by name. Channel layout: ``conv_offset_mask`` gives ``3 * G * kh * kw`` channels; the first
``2 * G * kh * kw`` are the offsets, pairs ``(dy, dx)`` per kernel tap (the official
``torch.chunk(.., 3)`` + ``cat(o1, o2)`` is an identity on channel order; the official CUDA
kernel ``dcn_v2_im2col_cuda.cu`` reads ``2 * (i * kw + j)`` as dy and ``+ 1`` as dx, which is
torchvision's layout), the last ``G * kh * kw`` go through a sigmoid and are the modulation mask.
No custom CUDA build: torchvision runs on CPU and CUDA.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import _pair
from torchvision.ops import deform_conv2d

__all__ = ["ModulatedDeformConv2d"]


class ModulatedDeformConv2d(nn.Module):
    """DCNv2 layer: ``y = deform_conv2d(x, offset, weight, bias, mask=sigmoid(m))`` with
    ``(offset, m)`` predicted from ``x`` by the plain conv ``conv_offset_mask``.

    Args:
        in_channels, out_channels: C_in, C_out.
        kernel_size, stride, padding, dilation: as ``nn.Conv2d`` (``conv_offset_mask`` uses the
            same kernel, stride, padding; the official code gives it dilation 1).
        deformable_groups: G (1 in YOLACT++).

    Shapes: ``[B, C_in, H, W] -> [B, C_out, H', W']`` (as ``nn.Conv2d``), float32 / float16 /
    bfloat16. Offsets and mask are zero-initialised (a fresh layer starts as a plain conv whose
    taps are weighted 0.5), as in the official ``DCN.init_offset``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int] = 3,
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 1,
                 dilation: int | tuple[int, int] = 1, deformable_groups: int = 1):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.deformable_groups = int(deformable_groups)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        taps = self.deformable_groups * self.kernel_size[0] * self.kernel_size[1]
        self.conv_offset_mask = nn.Conv2d(in_channels, 3 * taps, kernel_size=self.kernel_size,
                                          stride=self.stride, padding=self.padding, bias=True)
        # official DCNv2.reset_parameters: uniform(-1/sqrt(n), 1/sqrt(n)), zero bias and offsets
        n = in_channels * self.kernel_size[0] * self.kernel_size[1]
        nn.init.uniform_(self.weight, -1.0 / math.sqrt(n), 1.0 / math.sqrt(n))
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv_offset_mask(x)
        taps = 2 * self.deformable_groups * self.kernel_size[0] * self.kernel_size[1]
        offset = out[:, :taps]
        mask = torch.sigmoid(out[:, taps:])
        # deform_conv2d has no low-precision CPU kernel everywhere: compute in the weight dtype
        dtype = self.weight.dtype
        return deform_conv2d(x.to(dtype), offset.to(dtype), self.weight, self.bias, stride=self.stride,
                             padding=self.padding, dilation=self.dilation, mask=mask.to(dtype))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, deformable_groups={self.deformable_groups}")
