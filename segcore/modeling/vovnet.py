"""VoVNetV2 backbone (CenterMask, Lee and Park, CVPR 2020, section 2.3 "VoVNetV2").

Symbol legend: N batch, C channels, H x W input image, Hs x Ws stage output (H / stride).
Source: the paper's section 2.3 and Figure 3 (OSA module, identity residual, effective
Squeeze-Excitation), and centermask2 ``centermask/modeling/backbone/vovnet.py`` (stage specs,
module names, DCN placement). Module names reproduce the official ``state_dict`` keys exactly,
including the ``'/'`` inside child names (``stem.stem_1/conv.weight``,
``stage2.OSA2_1.layers.0.OSA2_1_0/conv.weight``, ``stage3.OSA3_1.ese.fc.bias``), so a VoVNet
placed at ``backbone.bottom_up`` loads centermask2 checkpoints by name. Norm ``"FrozenBN"``
(default, as the centermask2 configs) stores ``weight, bias, running_mean, running_var`` as
buffers and no ``num_batches_tracked``.

Structure: stem = 3 x (3x3 conv-norm-ReLU), strides 2, 1, 2 (the ``dw`` variants use a depthwise
3x3 + pointwise 1x1 conv for the last two); four OSA stages ``stage2..stage5`` (stage2 keeps
stride 4, stages 3-5 start with ``MaxPool2d(3, 2, ceil_mode=True)``); each OSA module runs
``layer_per_block`` 3x3 conv-norm-ReLU layers in sequence, concatenates its input and every
layer output, applies a 1x1 conv-norm-ReLU and eSE; OSA modules after the first of a stage add
their input (identity residual). Outputs (strides 4, 8, 16, 32): ``stage2..stage5``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d

from ..ops.dcn import deform_conv2d

__all__ = ["VOVNET_SPECS", "VoVNet", "EffectiveSE", "OSAModule", "vovnet_backbone",
           "convert_timm_vovnet_state_dict"]

_FULL = dict(stage_conv_ch=(128, 160, 192, 224), stage_out_ch=(256, 512, 768, 1024))
_SLIM = dict(stage_conv_ch=(64, 80, 96, 112), stage_out_ch=(112, 256, 384, 512))

#: centermask2 ``_STAGE_SPECS`` (``CONV_BODY`` names): stem channels, per-stage 3x3 conv width
#: and OSA output width, layers per OSA module, OSA modules per stage, depthwise convs.
VOVNET_SPECS: dict[str, dict] = {
    "V-19-slim-dw-eSE": dict(stem=(64, 64, 64), **_SLIM, layer_per_block=3, block_per_stage=(1, 1, 1, 1), dw=True),
    "V-19-dw-eSE": dict(stem=(64, 64, 64), **_FULL, layer_per_block=3, block_per_stage=(1, 1, 1, 1), dw=True),
    "V-19-slim-eSE": dict(stem=(64, 64, 128), **_SLIM, layer_per_block=3, block_per_stage=(1, 1, 1, 1), dw=False),
    "V-19-eSE": dict(stem=(64, 64, 128), **_FULL, layer_per_block=3, block_per_stage=(1, 1, 1, 1), dw=False),
    "V-39-eSE": dict(stem=(64, 64, 128), **_FULL, layer_per_block=5, block_per_stage=(1, 1, 2, 2), dw=False),
    "V-57-eSE": dict(stem=(64, 64, 128), **_FULL, layer_per_block=5, block_per_stage=(1, 1, 4, 3), dw=False),
    "V-99-eSE": dict(stem=(64, 64, 128), **_FULL, layer_per_block=5, block_per_stage=(1, 3, 9, 3), dw=False),
}

STAGE_NAMES = ("stage2", "stage3", "stage4", "stage5")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "FrozenBN":
        return FrozenBatchNorm2d(channels)  # eps 1e-5, as detectron2's FrozenBatchNorm2d
    if kind == "BN":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"norm: expected 'FrozenBN' or 'BN', got {kind!r}")


def _conv_unit(prefix: str, cin: int, cout: int, norm: str, kernel: int = 3, stride: int = 1) -> list:
    """``{prefix}/conv`` (no bias) -> ``{prefix}/norm`` -> ``{prefix}/relu``."""
    return [(f"{prefix}/conv", nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)),
            (f"{prefix}/norm", _norm(norm, cout)), (f"{prefix}/relu", nn.ReLU(inplace=True))]


def _dw_unit(prefix: str, cin: int, cout: int, norm: str, stride: int = 1) -> list:
    """Depthwise 3x3 (``groups=cout``; the official code requires cin == cout) + pointwise 1x1."""
    return [(f"{prefix}/dw_conv3x3", nn.Conv2d(cin, cout, 3, stride, 1, groups=cout, bias=False)),
            (f"{prefix}/pw_conv1x1", nn.Conv2d(cin, cout, 1, bias=False)),
            (f"{prefix}/pw_norm", _norm(norm, cout)), (f"{prefix}/pw_relu", nn.ReLU(inplace=True))]


class _DeformWeight(nn.Module):
    """Holds only the DCN kernel ``weight [Cout, Cin, 3, 3]`` (official: no bias)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin, 3, 3))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)  # nn.Conv2d's default init


class DeformConvUnit(nn.Module):
    """3x3 deformable conv-norm-ReLU of the DCN configs (centermask2 ``DFConv3x3``).

    Children ``{prefix}/conv_offset`` (plain 3x3 conv with bias, zero-initialised, 27 channels
    per deformable group when modulated, else 18), ``{prefix}/conv`` (``weight`` only) and
    ``{prefix}/norm``. Modulated: the first 2/3 of the offset channels are the (dy, dx) offsets
    in torchvision's layout (the official chunk + cat is an identity on channel order), the last
    1/3 pass a sigmoid and are the mask. Runs :func:`segcore.ops.dcn.deform_conv2d` (CPU: the multi-threaded
    :func:`~segcore.ops.dcn.deform_conv2d_cpu`; other devices: ``torchvision.ops.deform_conv2d``).
    ``[N, Cin, h, w] -> [N, Cout, h, w]``.
    """

    def __init__(self, prefix: str, cin: int, cout: int, norm: str, modulated: bool = True,
                 deformable_groups: int = 1):
        super().__init__()
        self.modulated = modulated
        self.names = (f"{prefix}/conv_offset", f"{prefix}/conv", f"{prefix}/norm")
        offset = nn.Conv2d(cin, (27 if modulated else 18) * deformable_groups, 3, 1, 1)
        nn.init.zeros_(offset.weight)
        nn.init.zeros_(offset.bias)
        self.add_module(self.names[0], offset)
        self.add_module(self.names[1], _DeformWeight(cin, cout))
        self.add_module(self.names[2], _norm(norm, cout))

    def forward(self, x: Tensor) -> Tensor:
        offset_conv, conv, norm = (getattr(self, n) for n in self.names)
        out = offset_conv(x)
        mask = None
        if self.modulated:
            n = out.shape[1] // 3
            out, mask = out[:, : 2 * n], out[:, 2 * n:].sigmoid()
        w = conv.weight
        y = deform_conv2d(x.to(w.dtype), out.to(w.dtype), w, None, padding=(1, 1),
                          mask=None if mask is None else mask.to(w.dtype))
        return F.relu(norm(y))


class EffectiveSE(nn.Module):
    """Effective Squeeze-Excitation (paper section 2.3, Eq. 3; centermask2 ``eSEModule``).

    ``y = x * hsigmoid(fc(avgpool(x)))`` with ``fc`` one 1x1 conv with bias keeping C channels
    (no channel reduction, unlike SE) and ``hsigmoid(z) = relu6(z + 3) / 6``.
    ``[N, C, H, W] -> [N, C, H, W]``, same dtype.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        gate = F.relu6(self.fc(x.mean(dim=(2, 3), keepdim=True)) + 3.0) / 6.0
        return x * gate


class OSAModule(nn.Module):
    """One-Shot Aggregation module with eSE and optional identity residual (``_OSA_module``).

    Args:
        in_ch, stage_ch, concat_ch: input, 3x3-conv and output channels.
        layer_per_block: number of 3x3 conv layers.
        name: official module name, e.g. ``"OSA3_1"`` (prefix of every child name).
        identity: add the input to the output (every module after the first of a stage).
        depthwise: depthwise-separable layers (``dw`` specs; a 1x1 ``conv_reduction`` first when
            ``in_ch != stage_ch``).
        dcn: deformable 3x3 layers (``DeformConvUnit``); ``modulated``, ``deformable_groups``.

    ``[N, in_ch, h, w] -> [N, concat_ch, h, w]``.
    """

    def __init__(self, in_ch: int, stage_ch: int, concat_ch: int, layer_per_block: int, name: str, *,
                 identity: bool = False, depthwise: bool = False, dcn: bool = False, modulated: bool = True,
                 deformable_groups: int = 1, norm: str = "FrozenBN"):
        super().__init__()
        if identity and in_ch != concat_ch:
            raise ValueError(f"{name}: identity residual needs in_ch == concat_ch, got {in_ch}, {concat_ch}")
        self.identity = identity
        self.conv_reduction = None
        if depthwise and in_ch != stage_ch:
            self.conv_reduction = nn.Sequential(OrderedDict(
                _conv_unit(f"{name}_reduction_0", in_ch, stage_ch, norm, kernel=1)))
        self.layers = nn.ModuleList()
        cin = stage_ch if depthwise else in_ch
        for i in range(layer_per_block):
            if depthwise:
                layer = nn.Sequential(OrderedDict(_dw_unit(f"{name}_{i}", stage_ch, stage_ch, norm)))
            elif dcn:
                layer = DeformConvUnit(f"{name}_{i}", cin, stage_ch, norm, modulated, deformable_groups)
            else:
                layer = nn.Sequential(OrderedDict(_conv_unit(f"{name}_{i}", cin, stage_ch, norm)))
            self.layers.append(layer)
            cin = stage_ch
        self.concat = nn.Sequential(OrderedDict(
            _conv_unit(f"{name}_concat", in_ch + layer_per_block * stage_ch, concat_ch, norm, kernel=1)))
        self.ese = EffectiveSE(concat_ch)

    def forward(self, x: Tensor) -> Tensor:
        outputs = [x]
        y = x if self.conv_reduction is None else self.conv_reduction(x)
        for layer in self.layers:
            y = layer(y)
            outputs.append(y)
        y = self.ese(self.concat(torch.cat(outputs, dim=1)))
        return y + x if self.identity else y


class VoVNet(nn.Module):
    """VoVNetV2 trunk; ``forward`` returns ``{name: [N, C_name, H / s, W / s]}``.

    Args:
        spec: a key of :data:`VOVNET_SPECS` (``"V-39-eSE"`` ...) or a spec dict of that form.
        norm: ``"FrozenBN"`` (default, centermask2 ``VOVNET.NORM``) or ``"BN"``.
        stage_with_dcn: per stage 2..5, deformable 3x3 layers (DCN configs: F, T, T, T).
        with_modulated_dcn, deformable_groups: DCN options (configs: True, 1).
        out_features: names returned by ``forward`` (``"stem"``, ``"stage2"`` .. ``"stage5"``).
        freeze_at: 0 trains everything; k >= 1 sets ``requires_grad=False`` on the stem (k = 1)
            and the first k - 1 stages (detectron2 ``FREEZE_AT``).
        in_channels: image channels (3).

    Input ``[N, in_channels, H, W]`` float (normalised by the caller), any H, W >= 32.
    Attributes ``out_channels`` and ``strides``: dicts over all feature names (strides 4, 4, 8,
    16, 32 for stem, stage2..stage5). Raises ``ValueError`` for an unknown spec or norm.
    """

    def __init__(self, spec: str | dict = "V-39-eSE", *, norm: str = "FrozenBN",
                 stage_with_dcn: tuple[bool, bool, bool, bool] = (False, False, False, False),
                 with_modulated_dcn: bool = True, deformable_groups: int = 1,
                 out_features: tuple[str, ...] = STAGE_NAMES, freeze_at: int = 0, in_channels: int = 3):
        super().__init__()
        if isinstance(spec, str):
            if spec not in VOVNET_SPECS:
                raise ValueError(f"spec: unknown VoVNet {spec!r}; known: {sorted(VOVNET_SPECS)}")
            spec = VOVNET_SPECS[spec]
        _norm(norm, 1)  # validate early
        stem_ch, dw = spec["stem"], spec["dw"]
        stem = _conv_unit("stem_1", in_channels, stem_ch[0], norm, stride=2)
        if dw:
            def unit(p, a, b, s):
                return _dw_unit(p, a, b, norm, s)
        else:
            def unit(p, a, b, s):
                return _conv_unit(p, a, b, norm, stride=s)
        stem += unit("stem_2", stem_ch[0], stem_ch[1], 1) + unit("stem_3", stem_ch[1], stem_ch[2], 2)
        self.stem = nn.Sequential(OrderedDict(stem))
        self.out_channels = {"stem": stem_ch[2]}
        self.strides = {"stem": 4}
        in_ch = stem_ch[2]
        for i, name in enumerate(STAGE_NAMES):
            num = i + 2
            stage = nn.Sequential()
            if num != 2:
                stage.add_module("Pooling", nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
            for b in range(spec["block_per_stage"][i]):
                stage.add_module(f"OSA{num}_{b + 1}", OSAModule(
                    in_ch, spec["stage_conv_ch"][i], spec["stage_out_ch"][i], spec["layer_per_block"],
                    f"OSA{num}_{b + 1}", identity=b > 0, depthwise=dw, dcn=bool(stage_with_dcn[i]),
                    modulated=with_modulated_dcn, deformable_groups=deformable_groups, norm=norm))
                in_ch = spec["stage_out_ch"][i]
            self.add_module(name, stage)
            self.out_channels[name] = in_ch
            self.strides[name] = 4 * 2 ** i
        unknown = set(out_features) - set(self.out_channels)
        if unknown:
            raise ValueError(f"out_features: unknown {sorted(unknown)}")
        self.out_features = tuple(out_features)
        self.freeze(freeze_at)

    def freeze(self, freeze_at: int) -> None:
        """``requires_grad=False`` on the stem (``freeze_at >= 1``) and stages 2.. ``freeze_at``."""
        parts = [self.stem] + [getattr(self, n) for n in STAGE_NAMES]
        for part in parts[:max(int(freeze_at), 0)]:
            for p in part.parameters():
                p.requires_grad_(False)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if x.dim() != 4:
            raise ValueError(f"VoVNet input: expected [N, C, H, W], got {tuple(x.shape)}")
        out = {}
        x = self.stem(x)
        if "stem" in self.out_features:
            out["stem"] = x
        for name in STAGE_NAMES:
            x = getattr(self, name)(x)
            if name in self.out_features:
                out[name] = x
        return out


def vovnet_backbone(name: str, **kwargs) -> VoVNet:
    """``VoVNet(spec)`` by short name: ``"V-39"``, ``"V-19-slim-dw"`` ... or the full spec name;
    a ``"-dcn"`` suffix turns on modulated DCN in stages 3-5 (centermask2 ``*_dcn_*`` configs)."""
    dcn = name.endswith("-dcn")
    base = name[: -len("-dcn")] if dcn else name
    spec = base if base.endswith("-eSE") else base + "-eSE"
    if dcn:
        kwargs.setdefault("stage_with_dcn", (False, True, True, True))
    return VoVNet(spec, **kwargs)


def convert_timm_vovnet_state_dict(state_dict: dict[str, Tensor], spec: str | dict) -> dict[str, Tensor]:
    """Map a timm ``ese_vovnet*`` state_dict (``stem.0.conv.weight``, ``stages.1.blocks.0.conv_mid.2.bn.bias``,
    ``...attn.fc.weight``) to :class:`VoVNet` keys (no prefix).

    timm's ``ese_vovnet19b_dw`` / ``19b_slim_dw`` / ``19b_slim`` / ``39b`` / ``57b`` / ``99b`` match
    ``V-19-dw`` / ``V-19-slim-dw`` / ``V-19-slim`` / ``V-39`` / ``V-57`` / ``V-99``. timm puts eSE only on
    the last OSA module of a stage, centermask2 on every one: the missing ``ese.fc`` get weight 0,
    bias 3, i.e. a gate of exactly 1 (``relu6(3 + 3) / 6``). ``num_batches_tracked`` and the
    classifier ``head.*`` are dropped. Raises ``KeyError`` for a key it cannot place.
    """
    spec = VOVNET_SPECS[spec] if isinstance(spec, str) else spec
    out: dict[str, Tensor] = {}
    unit_names = {"conv": "conv", "bn": "norm", "conv_dw": "dw_conv3x3", "conv_pw": "pw_conv1x1"}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] == "head" or parts[-1] == "num_batches_tracked":
            continue
        if parts[0] == "stem":
            i, mod, leaf = int(parts[1]), parts[2], parts[3]
            unit = unit_names[mod]
            if spec["dw"] and i > 0 and mod == "bn":
                unit = "pw_norm"
            out[f"stem.stem_{i + 1}/{unit}.{leaf}"] = value
            continue
        if parts[0] != "stages" or parts[2] != "blocks":
            raise KeyError(f"timm VoVNet key not understood: {key}")
        s, b = int(parts[1]) + 2, int(parts[3]) + 1
        osa, rest = f"stage{s}.OSA{s}_{b}", parts[4:]
        if rest[0] == "attn":
            out[f"{osa}.ese.{rest[1]}.{rest[2]}"] = value
        elif rest[0] == "conv_reduction":
            out[f"{osa}.conv_reduction.OSA{s}_{b}_reduction_0/{unit_names[rest[1]]}.{rest[2]}"] = value
        elif rest[0] == "conv_concat":
            out[f"{osa}.concat.OSA{s}_{b}_concat/{unit_names[rest[1]]}.{rest[2]}"] = value
        elif rest[0] == "conv_mid":
            i, mod, leaf = int(rest[1]), rest[2], rest[3]
            unit = "pw_norm" if (spec["dw"] and mod == "bn") else unit_names[mod]
            out[f"{osa}.layers.{i}.OSA{s}_{b}_{i}/{unit}.{leaf}"] = value
        else:
            raise KeyError(f"timm VoVNet key not understood: {key}")
    for i, n in enumerate(spec["block_per_stage"]):
        c = spec["stage_out_ch"][i]
        for b in range(1, n + 1):
            key = f"stage{i + 2}.OSA{i + 2}_{b}.ese.fc"
            if f"{key}.weight" not in out:
                out[f"{key}.weight"] = torch.zeros(c, c, 1, 1)
                out[f"{key}.bias"] = torch.full((c,), 3.0)
    return out
