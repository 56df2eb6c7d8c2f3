"""FCOS (Tian et al., ICCV 2019), as AdelaiDet implements it: head, targets, losses, inference.

Shared by BlendMask (and later CenterMask); nothing here is specific to one of them.
"""

from .fpn import D2FPN, c2_xavier_fill
from .generator import FCOSProposalGenerator, flatten_levels
from .head import FCOSHead, PerLevelNorm, Scale
from .inference import fcos_detect
from .loss import FCOSAssignment, fcos_assign, fcos_losses, ltrb_to_boxes
from .targets import INF, centerness_targets, compute_locations, fcos_targets, size_ranges

__all__ = ["D2FPN", "c2_xavier_fill", "FCOSProposalGenerator", "flatten_levels", "FCOSHead", "PerLevelNorm",
           "Scale", "fcos_detect", "FCOSAssignment", "fcos_assign", "fcos_losses", "ltrb_to_boxes", "INF",
           "centerness_targets", "compute_locations", "fcos_targets", "size_ranges"]
