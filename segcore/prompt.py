"""Box prompts: the mask of an object inside a box a user drew, from a model's mask head.

Symbols: N boxes, H x W original image, K classes of the model.

Supported families (a family without a box-conditioned mask head raises
:class:`PromptNotSupported`, so callers fall back to e.g. OpenCV GrabCut):

* **BlendMask** (Chen et al., CVPR 2020, Sec. 3 "blender"; AdelaiDet
  ``adet/modeling/blendmask/blender.py``): the bottom module's bases are RoIAligned in the box
  and blended with the top layer's attentions at the FCOS location the box is assigned to
  (:mod:`segcore.modeling.blendmask.box_prompt` documents the rule). The mask is class-agnostic;
  there is no mask-quality score (``scores`` is None).
* **CenterMask** (Lee and Park, CVPR 2020, Sec. 2.3-2.4; centermask2
  ``centermask/modeling/centermask/mask_head.py``, ``maskiou_head.py``, ``proposal_utils``): the box
  goes through the Eq. 2 level assignment, RoIAlign 14 x 14 and SAG-Mask; the mask is the
  channel of the requested category, else of the best FCOS detection overlapping the box
  (IoU > 0.5), else the channel with the largest mean probability
  (:mod:`segcore.modeling.centermask.box_prompt`); ``scores`` = the MaskIoU head's predicted IoU.
* **YOLACT / YOLACT++**: not supported. YOLACT's masks are per-anchor coefficients combining
  the prototypes; there is no head that takes a box, so a "prompt" would only crop some
  anchor's mask.

The image goes through the same resize / padding as :meth:`segcore.predictor.Predictor.predict`
and the model's raw outputs (backbone, FPN, heads, BlendMask bases) are cached for the last
image, so several boxes on one image, in one call or in several, cost one backbone pass.
Calls are serialised by a lock (the app runs them on a thread pool).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from segcore.predictor import AUTOCAST_DTYPES, check_image  # the same image check and autocast as the predictor

__all__ = ["BoxPrompter", "BoxPrediction", "PromptNotSupported", "supports_box_prompt"]


def supports_box_prompt(arch: str) -> bool:
    """Whether the registered architecture ``arch`` has a box-conditioned mask head (its family's
    :attr:`~segcore.modeling.registry.Family.box_prompt`); False for unknown names."""
    from segcore.modeling.registry import family_of_arch

    try:
        return family_of_arch(str(arch)).box_prompt is not None
    except ValueError:
        return False


class PromptNotSupported(ValueError):
    """The model has no box-conditioned mask head (YOLACT families): use another tool (GrabCut)."""


@dataclass
class BoxPrediction:
    """Masks for the prompted boxes of one image, row i for box i.

    Attributes:
        boxes: ``[N, 4]`` float32 XYXY absolute pixels of the original image: the input boxes
            with their corners sorted and clipped to the image (what the masks were computed in).
        masks: ``[N, H, W]`` bool at the original image resolution, False outside the box; all
            False for a box that is empty after clipping.
        scores: ``[N]`` float32 in [0, 1] (CenterMask: the MaskIoU head's predicted IoU of the
            mask; 0 for an empty box), or None where the model has no mask score (BlendMask, a
            CenterMask without MaskIoU head).
        category_ids: ``[N]`` int64 COCO category ids (the checkpoint's): CenterMask, the class
            whose mask channel was used; BlendMask (class-agnostic masks), the most probable FCOS
            class at the location used; -1 for an empty box.
    """

    boxes: np.ndarray
    masks: np.ndarray
    scores: np.ndarray | None
    category_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def _check_boxes(boxes) -> np.ndarray:
    try:
        arr = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"boxes: expected an [N, 4] array of XYXY pixels: {exc}") from None
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes: expected shape [N, 4] (XYXY absolute pixels), got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError("boxes: contains NaN or infinite values")
    return arr


class BoxPrompter:
    """Box-prompted masks from a BlendMask or CenterMask :class:`~segcore.predictor.Predictor`.

    Args:
        predictor: the predictor whose model (device, precision, input resize) is used; it can
            still be used for :meth:`~segcore.predictor.Predictor.predict`.

    Raises:
        PromptNotSupported: the model's family has no box-conditioned mask head (YOLACT, or an
            unknown family); the message says to fall back to GrabCut.

    Example::

        prompter = BoxPrompter(Predictor.from_checkpoint("model_final.pth"))
        masks = prompter.predict_masks(rgb, [[10, 20, 200, 180]])     # [1, H, W] bool
    """

    def __init__(self, predictor):
        from segcore.modeling.registry import FAMILIES, family_of

        model = predictor.model
        family = family_of(model)
        if family.box_prompt is None:
            with_prompts = ", ".join(n for n, f in FAMILIES.items() if f.box_prompt is not None)
            raise PromptNotSupported(
                f"{model.info.arch}: box prompts need a box-conditioned mask head ({with_prompts}); {family.name} "
                "models have none (their masks come from per-anchor coefficients): use GrabCut instead")
        self.predictor = predictor
        self.family = family.name
        self._support = family.box_prompt
        self.categories = list(predictor.categories)
        self._class_of = {int(c["id"]): i for i, c in enumerate(self.categories)}
        self._ids = np.asarray([int(c["id"]) for c in self.categories], dtype=np.int64)
        self._lock = threading.Lock()
        self._cache_key: tuple | None = None
        self._cache: dict | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | torch.device = "auto",
                        precision: str | None = None) -> "BoxPrompter":
        """:meth:`segcore.predictor.Predictor.from_checkpoint` wrapped in a prompter (``precision``
        None = the predictor's default for the device).

        Raises:
            segcore.checkpoints.CheckpointError: not a valid segcore checkpoint.
            PromptNotSupported: a YOLACT checkpoint.
        """
        from segcore.predictor import Predictor

        return cls(Predictor.from_checkpoint(path, device=device, precision=precision))

    # ------------------------------------------------------------------ public API
    def predict_masks(self, image: np.ndarray, boxes, category_ids: Sequence[int | None] | None = None) -> np.ndarray:
        """``[N, H, W]`` bool masks of ``boxes`` (see :meth:`predict`)."""
        return self.predict(image, boxes, category_ids).masks

    def predict(self, image: np.ndarray, boxes, category_ids: Sequence[int | None] | None = None, *,
                locations: Sequence[int] | None = None) -> BoxPrediction:
        """Masks (and scores where the model has them) for user boxes on one image.

        Args:
            image: ``[H, W, 3]`` uint8 **RGB**.
            boxes: ``[N, 4]`` XYXY absolute pixels of ``image`` (any float / int array-like;
                corners in either order are sorted, parts outside the image are clipped; N may
                be 0, and any empty array means no boxes).
            category_ids: optional, one COCO category id (of the checkpoint's categories) or
                None per box: the class whose mask CenterMask returns (None: chosen, see the
                module docstring). BlendMask masks are class-agnostic: validated, not used.
            locations: BlendMask only, advanced (tests, debugging): flat FCOS location indices
                (into the raw outputs' L locations) whose attentions to use instead of the
                assignment rule, e.g. a detection's own location.

        Returns:
            :class:`BoxPrediction` (numpy, original image pixels).

        Raises:
            ValueError: ``image`` is not ``[H, W, 3]`` uint8, ``boxes`` not ``[N, 4]`` finite,
                ``category_ids`` of another length or with an id the model does not know,
                ``locations`` given for CenterMask or of the wrong length (each message names
                the argument).
        """
        check_image(image)
        arr = _check_boxes(boxes)
        h, w = image.shape[:2]
        n = arr.shape[0]
        classes = self._classes(category_ids, n)
        if locations is not None and not self._support.takes_locations:
            raise ValueError(f"locations: {self.family} prompts take no FCOS locations")
        clipped = np.empty((n, 4), dtype=np.float32)
        clipped[:, 0] = np.clip(np.minimum(arr[:, 0], arr[:, 2]), 0, w)
        clipped[:, 1] = np.clip(np.minimum(arr[:, 1], arr[:, 3]), 0, h)
        clipped[:, 2] = np.clip(np.maximum(arr[:, 0], arr[:, 2]), 0, w)
        clipped[:, 3] = np.clip(np.maximum(arr[:, 1], arr[:, 3]), 0, h)
        valid = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        masks = np.zeros((n, h, w), dtype=bool)
        ids = np.full((n,), -1, dtype=np.int64)
        scores = np.zeros((n,), dtype=np.float32)
        has_scores = self._support.has_scores(self.predictor.model)
        if locations is not None and len(locations) != n:
            raise ValueError(f"locations: expected {n} indices (one per box), got {len(locations)}")
        if valid.any():
            idx = np.nonzero(valid)[0]
            with self._lock, torch.inference_mode():
                cache = self._outputs(image)
                res = self._run(cache, clipped[idx], classes[idx],
                                None if locations is None else [int(locations[i]) for i in idx])
            masks[idx] = res["masks"].cpu().numpy()
            ids[idx] = self._ids[res["classes"].cpu().numpy()]
            if has_scores:
                scores[idx] = res["scores"].cpu().numpy()
        return BoxPrediction(boxes=clipped, masks=masks, scores=scores if has_scores else None, category_ids=ids)

    def clear_cache(self) -> None:
        """Drop the cached outputs of the last image."""
        with self._lock:
            self._cache_key, self._cache = None, None

    # ------------------------------------------------------------------ internals
    def _classes(self, category_ids, n: int) -> np.ndarray:
        out = np.full((n,), -1, dtype=np.int64)
        if category_ids is None:
            return out
        ids = list(category_ids)
        if len(ids) != n:
            raise ValueError(f"category_ids: expected {n} entries (one per box), got {len(ids)}")
        for i, cid in enumerate(ids):
            if cid is None:
                continue
            if int(cid) not in self._class_of:
                known = ", ".join(str(k) for k in self._class_of)
                raise ValueError(f"category_ids: {int(cid)} is not one of the model's categories ({known})")
            out[i] = self._class_of[int(cid)]
        return out

    def _autocast_dtype(self):
        return AUTOCAST_DTYPES.get(self.predictor.precision)

    def _autocast(self):
        """The predictor's autocast for the network (none for fp32)."""
        dtype = self._autocast_dtype()
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.predictor.device.type, dtype=dtype)

    def _outputs(self, image: np.ndarray) -> dict:
        """The model's raw outputs for ``image`` (cached for the last image)."""
        img = np.ascontiguousarray(image)
        key = (img.shape, hashlib.blake2b(memoryview(img).cast("B"), digest_size=16).digest())
        if self._cache_key == key and self._cache is not None:
            return self._cache
        p = self.predictor
        h, w = img.shape[:2]
        x, sizes = p.preprocess_batch([img])   # the predictor's (official) resize and padding
        input_hw = sizes[0]
        with self._autocast():
            outputs = p.model(x, image_sizes=[tuple(int(v) for v in input_hw)])
        outputs = {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in outputs.items()}
        if "features" in outputs:
            outputs["features"] = [f.float() for f in outputs["features"]]
        self._cache_key, self._cache = None, None   # never keep a half-built entry
        self._cache = {"outputs": outputs, "image_hw": (h, w), "input_hw": tuple(int(v) for v in input_hw),
                       "detections": None}
        self._cache_key = key
        return self._cache

    def _run(self, cache: dict, boxes: np.ndarray, classes: np.ndarray, locations) -> dict:
        device = self.predictor.device
        b = torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)).to(device)
        # the family's prompt runs its mask head under the network's autocast, as the forward does
        return self._support.run(self.predictor.model, cache["outputs"], b, cache["image_hw"], cache["input_hw"],
                                 classes=torch.from_numpy(classes).to(device), cache=cache,
                                 autocast_dtype=self._autocast_dtype(),
                                 **({"locations": locations} if locations is not None else {}))
