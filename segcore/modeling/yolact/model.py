"""YOLACT / YOLACT++ network: backbone + FPN + protonet + shared prediction head (+ semantic head,
+ YOLACT++ fast mask re-scoring network).

Symbol legend: B batch, P priors, K classes (no background), k prototypes, S input side,
Hp x Wp prototype map size (S/4 rounded up twice: 138 x 138 at S = 550), A priors per cell.
Source: Bolya et al., "YOLACT: Real-time Instance Segmentation", ICCV 2019, sections 3 and 4;
official repo ``yolact.py`` (``Yolact``, ``PredictionModule``), ``data/config.py``
(``yolact_base_config``, ``mask_proto_net``). Submodule names equal the official state_dict keys
(``backbone.layers.*``, ``fpn.*``, ``proto_net.{0,2,4,8,10}``, ``prediction_layers.0.*``,
``semantic_seg_conv``, ``maskiou_net.maskiou_net.{0,2,4,6,8,10}``).

YOLACT++: Bolya et al., "YOLACT++: Better Real-time Instance Segmentation", TPAMI 2020, section 3
(fast mask re-scoring network, DCN backbone, more priors); official ``FastMaskIoUNet`` in
``yolact.py`` and ``yolact_plus_base_config`` in ``data/config.py``.

Precision: under a bf16 / fp16 autocast (the predictor's CPU bf16 / CUDA fp16 paths, CPU bf16
training) the backbone, FPN, the protonet's hidden convs and the head's shared 3x3 conv
(``upfeature``) run in the low precision, and at inference the head's class conv too. The
protonet's last conv (the k prototypes), the head's box and coefficient convs (and in training
its class conv), the detection (decode, NMS, ``proto @ coef`` mask assembly) and the YOLACT++
re-scoring net run in float32 (:func:`segcore.ops.precision.fp32_call`): their outputs are box
offsets and mask logits read against a 0.5 threshold, which bf16's 8-bit mantissa moved visibly
(module docstring of :mod:`segcore.ops.precision`). The class logits go through a softmax,
where a logit's bf16 rounding (2^-9 of it) moves a score by < 0.005; their conv is 69 % of the
head's work (A (K + 1) = 243 of 351 output channels at K = 80), ~10 ms per 550 image on a 2-core
CPU in fp32. Training keeps it in fp32: trained in bf16, the YOLACT++ overfit test
(``tests/segcore/test_overfit.py``, one seed) ended at segm AP50 0.60 instead of 0.90, its mask
and MaskIoU losses 2.5x and 5x higher. Without autocast nothing changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...ops.precision import autocast_active, fp32_call
from ..fpn import FPN
from .loss import mask_logits, maskiou_samples, yolact_match
from .postprocess import yolact_detect
from .priors import YOLACT_ASPECT_RATIOS, YOLACT_PRED_SCALES_550, PriorCache

__all__ = ["Yolact", "PredictionHead", "FastMaskIoUNet", "make_protonet", "PIXEL_MEAN_RGB", "PIXEL_STD_RGB"]

#: ImageNet statistics in RGB order, 0..255 (official BGR MEANS / STD of ``data/config.py`` reordered).
PIXEL_MEAN_RGB: tuple[float, float, float] = (123.68, 116.78, 103.94)
PIXEL_STD_RGB: tuple[float, float, float] = (58.40, 57.12, 57.38)


def make_protonet(in_channels: int, num_prototypes: int, hidden: int = 256) -> nn.Sequential:
    """Protonet: 3 x [3x3 conv + ReLU], bilinear x2, [3x3 conv + ReLU], 1x1 conv -> k channels.

    Indices with weights are 0, 2, 4, 8, 10 as in the official ``proto_net`` (the official
    ``make_net`` puts a ReLU after the upsampling too; kept for identical indices). The ReLU on
    the prototypes themselves is applied by :class:`Yolact`. Source: paper section 3.1,
    official ``mask_proto_net`` in ``data/config.py`` and ``utils/functions.py`` ``make_net``.
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(inplace=True),
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), nn.ReLU(inplace=True),
        nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(hidden, num_prototypes, 1),
    )


class FastMaskIoUNet(nn.Module):
    """YOLACT++ fast mask re-scoring network ("MaskIoU"): predicts the IoU of a mask with its gt.

    Input ``[D, 1, Hp, Wp]`` float cropped sigmoid masks at prototype resolution; output
    ``[D, K]`` float predicted mask IoU per class. Layers: five 3x3 stride-2 convs without padding
    (8, 16, 32, 64, 128 channels) with ReLU, a 1x1 conv to K, a final ReLU, global max-pool.
    Source: YOLACT++ paper section 3.1; official ``FastMaskIoUNet`` (``yolact.py``) with
    ``maskiou_net`` of ``yolact_plus_base_config`` and ``make_net(..., include_last_relu=True)``;
    indices with weights ``maskiou_net.{0,2,4,6,8,10}``.

    ``forward(masks, activate=True)``: ``activate=False`` returns the output before the final
    ReLU (max over space of the 1x1 conv; ``relu(max(x)) = max(relu(x))``, so ``activate=True``
    is the official output exactly). Training regresses the pre-activation (segcore deviation):
    with the official ReLU a class channel whose output starts negative gets no gradient and
    stays at 0 for good, which on small data zeroes every mask score of that class.
    """

    def __init__(self, num_classes: int, channels: Sequence[int] = (8, 16, 32, 64, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2), nn.ReLU(inplace=True)]
            c_in = c
        layers += [nn.Conv2d(c_in, num_classes, 1)]
        self.maskiou_net = nn.Sequential(*layers)

    def forward(self, masks: Tensor, activate: bool = True) -> Tensor:
        x = torch.amax(self.maskiou_net(masks), dim=(2, 3))  # [D, K]
        return torch.relu(x) if activate else x


class PredictionHead(nn.Module):
    """Prediction head shared over P3..P7: 3x3 conv + ReLU, then three 3x3 convs.

    ``forward(x [B, C, h, w])`` returns ``(loc [B, h*w*A, 4], conf [B, h*w*A, K+1],
    mask_coef [B, h*w*A, k])``, all float32, with ``mask_coef`` through tanh. Under autocast the
    shared conv runs in its dtype, and at inference the class conv too; the box and coefficient
    convs in float32 (module docstring, "Precision"). Source: paper section 3.2, Figure 4; official
    ``PredictionModule`` (``extra_head_net``, ``head_layer_params``).
    """

    def __init__(self, in_channels: int, num_classes: int, num_prototypes: int, num_priors: int):
        super().__init__()
        self.num_classes = num_classes
        self.num_prototypes = num_prototypes
        self.upfeature = nn.Sequential(nn.Conv2d(in_channels, in_channels, 3, padding=1), nn.ReLU(inplace=True))
        self.bbox_layer = nn.Conv2d(in_channels, num_priors * 4, 3, padding=1)
        self.conf_layer = nn.Conv2d(in_channels, num_priors * (num_classes + 1), 3, padding=1)
        self.mask_layer = nn.Conv2d(in_channels, num_priors * num_prototypes, 3, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.upfeature(x)  # the shared 3x3 conv: in the autocast dtype when one is active
        if self.training or not autocast_active():
            return fp32_call(self._predict, x)
        # inference under autocast: the class logits in its dtype too (module docstring,
        # "Precision"), returned as float32; boxes and coefficients in float32
        b = x.shape[0]
        conf = self.conf_layer(x).float().permute(0, 2, 3, 1).reshape(b, -1, self.num_classes + 1)
        loc, coef = fp32_call(self._predict, x, layers=(self.bbox_layer, self.mask_layer))
        return loc, conf, coef

    def _predict(self, x: Tensor, layers: tuple[nn.Conv2d, ...] | None = None) -> tuple[Tensor, ...]:
        """``layers`` (default box, class, coefficient convs) over ``x`` as one conv over their
        stacked weights (they share the input; the same per-channel sums), split afterwards into
        ``[B, h*w*A, c]`` per layer; the coefficients through tanh."""
        b = x.shape[0]
        layers = layers or (self.bbox_layer, self.conf_layer, self.mask_layer)
        out = F.conv2d(x, torch.cat([m.weight for m in layers]), torch.cat([m.bias for m in layers]), padding=1)
        # [B, A*c, h, w] -> [B, h, w, A*c]; each part -> [B, h*w*A, c] (reshape copes with channels_last)
        parts = out.permute(0, 2, 3, 1).split([m.out_channels for m in layers], dim=3)
        priors = self.bbox_layer.out_channels // 4  # A
        parts = [p.reshape(b, -1, m.out_channels // priors) for p, m in zip(parts, layers)]
        return tuple(torch.tanh(p) if m is self.mask_layer else p for p, m in zip(parts, layers))


class Yolact(nn.Module):
    """YOLACT (v1) / YOLACT++ instance segmentation network.

    Args:
        backbone: module returning ``[C3, C4, C5]`` with an ``out_channels`` list attribute
            (ResNet, ResNet with DCNv2, DarkNet-53).
        num_classes: K (no background).
        input_size: S; the model expects ``[B, 3, S, S]`` inputs.
        fpn_channels: channels of P3..P7 (also protonet and head width); 256 in the paper.
        num_prototypes: k (32 in the paper).
        pred_scales: prior scale(s) per level P3..P7, pixels of the S x S input.
        aspect_ratios: prior aspect ratios.
        square_anchors: official v1 square-prior quirk (see :mod:`.priors`); False for YOLACT++.
        use_maskiou: add the YOLACT++ :class:`FastMaskIoUNet` as ``maskiou_net``.
        pixel_mean, pixel_std: RGB 0..255 input normalisation (ImageNet statistics by default;
            DarkNet uses mean 0, std 255).
        nms_iou_threshold, top_k, max_detections: inference (official ``nms_thresh 0.5``,
            ``top_k 200``, ``max_num_detections 100``).
        masks_to_train, discard_mask_area: training (official ``masks_to_train 100``,
            ``discard_mask_area 5*5`` proto pixels for the re-scoring net's samples).

    Attributes:
        pixel_mean, pixel_std: ``[1, 3, 1, 1]`` float32 non-persistent buffers (RGB, 0..255).
        info: :class:`segcore.modeling.registry.ModelInfo`, set by the registry builders.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        num_classes: int,
        input_size: int = 550,
        fpn_channels: int = 256,
        num_prototypes: int = 32,
        pred_scales: Sequence[float | Sequence[float]] = YOLACT_PRED_SCALES_550,
        aspect_ratios: Sequence[float] = YOLACT_ASPECT_RATIOS,
        square_anchors: bool = True,
        use_maskiou: bool = False,
        pixel_mean: Sequence[float] = PIXEL_MEAN_RGB,
        pixel_std: Sequence[float] = PIXEL_STD_RGB,
        nms_iou_threshold: float = 0.5,
        top_k: int = 200,
        max_detections: int = 100,
        masks_to_train: int = 100,
        discard_mask_area: float = 25.0,
    ):
        super().__init__()
        if len(pred_scales) != 5:
            raise ValueError(f"pred_scales needs one entry per level P3..P7, got {len(pred_scales)}")
        self.num_classes = int(num_classes)
        self.input_size = int(input_size)
        self.num_prototypes = int(num_prototypes)
        self.nms_iou_threshold = float(nms_iou_threshold)
        self.top_k = int(top_k)
        self.max_detections = int(max_detections)
        self.masks_to_train = int(masks_to_train)
        self.discard_mask_area = float(discard_mask_area)
        self.priors = PriorCache(pred_scales, aspect_ratios, self.input_size, square_anchors=square_anchors)

        self.backbone = backbone
        self.fpn = FPN(list(backbone.out_channels), fpn_channels, num_downsample=2)
        self.proto_net = make_protonet(fpn_channels, self.num_prototypes, hidden=fpn_channels)
        self.prediction_layers = nn.ModuleList(
            [PredictionHead(fpn_channels, self.num_classes, self.num_prototypes, self.priors.num_per_cell)]
        )
        self.semantic_seg_conv = nn.Conv2d(fpn_channels, self.num_classes, kernel_size=1)
        self.maskiou_net = FastMaskIoUNet(self.num_classes) if use_maskiou else None
        mean = torch.tensor([float(v) for v in pixel_mean], dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor([float(v) for v in pixel_std], dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)
        self._init_head_weights()

    def _init_head_weights(self) -> None:
        # official Yolact.init_weights: xavier-uniform weights and zero biases outside the backbone
        for name, module in self.named_modules():
            if isinstance(module, nn.Conv2d) and not name.startswith("backbone."):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def device(self) -> torch.device:
        """Device of the model (of its ``pixel_mean`` buffer)."""
        return self.pixel_mean.device

    def network(self, images: Tensor) -> dict[str, Tensor]:
        """The dense network: raw per-prior outputs (what the ONNX graph and the loss start from).

        Args:
            images: ``[B, 3, S, S]`` float, RGB, 0..255, already resized to S x S.

        Returns:
            dict with ``loc`` ``[B, P, 4]`` (SSD encoding), ``conf`` ``[B, P, K+1]`` logits
            (index 0 = background), ``mask_coef`` ``[B, P, k]`` (tanh), ``proto``
            ``[B, Hp, Wp, k]`` (ReLU), ``priors`` ``[P, 4]`` float32 relative cxcywh, and in
            training mode ``segm`` ``[B, K, H3, W3]`` semantic logits on P3. ``loc``, ``conf``,
            ``mask_coef`` and ``proto`` are float32 even under autocast; ``segm`` (training
            only) has the autocast dtype.

        Raises:
            ValueError: if ``images`` is not ``[B, 3, S, S]``.
        """
        if images.dim() != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != (self.input_size,) * 2:
            raise ValueError(
                f"Yolact expects images [B, 3, {self.input_size}, {self.input_size}], got {tuple(images.shape)}"
            )
        x = (images - self.pixel_mean) / self.pixel_std
        feats = self.fpn(self.backbone(x))  # [P3, P4, P5, P6, P7]; bf16 / fp16 under autocast

        # the protonet's hidden convs keep the autocast dtype (most of its work); its last 1x1 conv
        # (the prototypes themselves) and the head run in float32 (module docstring, "Precision")
        x = feats[0]
        for layer in self.proto_net[:-1]:
            x = layer(x)
        proto = fp32_call(self.proto_net[-1], x)
        proto = torch.relu(proto).permute(0, 2, 3, 1).contiguous()  # [B, Hp, Wp, k]

        head = self.prediction_layers[0]
        locs, confs, coefs = [], [], []
        for f in feats:
            loc, conf, coef = head(f)
            locs.append(loc)
            confs.append(conf)
            coefs.append(coef)
        priors = self.priors([tuple(f.shape[-2:]) for f in feats], images.device)
        out = {
            "loc": torch.cat(locs, dim=1),
            "conf": torch.cat(confs, dim=1),
            "mask_coef": torch.cat(coefs, dim=1),
            "proto": proto,
            "priors": priors,
        }
        if self.training:
            out["segm"] = self.semantic_seg_conv(feats[0])
        return out

    def forward(self, images: Tensor, targets: list[dict] | None = None, *,
                image_sizes: Sequence[tuple[int, int]] | None = None, score_threshold: float = 0.05) -> dict:
        """The whole network, every trainable module included (the model contract of
        :mod:`segcore.modeling.registry`).

        Args:
            images: ``[B, 3, S, S]`` float, RGB, 0..255, already resized to S x S.
            targets: training: B target dicts (:func:`~.loss.yolact_loss`); required for YOLACT++
                (the re-scoring net trains on the matched positives' masks), optional for v1.
            image_sizes: ignored (every image fills the S x S input).
            score_threshold: inference: the candidate pre-filter of :func:`~.postprocess.yolact_detect`.

        Returns:
            :meth:`network`'s dict, plus in training with targets ``match``
            (:class:`~.loss.YolactMatch`) and for YOLACT++ ``maskiou`` (``{"pred" [D] float32
            pre-activation IoU of the gt class, "target" [D] float32}``); in eval mode
            ``detections`` (:func:`~.postprocess.yolact_detect` with this model's NMS settings
            and, for YOLACT++, its re-scoring net).

        Raises:
            ValueError: bad ``images`` shape, or a YOLACT++ model in training mode without targets.
        """
        out = self.network(images)
        if self.training:
            if targets is None:
                if self.maskiou_net is not None:
                    raise ValueError("YOLACT++ in training mode needs targets: model(images, targets)")
                return out
            out["match"] = match = yolact_match(out, targets, input_size=self.input_size,
                                                masks_to_train=self.masks_to_train)
            if self.maskiou_net is not None:
                masks, iou_t, classes = [], [], []
                for b, sample in enumerate(match.samples):
                    if sample is not None:
                        logits = mask_logits(out["proto"][b], out["mask_coef"][b, sample["pos_idx"]])
                        m, t, c = maskiou_samples(logits, sample, discard_mask_area=self.discard_mask_area)
                        masks.append(m)
                        iou_t.append(t)
                        classes.append(c)
                hp, wp = out["proto"].shape[1:3]
                x = torch.cat(masks) if masks else out["proto"].new_zeros((0, 1, hp, wp))  # D may be 0
                pred = fp32_call(self.maskiou_net, x, activate=False)  # [D, K] float32
                cls = torch.cat(classes) if classes else torch.zeros(0, dtype=torch.int64, device=x.device)
                out["maskiou"] = {"pred": pred.gather(1, cls[:, None]).squeeze(1),
                                  "target": torch.cat(iou_t) if iou_t else x.new_zeros(0)}
            return out
        # decode, NMS, proto @ coef mask assembly and the re-scoring net in float32 (autocast off)
        out["detections"] = fp32_call(
            yolact_detect, out, score_threshold=score_threshold, nms_iou_threshold=self.nms_iou_threshold,
            top_k=self.top_k, max_detections=self.max_detections, maskiou=self.maskiou_net)
        return out
