"""Result structures shared by all segcore models.

Symbol legend: N instances, H x W original image height/width in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Instances"]


@dataclass
class Instances:
    """One image's predicted instances (torch tensors, all on the same device).

    Fields:
        image_size: ``(H, W)`` of the original image, pixels.
        pred_boxes: ``[N, 4]`` float32, XYXY absolute pixels of the original image.
        scores: ``[N]`` float32, the instance's score: the mask score where the family predicts
            one (YOLACT++: class score x predicted mask IoU; CenterMask: box score x predicted
            mask IoU; both can leave ``[0, 1]`` slightly, the IoU heads being unbounded as
            officially), else the class / box score, in ``[0, 1]``.
        pred_classes: ``[N]`` int64, contiguous class index ``0..K-1``.
        pred_masks: ``[N, H, W]`` bool, original image resolution.
        box_scores: ``[N]`` float32 or None: the detector's class / box score where it differs
            from ``scores`` (YOLACT++, CenterMask), None where it is ``scores``. The official
            COCO evaluators give it to the box and ``scores`` to the mask.

    Indexing (``inst[idx]``) applies ``idx`` to every per-instance field, so
    ``inst[inst.scores > 0.5]``, ``inst[:10]`` and ``inst[torch.tensor([2, 0])]`` work; an
    integer index keeps the instance dimension (``len(inst[0]) == 1``).

    Raises:
        ValueError: at construction when the fields disagree on N or the mask size differs
            from ``image_size``.
    """

    image_size: tuple[int, int]
    pred_boxes: Tensor
    scores: Tensor
    pred_classes: Tensor
    pred_masks: Tensor
    box_scores: Tensor | None = None

    def __post_init__(self) -> None:
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        n = self.pred_boxes.shape[0]
        lengths = {
            "pred_boxes": n,
            "scores": self.scores.shape[0],
            "pred_classes": self.pred_classes.shape[0],
            "pred_masks": self.pred_masks.shape[0],
        }
        if self.box_scores is not None:
            lengths["box_scores"] = self.box_scores.shape[0]
        if len(set(lengths.values())) != 1:
            raise ValueError(f"Instances: fields have different lengths {lengths}")
        if self.pred_boxes.dim() != 2 or self.pred_boxes.shape[1] != 4:
            raise ValueError(f"Instances.pred_boxes must be [N, 4], got {tuple(self.pred_boxes.shape)}")
        if self.pred_masks.dim() != 3 or tuple(self.pred_masks.shape[1:]) != self.image_size:
            raise ValueError(
                f"Instances.pred_masks must be [N, {self.image_size[0]}, {self.image_size[1]}], "
                f"got {tuple(self.pred_masks.shape)}"
            )

    def __len__(self) -> int:
        return int(self.pred_boxes.shape[0])

    def __getitem__(self, idx) -> "Instances":
        if isinstance(idx, int):
            n = len(self)
            if not -n <= idx < n:
                raise IndexError(f"Instances index {idx} out of range for {n} instances")
            idx = slice(idx % n, idx % n + 1)
        return Instances(
            image_size=self.image_size,
            pred_boxes=self.pred_boxes[idx],
            scores=self.scores[idx],
            pred_classes=self.pred_classes[idx],
            pred_masks=self.pred_masks[idx],
            box_scores=None if self.box_scores is None else self.box_scores[idx],
        )

    def to(self, device: torch.device | str) -> "Instances":
        """Return a copy with every tensor moved to ``device``."""
        return Instances(
            image_size=self.image_size,
            pred_boxes=self.pred_boxes.to(device),
            scores=self.scores.to(device),
            pred_classes=self.pred_classes.to(device),
            pred_masks=self.pred_masks.to(device),
            box_scores=None if self.box_scores is None else self.box_scores.to(device),
        )

    @staticmethod
    def empty(image_size: tuple[int, int], device: torch.device | str = "cpu") -> "Instances":
        """Zero instances for an image of ``image_size = (H, W)``."""
        h, w = int(image_size[0]), int(image_size[1])
        return Instances(
            image_size=(h, w),
            pred_boxes=torch.zeros((0, 4), dtype=torch.float32, device=device),
            scores=torch.zeros((0,), dtype=torch.float32, device=device),
            pred_classes=torch.zeros((0,), dtype=torch.int64, device=device),
            pred_masks=torch.zeros((0, h, w), dtype=torch.bool, device=device),
        )
