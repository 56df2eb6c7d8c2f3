"""The YOLACT family (YOLACT and YOLACT++): everything segcore and the annotator know about it,
in one :class:`segcore.modeling.registry.Family` registered when this package is imported.

- input: square, every image resized to S x S as the official ``FastBaseTransform`` does (float
  image, ``F.interpolate`` bilinear; :mod:`.preprocess`);
- optimiser: official SGD lr ``1e-3`` at batch 8, weight decay 5e-4 (``data/config.py``
  ``yolact_base_config``; lr scaled linearly to the batch, as ``train.py`` scales it);
- loss / post-processing: :func:`.loss.yolact_loss`, :func:`.postprocess.yolact_postprocess`;
- official weights: the six dbolya/yolact checkpoints (README of dbolya/yolact, Hugging Face
  mirrors ``https://huggingface.co/dbolya/<repo>/resolve/main/<file>``); only
  ``yolact_resnet50_54_800000.pth`` has a published size and sha256 (openvinotoolkit/open_model_zoo
  ``models/public/yolact-resnet50-fpn-pytorch/model.yml``);
- COCO results: as the official ``eval.py`` writes them (:func:`.postprocess.yolact_coco_results`:
  class score with the box, mask score with the mask, boxes truncated, zero-area boxes dropped);
- ImageNet backbones: torchvision ResNets already in the torch hub cache (training never downloads
  them; ``annotator download-weights resnet18-imagenet`` / ``resnet50-`` / ``resnet101-imagenet``
  fetches torchvision's ``IMAGENET1K_V1`` files there on request, URL and file name from
  torchvision's weights API, hash checked by torch.hub's file-name convention);
- ONNX: :mod:`.onnx`; no box-conditioned mask head (masks come from per-prior coefficients).
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models import ResNet18_Weights, ResNet50_Weights, ResNet101_Weights

from ..registry import Family, ImagenetBackbone, LatencyTarget, Licence, OfficialWeights, OnnxSupport, register_family

__all__ = ["YOLACT_FAMILY"]

_HF = "https://huggingface.co/dbolya/{repo}/resolve/main/{file}"
_README = "dbolya/yolact README (Hugging Face mirrors)"


def _weights(stem: str, repo: str, arch: str, sha256: str | None = None, size: int | None = None,
             source: str = _README) -> OfficialWeights:
    filename = f"{stem}.pth"
    return OfficialWeights(name=stem, url=_HF.format(repo=repo, file=filename), filename=filename, arch=arch,
                           sha256=sha256, size=size, source=source)


_COCO = (
    _weights("yolact_resnet50_54_800000", "yolact-resnet50", "yolact_r50_550",
             sha256="c12bb7a7e0343281db7f1407b376970bb52651f121d0b60bc4a49207acb6d6d7", size=127_300_392,
             source="dbolya/yolact README; size and sha256 from openvinotoolkit/open_model_zoo "
                    "models/public/yolact-resnet50-fpn-pytorch/model.yml"),
    _weights("yolact_darknet53_54_800000", "yolact-darknet53", "yolact_darknet53_550"),
    _weights("yolact_base_54_800000", "yolact-base", "yolact_r101_550"),
    _weights("yolact_im700_54_800000", "yolact-im700", "yolact_r101_700"),
    _weights("yolact_plus_resnet50_54_800000", "yolact-plus-resnet50", "yolact_plus_r50_550"),
    _weights("yolact_plus_base_54_800000", "yolact-plus-base", "yolact_plus_r101_550"),
)


def _imagenet(weights_enum, arch: str) -> OfficialWeights:
    """torchvision's ``IMAGENET1K_V1`` ResNet weights as a download entry: URL and file name from
    torchvision's weights API (``ResNet50_Weights.IMAGENET1K_V1.url``; the file name is the URL's
    last part, as ``torch.hub.load_state_dict_from_url`` names it), stored in the torch hub
    checkpoints folder and checked by the sha256 prefix in the file name (torch.hub's convention)."""
    weights = weights_enum.IMAGENET1K_V1
    filename = Path(urllib.parse.urlsplit(weights.url).path).name
    depth = filename.split("-", 1)[0]
    return OfficialWeights(name=f"{depth}-imagenet", url=weights.url, filename=filename, arch=arch,
                           source=f"torchvision.models.{weights_enum.__name__}.IMAGENET1K_V1 (torchvision "
                                  f"{torchvision.__version__}); sha256 prefix in the file name",
                           kind="imagenet", store="torch_hub")


#: COCO checkpoints, then the torchvision ImageNet ResNets (``arch``: the architecture of that depth
#: they are listed for; ``_find_resnet`` gives them to every architecture of the depth).
_OFFICIAL = _COCO + (
    _imagenet(ResNet18_Weights, "yolact_tiny"),
    _imagenet(ResNet50_Weights, "yolact_r50_550"),
    _imagenet(ResNet101_Weights, "yolact_r101_550"),
)

#: torchvision ResNet depth of an architecture's backbone, by the name part that says it.
_RESNET_DEPTH = (("r101", "resnet101"), ("r50", "resnet50"), ("tiny", "resnet18"))


def _find_resnet(arch: str) -> Path | None:
    """A torchvision ``resnetNN-*.pth`` for ``arch`` in ``torch.hub.get_dir()/checkpoints``, or
    None (DarkNet, or nothing on disk); never downloads."""
    depth = next((d for key, d in _RESNET_DEPTH if key in arch), None)
    if depth is None:
        return None
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(folder.glob(f"{depth}-*.pth")) if folder.is_dir() else []
    return found[0] if found else None


def _load_resnet(model: nn.Module, path: Path) -> list[str]:
    from ..backbones import load_torchvision_resnet_weights

    load_torchvision_resnet_weights(model.backbone, path)  # ValueError when it does not fit
    return [f"loaded the torchvision ImageNet ResNet {path} into the backbone (rest random init)"]


def _loss(model: nn.Module):
    from .loss import yolact_loss

    return yolact_loss


def _postprocess(model: nn.Module):
    from .postprocess import yolact_postprocess

    return yolact_postprocess


def _resize_image(image, info):
    from .preprocess import yolact_test_resize

    return yolact_test_resize(image, info.input_size)


def _coco_results(prediction, image_id: int) -> list[dict]:
    from .postprocess import yolact_coco_results

    return yolact_coco_results(prediction, image_id)


def _import_weights(state_dict: dict, arch: str, *, source):
    from .importer import import_yolact

    return import_yolact(state_dict, arch, source=source)


def _onnx_export(model, out_path, **options):
    from .onnx import export_yolact_onnx

    return export_yolact_onnx(model, out_path, **options)


def _onnx_runner(path, **options):
    from .onnx import OnnxYolact

    return OnnxYolact(path, **options)


def _set_max_detections(model: nn.Module, n: int) -> None:
    """Keep ``n`` detections: the final cap and the per-class candidates before Fast NMS."""
    model.max_detections = int(n)
    model.top_k = max(int(model.top_k), int(n))


def _describe(arch: str) -> str:
    if "tiny" in arch:
        return "YOLACT, small ResNet-18-style: fast on a CPU, one mask per detection from shared prototypes"
    plus = "YOLACT++ (deformable convs, mask re-scoring)" if "plus" in arch else "YOLACT"
    backbone = "ResNet-101" if "r101" in arch else "DarkNet-53" if "darknet" in arch else "ResNet-50"
    size = "700" if "700" in arch else "550"
    return f"{plus}, {backbone}-FPN at {size} px: real time on a GPU, photos of everyday objects (COCO)"


def _latency_target(arch: str) -> LatencyTarget | None:
    """Issue 17's CPU targets (default precision of the machine, Mask R-CNN at the same input)."""
    if arch == "yolact_r50_550":
        return LatencyTarget("<=", 0.20, "<= 0.20", "YOLACT R-50 <= 0.20 of Mask R-CNN latency")
    if arch == "yolact_plus_r50_550":
        return LatencyTarget("<=", 0.35, "<= 0.35", "YOLACT++ R-50 <= 0.35 of Mask R-CNN latency")
    return None


YOLACT_FAMILY = register_family(Family(
    name="yolact",
    make_loss=_loss,
    make_postprocess=_postprocess,
    default_optim=lambda batch_size: (1e-3 * batch_size / 8, 5e-4),
    licence=Licence("YOLACT / YOLACT++ (yolact_*, yolact_plus_*)",
                    "Bolya et al., ICCV 2019; YOLACT++: arXiv:1912.06218", "dbolya/yolact", "MIT License",
                    "LICENSE @ 902073d"),
    tiny_arch="yolact_tiny",
    resize_image=_resize_image,
    coco_results=_coco_results,
    import_weights=_import_weights,
    imagenet_backbone=ImagenetBackbone(find=_find_resnet, load=_load_resnet),
    onnx=OnnxSupport(export=_onnx_export, runner=_onnx_runner),
    official_weights=_OFFICIAL,
    bench_archs=("yolact_r50_550", "yolact_plus_r50_550"),
    latency_target=_latency_target,
    gpu_fps_targets={"yolact_r101_550": 150.0},
    set_max_detections=_set_max_detections,
    describe=_describe,
))
