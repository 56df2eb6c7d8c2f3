"""YOLACT (Bolya et al., ICCV 2019): model, priors, loss, post-processing, registered builders."""

from . import builders as _builders  # noqa: F401  (registers every YOLACT / YOLACT++ architecture)
from .family import YOLACT_FAMILY
from .builders import (
    plus_pred_scales,
    yolact_darknet53_550,
    yolact_plus_r50_550,
    yolact_plus_r101_550,
    yolact_plus_tiny,
    yolact_r50_550,
    yolact_r101_550,
    yolact_r101_700,
    yolact_tiny,
)
from .loss import YolactMatch, match_priors, yolact_loss, yolact_match
from .model import PIXEL_MEAN_RGB, PIXEL_STD_RGB, FastMaskIoUNet, PredictionHead, Yolact, make_protonet
from .postprocess import yolact_detect, yolact_postprocess
from .priors import PriorCache, make_priors, scaled_pred_scales

__all__ = [
    "Yolact",
    "PredictionHead",
    "FastMaskIoUNet",
    "plus_pred_scales",
    "make_protonet",
    "PIXEL_MEAN_RGB",
    "PIXEL_STD_RGB",
    "YOLACT_FAMILY",
    "yolact_loss",
    "yolact_match",
    "YolactMatch",
    "match_priors",
    "yolact_postprocess",
    "yolact_detect",
    "make_priors",
    "PriorCache",
    "scaled_pred_scales",
    "yolact_r50_550",
    "yolact_r101_550",
    "yolact_tiny",
    "yolact_darknet53_550",
    "yolact_r101_700",
    "yolact_plus_r50_550",
    "yolact_plus_r101_550",
    "yolact_plus_tiny",
]
