"""BlendMask network (Chen et al., CVPR 2020; AdelaiDet ``adet/modeling/blendmask/blendmask.py``).

Modules and official key prefixes: ``backbone`` (detectron2 ResNet-FPN, ``backbone.bottom_up.*``,
``backbone.fpn_*``, ``backbone.top_block.*``), ``proposal_generator.fcos_head`` (FCOS),
``basis_module`` (bases), ``top_layer`` (3x3 conv on every level's box tower to K x M x M
attentions, init N(0, 0.01), bias 0). The blender has no parameters (``blender.py``).

Input contract (same as every segcore model): ``images`` ``[B, 3, H, W]`` float32 **RGB
0..255**; H and W multiples of 32 (the dataset / predictor resize the short side and pad with
the pixel mean). The model converts to detectron2's input itself: BGR, minus the mean
(103.530, 116.280, 123.675), std 1 (buffers ``pixel_mean`` / ``pixel_std``, not saved).

Raw outputs (dict; same keys in train and eval mode except ``seg_logits``):
``logits`` ``[B, L, K_cls]``, ``bbox_reg`` ``[B, L, 4]``, ``ctrness`` ``[B, L]``,
``top_feats`` ``[B, L, K * M * M]``, ``bases`` ``[B, K, H / 4, W / 4]``, ``locations``
``[L, 2]``, ``loc_strides`` ``[L]``, ``level_sizes``, ``strides``; ``seg_logits``
``[B, K_cls + 1, H / 8, W / 8]`` in training when the semantic loss is on.
Symbols: B batch, L locations (all levels), K_cls classes, K bases, M attention size.

Attentions at inference: in eval mode ``top_feats`` is an :class:`Attentions` instead of a
tensor. It holds the box towers and computes the ``top_layer`` 3x3 convolution only at the
locations it is indexed with (``top_feats[i, loc_inds]`` -> ``[N, K * M * M]`` float32): the
post-processing needs the attentions of at most ``post_nms_topk`` detections, not of all L
locations (BlendMask-RT at 512 x 683: 100 of 7,392 locations; the dense float32 layer took 49 ms
of a 224 ms CPU prediction). The values are those of the dense layer up to float32 summation
order (``tests/segcore/test_blendmask_attentions.py``). ``Attentions.dense()`` gives the whole
``[B, L, K * M * M]`` tensor. Training keeps the dense tensor (the loss reads every positive).

Precision: under a bf16 / fp16 autocast the backbone, FPN and FCOS towers run in the low
precision, and so does the ``basis_module`` up to its last conv; the FCOS predictors
(:mod:`segcore.modeling.fcos.head`), the ``top_layer`` attentions and the bases themselves (the
last conv, :mod:`.basis`) run in float32 (:func:`segcore.ops.precision.fp32_call`), and the
blender runs in float32 after the forward (:mod:`.postprocess`): the blended masks are
thresholded at 0.5, where bf16 rounding of bases or attentions flipped pixels.
"""

from __future__ import annotations

import torch
from torch import nn

from ...ops.precision import fp32_call
from ..fcos import D2FPN, FCOSProposalGenerator, flatten_levels

from ..fcos.d2_input import D2_PIXEL_MEAN_BGR, D2InputMixin  # D2_PIXEL_MEAN_BGR re-exported

__all__ = ["Attentions", "BlendMask", "D2_PIXEL_MEAN_BGR"]

#: detectron2 ``MODEL.PIXEL_MEAN`` (BGR, 0..255); std is 1.


class Attentions:
    """The ``top_layer`` attentions of an inference forward, ``[B, L, K * M * M]`` (symbols of
    the module docstring), computed on demand at the locations indexed.

    ``attentions[i, loc_inds]`` (``i`` an image of the batch, ``loc_inds`` ``[N]`` flat location
    indices over all levels, level-major then row-major as :func:`~segcore.modeling.fcos.flatten_levels`;
    a tensor, array or list) returns ``[N, K * M * M]`` float32 on the towers' device: each row is
    the 3x3 convolution (stride 1, zero padding 1) of the float32 box tower around that location,
    the dense layer's value up to float32 summation order, without autograd (inference only).
    ``shape`` is the dense shape; :meth:`dense` computes the whole tensor.

    Args:
        towers: per level ``[B, C, H_l, W_l]`` box towers (any float dtype; cast to float32).
        top_layer: the model's ``nn.Conv2d(C, K * M * M, 3, 1, 1)``.

    Raises:
        ValueError: a ``top_layer`` that is not a 3x3, stride-1, padding-1 convolution; an index
            outside ``[0, L)``.
    """

    def __init__(self, towers: list[torch.Tensor], top_layer: nn.Conv2d):
        if (tuple(top_layer.kernel_size), tuple(top_layer.stride), tuple(top_layer.padding),
                tuple(top_layer.dilation), top_layer.groups) != ((3, 3), (1, 1), (1, 1), (1, 1), 1):
            raise ValueError("Attentions needs a 3x3 top_layer with stride 1, padding 1, dilation 1, groups 1")
        self._towers = list(towers)
        self._layer = top_layer
        sizes = [int(t.shape[2] * t.shape[3]) for t in self._towers]
        self._starts = [sum(sizes[:i]) for i in range(len(sizes))] + [sum(sizes)]
        self.shape = torch.Size((int(self._towers[0].shape[0]), sum(sizes), int(top_layer.out_channels)))
        self.device = self._towers[0].device

    def __getitem__(self, key) -> torch.Tensor:
        i, inds = key
        return fp32_call(self._at, int(i), inds)  # float32 inside an autocast region too

    def _at(self, i: int, inds) -> torch.Tensor:
        inds = torch.as_tensor(inds, dtype=torch.int64, device=self.device).reshape(-1)
        if inds.numel() and (int(inds.min()) < 0 or int(inds.max()) >= self.shape[1]):
            raise ValueError(f"attention locations must be in [0, {self.shape[1]})")
        weight = self._layer.weight.detach().float()  # inference only: no graph kept
        out = weight.new_empty((inds.numel(), weight.shape[0]))
        w2 = weight.reshape(weight.shape[0], -1).t()               # [C * 9, K * M * M]
        bias = self._layer.bias.detach().float() if self._layer.bias is not None else weight.new_zeros(weight.shape[0])
        taps = torch.arange(3, device=self.device)
        for level, tower in enumerate(self._towers):
            lo, hi = self._starts[level], self._starts[level + 1]
            sel = ((inds >= lo) & (inds < hi)).nonzero().squeeze(1)
            if sel.numel() == 0:
                continue
            width = tower.shape[3]
            local = inds[sel] - lo
            ys, xs = local // width, local % width
            padded = torch.nn.functional.pad(tower[i].detach().float(), (1, 1, 1, 1))  # [C, H_l + 2, W_l + 2]
            patch = padded[:, (ys[:, None] + taps)[:, :, None], (xs[:, None] + taps)[:, None, :]]  # [C, n, 3, 3]
            out[sel] = torch.addmm(bias, patch.permute(1, 0, 2, 3).reshape(sel.numel(), -1), w2)
        return out

    def dense(self) -> torch.Tensor:
        """The whole ``[B, L, K * M * M]`` float32 tensor (the training path's value)."""
        return flatten_levels([fp32_call(self._layer, t) for t in self._towers])


class BlendMask(D2InputMixin, nn.Module):
    """FCOS + bottom module + top layer. Build through the registry (``builders.py``).

    Args:
        backbone: :class:`segcore.modeling.fcos.D2FPN`.
        proposal_generator: :class:`segcore.modeling.fcos.FCOSProposalGenerator`.
        basis_module: :class:`.basis.BasisModule`.
        num_bases, attn_size, bottom_resolution: K (4), M (14), R (56).
        semantic_loss: produce ``seg_logits`` in training (needs ``basis_module.seg_head``).
        sizes_of_interest, center_sample_radius: FCOS training targets (official 64/128/256/512
            per level boundary, 1.5), read by the family's loss.
        thresh_with_ctr: FCOS inference threshold on ``cls x ctr`` (``THRESH_WITH_CTR`` True).

    ``forward(images, targets=None, *, image_sizes=None, score_threshold=0.05)`` (the model
    contract of :mod:`segcore.modeling.registry`): every trainable module runs in it; the
    detection and blending after it have no parameters (:mod:`.postprocess`, :mod:`.loss`), so
    ``targets``, ``image_sizes`` and ``score_threshold`` are accepted and not needed.
    """

    def __init__(self, backbone: D2FPN, proposal_generator: FCOSProposalGenerator, basis_module: nn.Module, *,
                 num_bases: int = 4, attn_size: int = 14, bottom_resolution: int = 56, semantic_loss: bool = False,
                 sizes_of_interest=(64, 128, 256, 512), center_sample_radius: float = 1.5,
                 thresh_with_ctr: bool = True):
        super().__init__()
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self.basis_module = basis_module
        ch = backbone.out_channels
        self.top_layer = nn.Conv2d(ch, num_bases * attn_size * attn_size, 3, 1, 1)
        nn.init.normal_(self.top_layer.weight, std=0.01)
        nn.init.zeros_(self.top_layer.bias)
        self.num_bases = int(num_bases)
        self.attn_size = int(attn_size)
        self.bottom_resolution = int(bottom_resolution)
        self.semantic_loss = bool(semantic_loss)
        self.sizes_of_interest = tuple(int(s) for s in sizes_of_interest)
        self.center_sample_radius = float(center_sample_radius)
        self.thresh_with_ctr = bool(thresh_with_ctr)
        if self.semantic_loss and getattr(basis_module, "seg_head", None) is None:
            raise ValueError("semantic_loss needs a basis module with a seg_head")
        self._init_d2_input()

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None, *, image_sizes=None,
                score_threshold: float = 0.05) -> dict:
        self.check_input(images)
        feats = self.backbone(self.normalize(images))
        out = self.proposal_generator(feats)
        towers = out.pop("bbox_towers")
        # attentions and bases in float32 under autocast (module docstring, "Precision")
        if self.training:
            out["top_feats"] = flatten_levels([fp32_call(self.top_layer, t) for t in towers])
        else:  # computed for the detections only (module docstring, "Attentions at inference")
            out["top_feats"] = Attentions(towers, self.top_layer)
        out["bases"] = self.basis_module(feats[:3])  # float32 bases (basis.py, "Precision")
        if self.training and self.semantic_loss:
            out["seg_logits"] = self.basis_module.seg_head(feats[0])
        return out
