"""Modulated deformable convolution (DCNv2): a multi-threaded CPU implementation and the layer.

Symbol legend: B batch, C input channels, C_out output channels, H x W input map, H' x W' output
map, kh x kw kernel, K = kh * kw taps, G deformable (offset) groups, Gw weight groups, L = H' * W'.
Source: Zhu et al., "Deformable ConvNets v2", CVPR 2019 (modulated sampling, section 3.1, Eq. 3:
``y(p) = sum_k w_k * x(p + p_k + dp_k) * dm_k`` with bilinear ``x(.)``); YOLACT++ (Bolya et al.,
TPAMI 2020, section 3.2) uses it in the ResNet backbone. Semantics are those of
``torchvision.ops.deform_conv2d`` (its CPU kernel ``deform_conv2d_kernel.cpp``), which stays the
reference in the tests and the path on every non-CPU device.

:func:`deform_conv2d_cpu` computes the same function from multi-threaded torch ops (torchvision's CPU
kernel samples on one thread): the sampling positions and the four bilinear corner indices and
weights (modulation and validity folded in) per tap, one fused weighted gather of the four corner
rows of the channels-last input (``F.embedding_bag`` in ``sum`` mode with ``per_sample_weights``)
that yields the im2col columns ``[B * L, K * C]``, and one matrix product with the weight.
Autograd differentiates it: input, offset, mask, weight and bias gradients equal torchvision's
(tests/segcore/test_dcn_cpu.py), so training on CPU uses it too.

Parameter names and the offset/mask split of :class:`ModulatedDeformConv2d` equal the official
``external/DCNv2/dcn_v2.py`` class ``DCN`` of dbolya/yolact (``weight``, ``bias``,
``conv_offset_mask``), so official YOLACT++ checkpoints load by name. Channel layout:
``conv_offset_mask`` gives ``3 * G * kh * kw`` channels; the first ``2 * G * kh * kw`` are the
offsets, pairs ``(dy, dx)`` per kernel tap (the official ``torch.chunk(.., 3)`` + ``cat(o1, o2)`` is an
identity on channel order; the official CUDA kernel ``dcn_v2_im2col_cuda.cu`` reads
``2 * (i * kw + j)`` as dy and ``+ 1`` as dx, which is torchvision's layout), the last ``G * kh * kw``
go through a sigmoid and are the modulation mask. No custom C++/CUDA build.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

__all__ = ["ModulatedDeformConv2d", "deform_conv2d", "deform_conv2d_cpu"]

#: im2col elements computed at once; more output positions are done in chunks of rows (64 MiB in float32).
COLUMN_CHUNK = 1 << 24


def deform_conv2d_cpu(input: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None = None,
                      stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                      dilation: int | tuple[int, int] = 1, mask: Tensor | None = None) -> Tensor:
    """Deformable convolution v2 (v1 when ``mask`` is None) from multi-threaded torch ops.

    Same arguments, layout and result as ``torchvision.ops.deform_conv2d``. Output position
    ``(u, v)``, tap ``(i, j)`` of deformable group ``g`` samples the input channels of group ``g`` at
    ``y = u * stride_h - pad_h + i * dil_h + dy``, ``x = v * stride_w - pad_w + j * dil_w + dx``, where
    ``(dy, dx)`` are offset channels ``g * 2K + 2 (i * kw + j)`` and ``+ 1``, bilinearly from the
    corners ``(floor(y) + {0, 1}, floor(x) + {0, 1})``; a corner outside ``[0, H) x [0, W)`` reads 0
    (so a sample with ``y <= -1``, ``y >= H``, ``x <= -1`` or ``x >= W`` is 0), the sample is
    multiplied by mask channel ``g * K + i * kw + j`` and the columns by ``weight`` (weight group of
    the input channel). On an integer coordinate the offset gradient is that of the cell
    ``[floor(y), floor(y) + 1)``, as torchvision's.

    Args:
        input: ``[B, C, H, W]`` float64 / float32 / bfloat16 / float16; the gather and the product run
            in this dtype (float32 accumulation for bfloat16), also under autocast, which this op leaves
            alone (:class:`ModulatedDeformConv2d` passes its inputs in the autocast dtype).
        offset: ``[B, 2 * G * K, H', W']`` any float dtype; positions and bilinear weights are computed
            in ``float64`` for float64 offsets, else ``float32``.
        weight: ``[C_out, C / Gw, kh, kw]``, ``input``'s dtype.
        bias: ``[C_out]`` or None.
        stride, padding, dilation: int or ``(h, w)``; ``padding`` is zero padding.
        mask: ``[B, G * K, H', W']`` modulation (any float dtype), or None for DCNv1.

    Returns:
        ``[B, C_out, H', W']``, ``H' = (H + 2 pad_h - dil_h (kh - 1) - 1) // stride_h + 1`` (same for
        W'), ``input``'s dtype; channels-last strides when ``input`` has them, else contiguous.

    Raises:
        ValueError: inconsistent shapes (torchvision raises RuntimeError for the same cases).

    Memory: the im2col columns ``[B * L, K * C]`` are built at most :data:`COLUMN_CHUNK` elements at
    a time (chunks of output positions); under autograd every chunk's columns are kept for backward.
    """
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    B, C, H, W = input.shape
    Cout, Cw, kh, kw = weight.shape
    K = kh * kw
    Ho, Wo = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    G = offset.shape[1] // (2 * K)
    if (Ho <= 0 or Wo <= 0 or G == 0 or offset.shape != (B, 2 * G * K, Ho, Wo) or C % G or C % Cw
            or Cout % (C // Cw) or (mask is not None and mask.shape != (B, G * K, Ho, Wo))):
        raise ValueError(f"deform_conv2d: input {tuple(input.shape)}, weight {tuple(weight.shape)}, offset "
                         f"{tuple(offset.shape)}, mask {None if mask is None else tuple(mask.shape)} do not fit "
                         f"stride {(sh, sw)}, padding {(ph, pw)}, dilation {(dh, dw)}")
    dev, dtype = input.device, input.dtype
    cdt = torch.float64 if offset.dtype == torch.float64 else torch.float32
    # sampling positions (output position * stride - pad + tap * dilation) + offset, one rounding as in
    # torchvision, per axis in offset's own layout [B, G, kh, kw, H', W']; clamped to [-2, H] (x: [-2, W])
    # because the table below has zero rows / columns at -2, -1, H, H + 1: a corner outside [0, H) then reads
    # 0, and positions beyond the clamp (all four corners outside) read 0 with zero gradient, as in torchvision.
    # -2, not -1: torch.clamp passes no gradient at its bounds, and at y = -1 the offset gradient is not 0
    off = offset.view(B, G, kh, kw, 2, Ho, Wo).to(cdt)
    by = (torch.arange(Ho, device=dev) * sh - ph).view(Ho, 1) + (torch.arange(kh, device=dev) * dh).view(kh, 1, 1, 1)
    bx = (torch.arange(Wo, device=dev) * sw - pw) + (torch.arange(kw, device=dev) * dw).view(kw, 1, 1)
    y = (by.to(cdt) + off[:, :, :, :, 0]).clamp(-2, H)
    x = (bx.to(cdt) + off[:, :, :, :, 1]).clamp(-2, W)
    y0, x0 = y.floor(), x.floor()
    ly, lx = y - y0, x - x0  # floor has zero gradient: d/d(offset) reaches the weights through these only
    hy, hx = 1 - ly, 1 - lx
    if mask is not None:
        m = mask.view(B, G, kh, kw, Ho, Wo).to(cdt)
        hy, ly = hy * m, ly * m
    # rows of the zero-bordered channels-last table [B * (H + 4) * (W + 4) * G, C / G]; the bags, one per
    # (b, output position, tap, group) in that order, are the rows of the im2col columns [B * L, K * C]
    Hp, Wp = H + 4, W + 4
    bg = torch.arange(B * G, device=dev).view(B, G, 1, 1, 1, 1)
    r = ((y0.long() + 2) * Wp + x0.long() + 2) * G + (bg // G) * (Hp * Wp * G) + bg % G
    im2col = (0, 4, 5, 2, 3, 1)  # [B, G, kh, kw, H', W'] -> [B, H', W', kh, kw, G]
    rows = torch.stack([t.permute(im2col) for t in (r, r + G, r + Wp * G, r + (Wp + 1) * G)], -1).view(-1, 4)
    w4 = torch.stack([t.permute(im2col) for t in (hy * hx, hy * lx, ly * hx, ly * lx)], -1).view(-1, 4).to(dtype)
    table = F.pad(input.permute(0, 2, 3, 1), (0, 0, 2, 2, 2, 2)).contiguous().view(-1, C // G)  # contiguous: fbgemm
    wt = _grouped_weight(weight, C // Cw)
    per = Wo * K * G  # bags per output row
    step = max(1, COLUMN_CHUNK // (Wo * K * C))  # output rows (of all B * H' rows) per chunk
    outs = []
    for a in range(0, B * Ho, step):
        e = min(B * Ho, a + step)
        cols = F.embedding_bag(rows[a * per:e * per], table, mode="sum", per_sample_weights=w4[a * per:e * per])
        with torch.autocast("cpu", enabled=False):
            outs.append(_columns_times_weight(cols.view(e - a, Wo, K * C), wt, bias, K))
    out = outs[0] if len(outs) == 1 else torch.cat(outs, 2)  # [1, C_out, B * H', W']
    out = out[0].view(Cout, B, Ho, Wo).transpose(0, 1)
    channels_last = input.is_contiguous(memory_format=torch.channels_last) and not input.is_contiguous()
    return out.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _grouped_weight(weight: Tensor, groups: int) -> Tensor:
    """``[C_out, C / Gw, kh, kw]`` -> ``[Gw, C_out / Gw, K * C / Gw]``, columns in the im2col order (i, j, c)."""
    Cout, Cw, kh, kw = weight.shape
    return weight.view(groups, Cout // groups, Cw, kh, kw).permute(0, 1, 3, 4, 2).reshape(groups, Cout // groups, -1)


def _columns_times_weight(cols: Tensor, wt: Tensor, bias: Tensor | None, taps: int) -> Tensor:
    """im2col ``[r, W', K * C]`` (columns ``(i, j, c)``) times :func:`_grouped_weight` -> ``[1, C_out, r, W']``."""
    groups, (nr, Wo, kc) = wt.shape[0], cols.shape
    if groups > 1:
        cols = cols.view(nr * Wo, taps, groups, -1).permute(2, 0, 1, 3).reshape(groups, nr * Wo, -1)
        out = torch.bmm(wt, cols.transpose(1, 2)).view(1, -1, nr, Wo)
        return out if bias is None else out + bias[:, None, None]
    image = cols.view(1, nr, Wo, kc).permute(0, 3, 1, 2)  # channels-last [1, K * C, r, W']: a 1 x 1 convolution
    if torch.compiler.is_compiling():  # torch.compile: mkldnn_convolution has no fake-tensor kernel
        return F.conv2d(image, wt[0, :, :, None, None], bias)
    if (nr > 1 and Wo > 1 and cols.dtype in (torch.float32, torch.bfloat16) and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled):
        # oneDNN's 1 x 1 convolution (keeps channels-last; not chosen by F.conv2d for one image on one thread)
        # is about 2x faster than the sgemm (MKL) behind addmm on the AMD CPUs measured; a size-1 side would
        # make oneDNN read the view as NCHW and reorder it
        return torch.mkldnn_convolution(image, wt[0, :, :, None, None], bias, [0, 0], [1, 1], [1, 1], 1)
    out = cols.view(nr * Wo, kc) @ wt[0].t() if bias is None else torch.addmm(bias, cols.view(nr * Wo, kc), wt[0].t())
    return out.view(1, nr, Wo, -1).permute(0, 3, 1, 2)


def _tracing() -> bool:
    """True while tracing or exporting: the graph must hold ``torchvision::deform_conv2d`` (ONNX ``DeformConv``)."""
    return torch.jit.is_tracing() or torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()


def deform_conv2d(input: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None = None,
                  stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                  dilation: int | tuple[int, int] = 1, mask: Tensor | None = None) -> Tensor:
    """``torchvision.ops.deform_conv2d`` with the same arguments, on CPU by :func:`deform_conv2d_cpu`.

    Other devices, and CPU tracing / ``torch.export`` / ONNX export (which map torchvision's op to
    ONNX ``DeformConv``), run torchvision's op.
    """
    if input.device.type == "cpu" and not _tracing():
        return deform_conv2d_cpu(input, offset, weight, bias, stride, padding, dilation, mask)
    return torchvision.ops.deform_conv2d(input, offset, weight, bias, stride=stride, padding=padding,
                                         dilation=dilation, mask=mask)


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

    Runs :func:`deform_conv2d`: :func:`deform_conv2d_cpu` on CPU, torchvision's op elsewhere. Compute
    dtype: the weight's; on CPU under autocast the autocast dtype (bfloat16 gather and product with
    float32 accumulation, as autocast runs ``nn.Conv2d``; torchvision has no bfloat16 CPU kernel).
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
        offset, mask = out[:, :taps], torch.sigmoid(out[:, taps:])
        # compute dtype (class docstring); positions and bilinear weights stay float32 inside deform_conv2d_cpu
        dtype = self.weight.dtype
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and not _tracing():
            dtype = torch.get_autocast_dtype("cpu")
        return deform_conv2d(x.to(dtype), offset.to(dtype), self.weight.to(dtype), self.bias.to(dtype),
                             stride=self.stride, padding=self.padding, dilation=self.dilation, mask=mask.to(dtype))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, deformable_groups={self.deformable_groups}")
