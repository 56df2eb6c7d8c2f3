"""segcore.ops.dcn.deform_conv2d_cpu against torchvision.ops.deform_conv2d (the reference).

Outputs and the gradients w.r.t. input, offset, mask, weight and bias must agree within 1e-5 (float32)
and 1e-10 (float64) on the DCNv2 layers of the official YOLACT++ ResNet-50 backbone
(``yolact_plus_r50_550``: DCN in every block of C3-C5, 3x3, C = 128 / 256 / 512, the first block of a
stage with stride 2; at 550 the outputs are 69x69, 35x35, 18x18; smaller maps here, real channels and
strides). The error measure is ``max |ours - torchvision| / max(1, max |torchvision|)``, so large
gradient sums (the weight gradient adds B * L terms) are compared in relative terms.

Offsets mix non-integer values of a few pixels, values that sample far outside the map, exact
integers and halves, and values that put the sample exactly on the borders ``-1, 0, size - 1, size``
(where the bilinear rule and the one-sided offset gradient of torchvision matter); the masks include
exact 0 and 1. Negative controls: swapped (dy, dx), and offsets moved just below the integers (same
outputs, other offset gradients), must fail the same comparison.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch.nn.modules.utils import _pair

from segcore.ops import dcn
from segcore.ops.dcn import ModulatedDeformConv2d, deform_conv2d, deform_conv2d_cpu

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}

# yolact_plus_r50_550 DCN layers: (C, stride, input side at 550); every one is C -> C, 3x3, padding 1
R50_DCN_LAYERS = [(128, 2, 138), (128, 1, 69), (256, 2, 69), (256, 1, 35), (512, 2, 35), (512, 1, 18)]


def _out_size(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _case(B=1, C=8, Cout=8, H=9, W=8, k=(3, 3), stride=1, pad=1, dil=1, G=1, Gw=1, dtype=torch.float64, seed=0,
          mask=True, bias=True) -> dict:
    """Inputs of one comparison; offsets as in the module docstring, weights at a trained-like scale."""
    g = torch.Generator().manual_seed(seed)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = k, _pair(stride), _pair(pad), _pair(dil)
    Ho, Wo = _out_size(H, kh, sh, ph, dh), _out_size(W, kw, sw, pw, dw)
    x = torch.randn(B, C, H, W, generator=g, dtype=dtype)
    weight = torch.randn(Cout, C // Gw, kh, kw, generator=g, dtype=dtype) / (C // Gw * kh * kw) ** 0.5
    # sampling base (out * stride - pad + tap * dilation) per (kh, kw, y/x, Ho, Wo)
    by = (torch.arange(Ho) * sh - ph).view(1, 1, Ho, 1) + (torch.arange(kh) * dh).view(kh, 1, 1, 1)
    bx = (torch.arange(Wo) * sw - pw).view(1, 1, 1, Wo) + (torch.arange(kw) * dw).view(1, kw, 1, 1)
    base = torch.stack(torch.broadcast_tensors(by, bx), 2).to(dtype)  # [kh, kw, 2, Ho, Wo]
    shape = (B, G, kh, kw, 2, Ho, Wo)
    off = torch.randn(shape, generator=g, dtype=dtype) * 2.5
    kind = torch.randint(0, 8, shape, generator=g)
    size = torch.tensor([H, W], dtype=dtype).view(2, 1, 1)
    border = torch.tensor([-1.0, 0.0, 1.0, 2.0], dtype=dtype)[torch.randint(0, 4, shape, generator=g)]
    border = torch.where(border > 0, size - 2 + border, border)  # -1, 0, size - 1, size
    off = torch.where(kind == 0, off * max(H, W), off)  # far outside, in every direction
    off = torch.where(kind == 1, off.round(), off)
    off = torch.where(kind == 2, (off * 2).round() / 2, off)
    off = torch.where(kind == 3, border - base, off)
    m = torch.rand(B, G * kh * kw, Ho, Wo, generator=g, dtype=dtype)
    m = torch.where(m < 0.05, 0.0, torch.where(m > 0.95, 1.0, m))
    return {"input": x, "offset": off.view(B, -1, Ho, Wo), "weight": weight,
            "bias": torch.randn(Cout, generator=g, dtype=dtype) if bias else None,
            "stride": stride, "padding": pad, "dilation": dil, "mask": m if mask else None}


def _positions(c: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampling positions ``y, x`` of every (b, g, tap, output pixel) of a case."""
    kh, kw = c["weight"].shape[2:]
    B, _, Ho, Wo = c["offset"].shape
    off = c["offset"].view(B, -1, kh, kw, 2, Ho, Wo)
    (sh, sw), (ph, pw), (dh, dw) = _pair(c["stride"]), _pair(c["padding"]), _pair(c["dilation"])
    y = (torch.arange(Ho) * sh - ph).view(Ho, 1) + (torch.arange(kh) * dh).view(kh, 1, 1, 1) + off[..., 0, :, :]
    x = (torch.arange(Wo) * sw - pw) + (torch.arange(kw) * dw).view(kw, 1, 1) + off[..., 1, :, :]
    return y, x


def _run(fn, c: dict, grad_out: torch.Tensor | None = None):
    """Output and gradients (input, offset, mask, weight, bias: those present) of ``fn`` on case ``c``."""
    c = {k: v.detach().clone().requires_grad_() if torch.is_tensor(v) else v for k, v in c.items()}
    out = fn(c["input"], c["offset"], c["weight"], c["bias"], stride=c["stride"], padding=c["padding"],
             dilation=c["dilation"], mask=c["mask"])
    if grad_out is None:
        grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    leaves = [c[k] for k in ("input", "offset", "mask", "weight", "bias") if c[k] is not None]
    return out.detach(), torch.autograd.grad(out, leaves, grad_out), grad_out


def _errors(c: dict, fn=deform_conv2d_cpu) -> list[float]:
    """Relative errors of ``fn`` against torchvision: [output, *gradients]."""
    ref, ref_grads, g = _run(torchvision.ops.deform_conv2d, c)
    out, grads, _ = _run(fn, c, g)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    return [((a - b).abs().max() / b.abs().max().clamp_min(1)).item()
            for a, b in zip([out, *grads], [ref, *ref_grads], strict=True)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("C", "stride", "side"), R50_DCN_LAYERS)
def test_yolact_plus_r50_layers_match_torchvision(C, stride, side, dtype):
    # input maps about 5x smaller than at 550 and non-square, except the real 18x18 input of the last C5 layers
    H = side if side == 18 else side // 5 + 2
    c = _case(B=1 if C > 128 else 2, C=C, Cout=C, H=H, W=H - 3, stride=stride, dtype=dtype, seed=C + stride)
    y, x = _positions(c)
    # the offsets reach what the test is about: outside, on integers, exactly on both borders of both axes
    assert (y <= -1).any() and (y >= H).any() and (x <= -1).any() and (x >= H - 3).any()
    assert (y == y.round()).float().mean() > 0.2 and (x == x.round()).float().mean() > 0.2
    for v, n in ((y, H), (x, H - 3)):
        assert all((v == b).any() for b in (-1, 0, n - 1, n))
    errors = _errors(c)
    assert len(errors) == 6 and max(errors) <= TOL[dtype], errors


@pytest.mark.parametrize(("G", "Gw", "bias", "mask"), [(2, 1, True, True), (4, 2, False, True), (2, 4, True, False)])
def test_groups_v1_and_no_bias_match_torchvision(G, Gw, bias, mask):
    for dtype in (torch.float32, torch.float64):
        c = _case(B=2, C=32, Cout=16, H=11, W=10, stride=2, G=G, Gw=Gw, dtype=dtype, bias=bias, mask=mask)
        assert max(_errors(c)) <= TOL[dtype]


def test_kernel_dilation_padding_variants_match_torchvision():
    for k, stride, pad, dil in (((3, 2), 1, 0, 2), ((1, 1), 2, 0, 1), ((5, 3), (2, 1), (2, 0), (1, 2))):
        c = _case(B=2, C=6, Cout=4, H=12, W=9, k=k, stride=stride, pad=pad, dil=dil, G=2)
        assert max(_errors(c)) <= 1e-10


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    # continuous offsets (no sample on a kink of the bilinear interpolation), some outside the map; G = Gw = 2
    off = (torch.randn(1, 2 * 2 * 9, 2, 2, generator=g, dtype=torch.float64) * 2).requires_grad_()
    m = torch.rand(1, 2 * 9, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: deform_conv2d_cpu(*a[:4], 2, 1, 1, a[4]), (x, off, w, b, m))


def test_negative_controls_fail_the_comparison():
    c = _case(C=16, Cout=16, H=10, W=9)
    assert max(_errors(c)) <= 1e-10
    # (dy, dx) swapped: another function
    B, _, Ho, Wo = c["offset"].shape
    def swap(o):
        return o.view(B, -1, 2, Ho, Wo).flip(2).reshape(B, -1, Ho, Wo)

    assert _errors(c, lambda x, o, *a, **k: deform_conv2d_cpu(x, swap(o), *a, **k))[0] > 1e-2
    # integer offsets moved just below: the same outputs (continuity), but the offset gradient of a
    # sample on an integer is torchvision's from the cell above it, not the one below
    on_int = (c["offset"] == c["offset"].round()).double()
    errors = _errors(c, lambda x, o, *a, **k: deform_conv2d_cpu(x, o - 2.0 ** -30 * on_int, *a, **k))
    assert errors[0] < 1e-7 and errors[2] > 1e-2


def test_dispatch_chunks_layouts_and_backends(monkeypatch):
    c = _case(B=2, C=16, Cout=8, H=9, W=9, dtype=torch.float32)
    ref, ref_grads, g = _run(torchvision.ops.deform_conv2d, c)
    monkeypatch.setattr(dcn, "COLUMN_CHUNK", 16 * 9 * 9 * 3)  # chunks of 3 output rows; the last one 1 row
    for flags in (True, False):  # oneDNN 1x1 product, or addmm
        with torch.backends.mkldnn.flags(enabled=flags):
            out, grads, _ = _run(deform_conv2d, c, g)
        assert out.is_contiguous()
        for a, b in zip([out, *grads], [ref, *ref_grads], strict=True):
            assert (a - b).abs().max() <= 1e-5 * b.abs().max().clamp_min(1)
    cl = dict(c, input=c["input"].contiguous(memory_format=torch.channels_last))
    out = deform_conv2d(**cl)
    assert out.is_contiguous(memory_format=torch.channels_last) and torch.allclose(out, ref, atol=1e-5)
    # traced (ONNX / torch.export): torchvision's op stays in the graph
    def fn(x, o, m):
        return deform_conv2d(x, o, c["weight"], c["bias"], padding=1, mask=m)

    traced = torch.jit.trace(fn, (c["input"], c["offset"], c["mask"]))
    assert "torchvision::deform_conv2d" in str(traced.graph)
    with pytest.raises(ValueError, match="do not fit"):
        deform_conv2d_cpu(c["input"], c["offset"][:, :17], c["weight"], padding=1)


def test_module_uses_cpu_op_and_bfloat16():
    torch.manual_seed(0)
    m = ModulatedDeformConv2d(32, 16, 3, stride=2, padding=1).eval()
    torch.nn.init.normal_(m.conv_offset_mask.weight, std=0.3)  # offsets of a few pixels
    x = torch.randn(2, 32, 15, 14)
    with torch.no_grad():
        out = m(x)
        off_mask = m.conv_offset_mask(x)
        ref = torchvision.ops.deform_conv2d(x, off_mask[:, :18], m.weight, m.bias, stride=2, padding=1,
                                            mask=off_mask[:, 18:].sigmoid())
        assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()
        # bfloat16 end to end, and CPU autocast: the op runs in bfloat16 (torchvision has no bfloat16 CPU kernel)
        low = deform_conv2d_cpu(x.bfloat16(), off_mask[:, :18], m.weight.bfloat16(), m.bias.bfloat16(), 2, 1, 1,
                                off_mask[:, 18:].sigmoid())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = m(x)
    # bfloat16 inputs, float32 accumulation: about the output's rounding; autocast also runs the offset
    # convolution in bfloat16 (measured 0.005 and 0.035 of max |ref|)
    for y, tol in ((low, 0.01), (auto, 0.06)):
        assert y.dtype == torch.bfloat16
        assert (y.float() - ref).abs().max() <= tol * ref.abs().max()
    # the op itself computes in its input's dtype under autocast, with either product backend
    for flags in (True, False):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), torch.backends.mkldnn.flags(enabled=flags):
            y = deform_conv2d_cpu(x, off_mask[:, :18], m.weight, m.bias, 2, 1, 1, off_mask[:, 18:].sigmoid())
        assert y.dtype == torch.float32 and (y - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_torch_compile_traces_the_cpu_op():
    # torch.compile (inductor, CPU) traces the op (the product becomes F.conv2d) instead of breaking the graph
    c = _case(C=16, Cout=8, H=10, W=9, dtype=torch.float32)
    args = [c[k] for k in ("input", "offset", "weight", "bias")]
    compiled = torch.compile(lambda *a: deform_conv2d_cpu(*a, 1, 1, 1, c["mask"]), fullgraph=True)
    with torch.no_grad():
        ref = torchvision.ops.deform_conv2d(*args, padding=1, mask=c["mask"])
        assert (compiled(*args) - ref).abs().max() <= 1e-5 * ref.abs().max()
