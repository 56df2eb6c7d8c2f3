"""The BlendMask family: everything segcore and the annotator know about it, in one
:class:`segcore.modeling.registry.Family` registered when this package is imported.

- input: detectron2 short side S, long side <= max_size, padded to 32 (``ModelInfo``), resized as
  detectron2's test-time ``ResizeShortestEdge`` does (Pillow bilinear,
  :func:`segcore.modeling.fcos.d2_input.d2_test_resize`);
- optimiser: SGD lr ``0.01`` at batch 16, weight decay 1e-4 (AdelaiDet ``Base-BlendMask.yaml``
  with detectron2's defaults; lr scaled linearly to the batch);
- loss / post-processing: :func:`.loss.blendmask_loss`, :func:`.postprocess.blendmask_postprocess`
  with the model's FCOS settings bound;
- COCO results: detectron2's ``COCOEvaluator`` (the default writer,
  :func:`segcore.evaluation.coco.d2_coco_results`: float XYWH boxes, empty masks kept);
- official weights: AdelaiDet files through :mod:`.importer`; the COCO instance-segmentation
  checkpoints of the registered configs can be downloaded on request from Hugging Face
  ``ZjuCv/AdelaiDet`` (``annotator download-weights blendmask_R_50_3x``, ...; no sha256 published:
  trust on first use);
- ImageNet backbones: detectron2's MSRA ``R-50.pkl`` / ``R-101.pkl`` on disk (never downloaded);
- box prompts: :mod:`.box_prompt` (bases blended with the attentions at the box's FCOS location).
"""

from __future__ import annotations

import functools
from pathlib import Path

from torch import nn

from ...importers.backbone import load_backbone_file, msra_resnet_file
from ..registry import (BoxPromptSupport, Family, ImagenetBackbone, LatencyTarget, Licence, OfficialWeights,
                        register_family)

__all__ = ["BLENDMASK_FAMILY"]

_HF = "https://huggingface.co/ZjuCv/AdelaiDet/resolve/main/{file}"
_README = ("AdelaiDet configs/BlendMask/README.md (CloudStor links dead since Jan 2024) -> Hugging Face "
           "ZjuCv/AdelaiDet; no sha256 published")
_SAME_NAME = ("; caveat: AdelaiDet's panoptic table links the same file name for a different model (git diff "
              "5f752e0), and which of the two Hugging Face holds is unverified: a file with keys the "
              "importer does not know is refused")


def _weights(config: str, arch: str, note: str = "") -> OfficialWeights:
    """AdelaiDet's ``configs/BlendMask/<config>`` COCO checkpoint ``<config>.pth`` for ``arch``
    (the builder that reproduces that config), saved as ``blendmask_<config>.pth``: the upstream
    names (``R_50_3x.pth``) say nothing about the model."""
    return OfficialWeights(name=f"blendmask_{config}", url=_HF.format(file=f"{config}.pth"),
                           filename=f"blendmask_{config}.pth", arch=arch, source=_README + note)


#: COCO instance-segmentation checkpoints of the configs the builders reproduce (``builders.py``
#: table), the longer schedule first (training takes the first one downloaded for its architecture).
#: Not listed: ``R_101_dcni3_5x``, ``550_R_50_dcni3_5x`` (deformable backbones), ``DLA_34_syncbn_4x``
#: (DLA-34): no registered architecture.
_OFFICIAL = (
    _weights("R_50_3x", "blendmask_r50", _SAME_NAME),
    _weights("R_50_1x", "blendmask_r50"),
    _weights("R_101_3x", "blendmask_r101", _SAME_NAME),
    _weights("550_R_50_3x", "blendmask_550_r50"),
    _weights("RT_R_50_4x_bn-head_syncbn_shtw", "blendmask_rt_r50"),
    _weights("RT_R_50_4x_syncbn_shtw", "blendmask_rt_r50",
             "; GroupNorm head: imports as blendmask_rt_r50(head_norm='GN'); as a training start only the "
             "tensors that fit the per-level BN head of blendmask_rt_r50 are used"),
)


def _loss(model: nn.Module):
    from .loss import blendmask_loss

    return functools.partial(blendmask_loss, sizes_of_interest=model.sizes_of_interest,
                             center_sample_radius=model.center_sample_radius,
                             bottom_resolution=model.bottom_resolution)


def _postprocess(model: nn.Module):
    from ..fcos.inference import candidates_per_level
    from .postprocess import blendmask_postprocess

    cap = model.info.max_detections or 100   # AdelaiDet POST_NMS_TOPK_TEST 100
    return functools.partial(blendmask_postprocess, thresh_with_ctr=model.thresh_with_ctr,
                             bottom_resolution=model.bottom_resolution, max_detections=cap,
                             pre_nms_topk=candidates_per_level(cap))


def _set_max_detections(model: nn.Module, n: int) -> None:
    """Nothing to set on the model: the post-processing reads ``model.info.max_detections``
    (``build_model`` records it) for its cap and the per-level candidates before NMS."""


def _describe(arch: str) -> str:
    if arch == "blendmask_tiny":
        return "BlendMask, small: fast on a CPU, masks blended from shared bases: objects of any size"
    if "rt" in arch:
        return "BlendMask-RT, ResNet-50 at 512 px: real time on a GPU, everyday objects"
    return "BlendMask, ResNet-FPN at 550-800 px: accurate masks on a GPU, slow on a CPU"


def _resize_image(image, info):
    from ..fcos.d2_input import d2_test_resize

    return d2_test_resize(image, info.input_size, info.max_size)


def _import_weights(state_dict: dict, arch: str, *, source):
    from .importer import import_blendmask

    return import_blendmask(state_dict, arch, source=source)


def _find_backbone(arch: str) -> Path | None:
    depth = 101 if "r101" in arch else 50 if "r50" in arch else None
    return None if depth is None else msra_resnet_file(depth)


def _box_prompt(model: nn.Module, outputs: dict, boxes, image_hw, input_hw, *, classes=None, cache=None,
                autocast_dtype=None, locations=None) -> dict:
    from .box_prompt import blendmask_box_prompt

    res = blendmask_box_prompt(outputs, boxes, image_hw, input_hw, sizes_of_interest=model.sizes_of_interest,
                               locations=locations, bottom_resolution=model.bottom_resolution)
    return {"masks": res["masks"], "classes": res["classes"], "scores": None}


BLENDMASK_FAMILY = register_family(Family(
    name="blendmask",
    make_loss=_loss,
    make_postprocess=_postprocess,
    default_optim=lambda batch_size: (0.01 * batch_size / 16, 1e-4),
    licence=Licence("BlendMask (blendmask_*)", "Chen et al., CVPR 2020", "aim-uofa/AdelaiDet",
                    "2-clause BSD for non-commercial purposes only (commercial use: licence from the authors)",
                    "LICENSE and README 'License' @ 3672122"),
    tiny_arch="blendmask_tiny",
    resize_image=_resize_image,
    import_weights=_import_weights,
    imagenet_backbone=ImagenetBackbone(find=_find_backbone, load=load_backbone_file),
    box_prompt=BoxPromptSupport(run=_box_prompt, takes_locations=True),
    official_weights=_OFFICIAL,
    set_max_detections=_set_max_detections,
    describe=_describe,
    latency_target=lambda arch: (LatencyTarget("<=", 0.15, "<= 0.15", "BlendMask-RT <= 0.15 of Mask R-CNN latency")
                                 if arch == "blendmask_rt_r50" else
                                 LatencyTarget("<=", 0.8, "<= 0.8 (paper)",
                                               "BlendMask <= 0.8 of Mask R-CNN latency (paper figure)")),
))
