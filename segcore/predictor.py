"""Single-image inference for the app: numpy RGB image in, numpy instances out.

Symbols: N instances, H x W original image, S network input side, K classes.

Speed on CPU: the model runs in ``torch.channels_last`` memory format (faster oneDNN
convolutions) under ``torch.inference_mode``. ``precision="bf16"`` additionally runs the
network under ``torch.autocast(device_type, dtype=torch.bfloat16)``; the raw outputs are cast
back to float32 before post-processing, so NMS / mask assembly are always fp32. bf16 is faster
on CPUs with AVX512-BF16 / AMX and may be slower elsewhere (``segcore.bench`` measures it); the
default is fp32.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import nn

from segcore.device import resolve_device

__all__ = ["Prediction", "Predictor", "PRECISIONS"]

PRECISIONS = ("fp32", "bf16")


@dataclass
class Prediction:
    """One image's predictions as numpy arrays.

    Attributes:
        boxes: ``[N, 4]`` float32 XYXY absolute pixels of the original image.
        scores: ``[N]`` float32 in [0, 1], sorted descending.
        category_ids: ``[N]`` int64 COCO category ids (from the checkpoint's categories).
        masks: ``[N, H, W]`` bool at the original image resolution.
    """

    boxes: np.ndarray
    scores: np.ndarray
    category_ids: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def to_rle(self) -> list[dict]:
        """Masks as pycocotools compressed RLE.

        Returns:
            N dicts ``{"size": [H, W], "counts": str}`` (counts decoded from bytes to ASCII str,
            JSON-ready; ``pycocotools.mask.decode`` accepts them back).
        """
        if len(self) == 0:
            return []
        rles = mask_utils.encode(np.asfortranarray(self.masks.transpose(1, 2, 0).astype(np.uint8)))
        out = []
        for rle in rles:
            counts = rle["counts"]
            out.append({"size": [int(rle["size"][0]), int(rle["size"][1])],
                        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts})
        return out

    def to_coco_results(self, image_id: int) -> list[dict]:
        """COCO results entries ``{"image_id", "category_id", "bbox" [x, y, w, h], "score",
        "segmentation" (RLE, counts str)}`` for this image."""
        rles = self.to_rle()
        results = []
        for i in range(len(self)):
            x1, y1, x2, y2 = (float(v) for v in self.boxes[i])
            results.append({"image_id": int(image_id), "category_id": int(self.category_ids[i]),
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(self.scores[i]),
                            "segmentation": rles[i]})
        return results


def _check_image(image) -> None:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array [H, W, 3] uint8 RGB, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape [H, W, 3] (RGB), got {list(image.shape)}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 RGB 0..255, got dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image is empty: shape {list(image.shape)}")


class Predictor:
    """Runs a segcore model on single RGB images.

    Args:
        model: a model from ``build_model`` / ``load_checkpoint`` (attributes ``arch_name``,
            ``input_size``, ``num_classes``). It is moved to ``device``, put in eval mode and, on
            CPU, converted to channels_last in place: the predictor owns it afterwards.
        categories: ``[{"id", "name"}, ...]`` of length K; index = class index.
        device: ``"cpu"``, ``"cuda[:N]"``, ``"auto"`` or a ``torch.device``.
        precision: ``"fp32"`` (default) or ``"bf16"`` (autocast, see module docstring).
        channels_last: run in ``torch.channels_last``; None = on CPU only.

    Raises:
        ValueError: unknown precision, categories / num_classes mismatch, or an unknown
            architecture family (no post-processing for it).
    """

    def __init__(self, model: nn.Module, categories: list[dict], *, device: str | torch.device = "cpu",
                 precision: str = "fp32", channels_last: bool | None = None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.categories = [{"id": int(c["id"]), "name": str(c["name"])} for c in categories]
        num_classes = int(getattr(model, "num_classes", len(self.categories)))
        if len(self.categories) != num_classes:
            raise ValueError(f"{len(self.categories)} categories for a model with num_classes={num_classes}")
        self.device = resolve_device(device)
        self.precision = precision
        self.channels_last = (self.device.type == "cpu") if channels_last is None else bool(channels_last)
        self.input_size = int(model.input_size)
        self.model = model.to(self.device).eval()
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._category_ids = np.asarray([c["id"] for c in self.categories], dtype=np.int64)
        self._postprocess = _postprocess_for(model)
        self._policy = _input_policy(model)
        self.max_size = int(getattr(model, "max_size", 0) or 0)
        self._last_input_hw: tuple[int, int] | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | torch.device = "auto",
                        precision: str = "fp32") -> "Predictor":
        """Load a segcore checkpoint (``segcore.checkpoints.load_checkpoint``) into a predictor.

        ``device="auto"`` = CUDA when available, else CPU.

        Raises:
            segcore.checkpoints.CheckpointError: the file is not a valid segcore checkpoint.
        """
        from segcore.checkpoints import load_checkpoint

        dev = resolve_device(device)
        model, info = load_checkpoint(path, device=dev)
        return cls(model, info["categories"], device=dev, precision=precision)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """``[H, W, 3]`` uint8 RGB -> ``[1, 3, S, S]`` float32 RGB 0..255 on the device
        (``cv2.resize`` INTER_LINEAR to S x S, aspect ratio not kept, as in training).

        Short-side families (BlendMask): resized so the short side is S and the long side at most
        ``max_size`` (detectron2 ``ResizeShortestEdge``), then padded at the bottom / right with
        the pixel mean to ``[1, 3, H', W']``, multiples of 32; the resized size is kept for the
        post-processing."""
        s = self.input_size
        if self._policy is not None and self._policy.input_policy == "short_side":
            from segcore.data.transforms import pad_images, short_side_size

            nh, nw = short_side_size(image.shape[0], image.shape[1], s, self.max_size or s)
            resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
            self._last_input_hw = (nh, nw)
            x = torch.from_numpy(resized).to(self.device).permute(2, 0, 1).float()
            x = pad_images([x], self._policy.size_divisibility)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return x
        resized = cv2.resize(image, (s, s), interpolation=cv2.INTER_LINEAR)
        x = torch.from_numpy(resized).to(self.device).permute(2, 0, 1).unsqueeze(0).float()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def predict(self, image: np.ndarray, *, score_threshold: float = 0.05) -> Prediction:
        """Predict the instances of one image.

        Args:
            image: ``[H, W, 3]`` uint8 RGB.
            score_threshold: minimum class score kept (0..1).

        Returns:
            :class:`Prediction` (numpy, original image pixels, COCO category ids).

        Raises:
            ValueError: ``image`` is not a ``[H, W, 3]`` uint8 numpy array.
        """
        _check_image(image)
        h, w = image.shape[:2]
        with torch.inference_mode():
            x = self.preprocess(image)
            with self._autocast():
                outputs = self.model(x)
            outputs = {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v)
                       for k, v in outputs.items()}
            if self._policy is not None and self._policy.input_policy == "short_side":
                inst = self._postprocess(outputs, [(h, w)], score_threshold=float(score_threshold),
                                         input_sizes=[self._last_input_hw])[0]
            else:
                inst = self._postprocess(outputs, [(h, w)], score_threshold=float(score_threshold))[0]
            inst = inst.to("cpu")
        classes = inst.pred_classes.numpy().astype(np.int64)
        return Prediction(
            boxes=inst.pred_boxes.numpy().astype(np.float32).reshape(-1, 4),
            scores=inst.scores.numpy().astype(np.float32),
            category_ids=self._category_ids[classes] if len(classes) else np.zeros((0,), dtype=np.int64),
            masks=inst.pred_masks.numpy().astype(bool).reshape(-1, h, w),
        )


def _input_policy(model: nn.Module):
    from segcore.modeling.registry import family_of

    try:
        return family_of(model)
    except ValueError:
        return None


def _postprocess_for(model: nn.Module):
    """The post-processing function of a model's architecture family."""
    arch = str(getattr(model, "arch_name", ""))
    if arch.startswith("yolact"):
        from segcore.modeling.yolact import yolact_postprocess

        return yolact_postprocess
    fam = _input_policy(model)
    if fam is not None:
        return fam.make_postprocess(model)
    raise ValueError(f"no post-processing known for architecture {arch!r}")
