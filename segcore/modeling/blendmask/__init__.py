"""BlendMask (Chen et al., CVPR 2020) on FCOS: model, bottom module, blender, loss,
post-processing, registered builders (AdelaiDet ``adet/modeling/blendmask``)."""

from . import builders as _builders  # noqa: F401  (registers the BlendMask architectures)
from .family import BLENDMASK_FAMILY
from .basis import BasisModule
from .blender import blend, merge_bases, pool_bases
from .builders import (blendmask_550_r50, blendmask_r50, blendmask_r101, blendmask_rt_r50, blendmask_tiny,
                       build_blendmask)
from .loss import blendmask_loss, mask_targets
from .model import D2_PIXEL_MEAN_BGR, BlendMask
from .postprocess import blendmask_postprocess

__all__ = ["BLENDMASK_FAMILY", "BasisModule", "blend", "merge_bases", "pool_bases", "blendmask_r50", "blendmask_r101",
           "blendmask_550_r50", "blendmask_rt_r50", "blendmask_tiny", "build_blendmask", "blendmask_loss",
           "mask_targets", "BlendMask", "D2_PIXEL_MEAN_BGR", "blendmask_postprocess"]
