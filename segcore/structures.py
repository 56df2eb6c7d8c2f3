"""Result structures shared by all segcore models.

Symbol legend: N instances, H x W original image height/width in pixels, h_i x w_i the pixel
window of instance i.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Instances", "BoxMasks"]


class BoxMasks:
    """N bool instance masks of an ``H x W`` image, each stored inside its pixel window only.

    Memory follows the windows (``sum h_i x w_i`` bytes), not ``N x H x W``: a 100 MP photo with
    100 detections holds its masks in tens of MB instead of 10 GB. Pixels outside a window are
    False. The post-processing of every family fills the windows (``segcore.ops.masks``), the
    predictor encodes each to RLE without a full-image array (:meth:`to_rle`).

    Args:
        image_size: ``(H, W)``.
        windows: ``[N, 4]`` int64 ``(x0, y0, x1, y1)``, end-exclusive pixel windows inside the
            image (``0 <= x0 <= x1 <= W``, ``0 <= y0 <= y1 <= H``).
        crops: N bool tensors, crop i ``[y1_i - y0_i, x1_i - x0_i]``.

    Tensor-like where the results are used: ``len``, ``shape`` = ``(N, H, W)``, ``dim()`` = 3,
    indexing with an int, slice, bool mask or index tensor (:class:`Instances` indexes its
    fields alike), :meth:`to`, :meth:`full`.

    Raises:
        ValueError: the windows and crops disagree in number or size, or a window leaves the image.
    """

    def __init__(self, image_size: tuple[int, int], windows: Tensor, crops: list[Tensor]):
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.windows = windows.to(torch.int64).reshape(-1, 4)
        self.crops = list(crops)
        if len(self.crops) != self.windows.shape[0]:
            raise ValueError(f"BoxMasks: {self.windows.shape[0]} windows for {len(self.crops)} crops")
        h, w = self.image_size
        for (x0, y0, x1, y1), crop in zip(self.windows.tolist(), self.crops):
            if not (0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h):
                raise ValueError(f"BoxMasks: window {(x0, y0, x1, y1)} leaves the {w} x {h} image")
            if tuple(crop.shape) != (y1 - y0, x1 - x0):
                raise ValueError(f"BoxMasks: crop {tuple(crop.shape)} for window {(x0, y0, x1, y1)}")

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.crops), *self.image_size))

    def dim(self) -> int:
        return 3

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, idx) -> "BoxMasks":
        if isinstance(idx, int):
            idx = slice(idx % len(self), idx % len(self) + 1) if len(self) else slice(0, 0)
        if isinstance(idx, slice):
            picks = list(range(len(self)))[idx]
        else:
            t = torch.as_tensor(idx)
            picks = (t.nonzero().flatten() if t.dtype == torch.bool else t.flatten()).tolist()
        return BoxMasks(self.image_size, self.windows[picks], [self.crops[i] for i in picks])

    def to(self, device: torch.device | str) -> "BoxMasks":
        return BoxMasks(self.image_size, self.windows.to(device), [c.to(device) for c in self.crops])

    def full(self) -> Tensor:
        """``[N, H, W]`` bool, the masks at full image size (N x H x W bytes)."""
        device = self.crops[0].device if self.crops else self.windows.device
        out = torch.zeros(self.shape, dtype=torch.bool, device=device)
        for i, ((x0, y0, x1, y1), crop) in enumerate(zip(self.windows.tolist(), self.crops)):
            out[i, y0:y1, x0:x1] = crop
        return out

    def to_rle(self) -> list[dict]:
        """N compressed RLEs ``{"size": [H, W], "counts": str}`` (pycocotools encoding, equal to
        encoding :meth:`full`), each built from a strip of its window's columns
        (:func:`segcore.ops.rle.box_mask_to_rle`): memory ``H x w_i`` per instance."""
        from segcore.ops.rle import box_mask_to_rle

        h, w = self.image_size
        return [box_mask_to_rle(crop.cpu().numpy(), x0, y0, h, w)
                for (x0, y0, _, _), crop in zip(self.windows.tolist(), self.crops)]


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
        pred_masks: ``[N, H, W]`` bool, original image resolution: a tensor, or a
            :class:`BoxMasks` (the same masks stored inside their windows) where the
            post-processing was asked for box-local masks.
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
    pred_masks: Tensor | BoxMasks
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
