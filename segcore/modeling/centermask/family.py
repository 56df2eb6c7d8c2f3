"""The CenterMask family: everything segcore and the annotator know about it, in one
:class:`segcore.modeling.registry.Family` registered when this package is imported.

- input: detectron2 short side S, long side <= max_size, padded to 32 (``ModelInfo``), resized as
  detectron2's test-time ``ResizeShortestEdge`` does (Pillow bilinear,
  :func:`segcore.modeling.fcos.d2_input.d2_test_resize`);
- optimiser: SGD lr ``0.01`` at batch 16, weight decay 1e-4 (centermask2
  ``Base-CenterMask-VoVNet.yaml`` with detectron2's defaults; lr scaled linearly to the batch);
- loss / post-processing: :func:`.loss.centermask_loss`, :func:`.postprocess.centermask_postprocess`
  (the RoI heads run in the model's forward);
- COCO results: centermask2's ``COCOEvaluator`` (the default writer,
  :func:`segcore.evaluation.coco.d2_coco_results`: box score with the box, mask score with the
  mask, float XYWH boxes, empty masks kept);
- official weights: centermask2 files through :mod:`.importer` (maskrcnn-benchmark files are
  recognised and refused there); the COCO checkpoints of the VoVNet models can be downloaded on
  request from the Dropbox links of the centermask2 README (``annotator download-weights
  centermask2-V-39-eSE-FPN-ms-3x``, ...; no sha256 published: trust on first use);
- ImageNet backbones: detectron2's MSRA ``R-50.pkl`` for ``centermask_r50`` (never downloaded);
- box prompts: :mod:`.box_prompt` (SAG-Mask + MaskIoU on the user's box).
"""

from __future__ import annotations

import functools
from pathlib import Path

from torch import nn

from ...importers.backbone import load_backbone_file, msra_resnet_file
from ..registry import (BoxPromptSupport, Family, ImagenetBackbone, LatencyTarget, Licence, OfficialWeights,
                        register_family)

__all__ = ["CENTERMASK_FAMILY"]

_DROPBOX = "https://dl.dropbox.com/s/{id}/{file}"
_README = "youngwanLEE/centermask2 README (model zoo, Dropbox links); no sha256 published"


def _weights(dropbox_id: str, stem: str, arch: str) -> OfficialWeights:
    filename = f"{stem}.pth"
    return OfficialWeights(name=stem, url=_DROPBOX.format(id=dropbox_id, file=filename), filename=filename,
                           arch=arch, source=_README)


#: centermask2's COCO checkpoints of the registered architectures (``centermask_r50``'s file has no
#: known link; the slim, MobileNetV2 and DCN models have no registered architecture).
_OFFICIAL = (
    _weights("tczecsdxt10uai5", "centermask2-V-39-eSE-FPN-ms-3x", "centermask_v39"),
    _weights("lw8nxajv1tim8gr", "centermask2-V-57-eSE-FPN-ms-3x", "centermask_v57"),
    _weights("c6n79x83xkdowqc", "centermask2-V-99-eSE-FPN-ms-3x", "centermask_v99"),
    _weights("dret2ap7djty7mp", "centermask2-lite-V-19-eSE-FPN-ms-4x", "centermask_lite_v19"),
    _weights("uwc0ypa1jvco2bi", "centermask2-lite-V-39-eSE-FPN-ms-4x", "centermask_lite_v39"),
)


def _loss(model: nn.Module):
    from .loss import centermask_loss

    return functools.partial(centermask_loss, sizes_of_interest=model.sizes_of_interest,
                             center_sample_radius=model.center_sample_radius)


def _postprocess(model: nn.Module):
    from .postprocess import centermask_postprocess

    return centermask_postprocess


def _resize_image(image, info):
    from ..fcos.d2_input import d2_test_resize

    return d2_test_resize(image, info.input_size, info.max_size)


def _import_weights(state_dict: dict, arch: str, *, source):
    from .importer import import_centermask

    return import_centermask(state_dict, arch, source=source)


def _find_backbone(arch: str) -> Path | None:
    return msra_resnet_file(50) if arch == "centermask_r50" else None  # VoVNets: no MSRA file


def _box_prompt(model: nn.Module, outputs: dict, boxes, image_hw, input_hw, *, classes=None, cache=None,
                autocast_dtype=None, locations=None) -> dict:
    from .box_prompt import centermask_box_prompt

    if locations is not None:
        raise ValueError("locations: only BlendMask prompts take FCOS locations")
    cache = {} if cache is None else cache
    res = centermask_box_prompt(outputs, model.roi_heads, boxes, image_hw, input_hw, classes=classes,
                                detections=cache.get("detections"), max_detections=model.max_detections,
                                autocast_dtype=autocast_dtype)
    cache["detections"] = res["detections"]
    return {"masks": res["masks"], "classes": res["classes"], "scores": res["scores"]}


def _set_max_detections(model: nn.Module, n: int) -> None:
    """Keep ``n`` detections: the final cap and the per-level FCOS candidates before NMS."""
    from ..fcos.inference import candidates_per_level

    model.max_detections = int(n)
    model.pre_nms_topk = max(int(model.pre_nms_topk), candidates_per_level(n))


def _describe(arch: str) -> str:
    if arch == "centermask_tiny":
        return ("CenterMask, small VoVNet: fast on a CPU, a 28 x 28 mask per box (SAG-Mask): small and dense "
                "objects (cells, parts)")
    if "lite" in arch:
        return f"CenterMask-Lite, VoVNetV2-{arch[-2:]}: fast on a GPU, good masks for objects of any size"
    backbone = "ResNet-50" if arch.endswith("r50") else f"VoVNetV2-{arch[-2:]}"
    return f"CenterMask, {backbone}-FPN at 800 px: most accurate masks on a GPU, slow on a CPU"


def _latency_target(arch: str) -> LatencyTarget | None:
    if arch == "centermask_lite_v19":
        return LatencyTarget("<=", 0.15, "<= 0.15", "CenterMask-Lite V-19 <= 0.15 of Mask R-CNN latency")
    return None


CENTERMASK_FAMILY = register_family(Family(
    name="centermask",
    make_loss=_loss,
    make_postprocess=_postprocess,
    default_optim=lambda batch_size: (0.01 * batch_size / 16, 1e-4),
    licence=Licence("CenterMask (centermask_*)", "Lee and Park, CVPR 2020", "youngwanLEE/centermask2",
                    "Creative Commons Attribution-NonCommercial 4.0 (CC BY-NC 4.0)", "LICENSE @ 6adabd6"),
    tiny_arch="centermask_tiny",
    resize_image=_resize_image,
    import_weights=_import_weights,
    imagenet_backbone=ImagenetBackbone(find=_find_backbone, load=load_backbone_file),
    box_prompt=BoxPromptSupport(run=_box_prompt, has_scores=lambda model: model.roi_heads.maskiou_head is not None),
    official_weights=_OFFICIAL,
    latency_target=_latency_target,
    set_max_detections=_set_max_detections,
    describe=_describe,
))
