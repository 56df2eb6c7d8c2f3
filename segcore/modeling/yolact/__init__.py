"""YOLACT (Bolya et al., ICCV 2019): model, priors, loss, post-processing, registered builders."""

from . import builders as _builders  # noqa: F401  (registers yolact_r50_550, yolact_r101_550, yolact_tiny)
from .builders import yolact_r50_550, yolact_r101_550, yolact_tiny
from .loss import match_priors, yolact_loss
from .model import PIXEL_MEAN_RGB, PIXEL_STD_RGB, PredictionHead, Yolact, make_protonet
from .postprocess import yolact_postprocess
from .priors import PriorCache, make_priors, scaled_pred_scales

__all__ = [
    "Yolact",
    "PredictionHead",
    "make_protonet",
    "PIXEL_MEAN_RGB",
    "PIXEL_STD_RGB",
    "yolact_loss",
    "match_priors",
    "yolact_postprocess",
    "make_priors",
    "PriorCache",
    "scaled_pred_scales",
    "yolact_r50_550",
    "yolact_r101_550",
    "yolact_tiny",
]
