"""CenterMask assembled from VoVNetV2 + segcore FCOS (D2FPN, FCOSProposalGenerator) + CenterMaskRoIHeads:
every key and shape of the official whole-model lists (``keys_centermask_V_39_eSE_FPN_ms_3x.txt``,
``keys_centermask_lite_V_19_eSE_FPN_ms_4x.txt``; sha256 of the sorted ``key (shape)`` lines pinned
here), and a CPU forward of the Lite layout through boxes -> masks with finite outputs."""

from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from segcore.modeling.centermask import CenterMaskRoIHeads
from segcore.ops import paste_masks
from segcore.modeling.fcos import D2FPN, FCOSProposalGenerator, fcos_detect
from segcore.modeling.vovnet import VoVNet

OFFICIAL = {  # spec, FPN channels, FCOS / mask / maskiou convs, tensors, sha256(sorted lines)
    "V_39": ("V-39-eSE", 256, 4, 293, "fafea7de3f7147527bda5bcbdcc7a95fe89d86b38cca3be8ae84efacb0352195"),
    "lite_V_19": ("V-19-eSE", 128, 2, 165, "88444b10c42012861c4a76772bc00232b2d8d34cd98936d3f13a9505cbff9ea3"),
}


def _assemble(spec: str, ch: int, n: int, num_classes: int = 80) -> nn.Module:
    model = nn.Module()
    model.backbone = D2FPN(VoVNet(spec), in_features=("stage3", "stage4", "stage5"), out_channels=ch, top_levels=2)
    model.proposal_generator = FCOSProposalGenerator(model.backbone.strides, in_channels=ch, num_classes=num_classes,
                                                     num_cls_convs=n, num_box_convs=n, norm="GN", use_scale=True)
    model.roi_heads = CenterMaskRoIHeads(num_classes, in_channels=ch, conv_dims=ch, num_convs=n)
    return model


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_whole_model_keys(name):
    spec, ch, n, tensors, digest = OFFICIAL[name]
    with torch.device("meta"):
        model = _assemble(spec, ch, n)
    lines = []
    for k, v in model.state_dict().items():
        lines.append(f"{k} (" + ", ".join(str(d) for d in v.shape) + ("," if v.dim() == 1 else "") + ")")
    assert len(lines) == tensors
    assert hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest() == digest


def test_lite_forward_boxes_to_masks():
    torch.manual_seed(0)
    model = _assemble("V-19-slim-eSE", 32, 2, num_classes=3).eval()  # narrow stand-in, same wiring
    images = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        feats = model.backbone(images)
        raw = model.proposal_generator(feats)
        dets = fcos_detect(raw, pre_nms_thresh=0.0, post_nms_topk=50)  # CenterMask: 50 boxes to the mask head
        boxes = [d["boxes"].clamp(min=0) for d in dets]
        probs, scores = model.roi_heads.predict(feats[:3], boxes, [d["classes"] for d in dets],
                                                [d["scores"] for d in dets], [(128, 160)])
    assert [f.shape[-2:] for f in feats] == [(16, 20), (8, 10), (4, 5), (2, 3), (1, 2)]
    assert 0 < probs[0].shape[0] <= 50 and probs[0].shape[1:] == (28, 28)
    assert torch.isfinite(probs[0]).all() and torch.isfinite(scores[0]).all()
    masks = paste_masks(probs[0], boxes[0], (128, 160))
    assert masks.shape == (probs[0].shape[0], 128, 160) and masks.dtype == torch.bool
