"""Inference for the app: numpy RGB images in, numpy instances out (one image or a batch).

Symbols: B images in a batch, N instances, H x W original image, S network input side (YOLACT:
S x S; short-side families: the short side), H' x W' padded network input, K classes.

CPU path: the model in ``torch.channels_last`` memory format (faster oneDNN convolutions),
``torch.inference_mode``. Default precision (:func:`default_precision`): ``"bf16"`` on a CPU with
native bf16 (AVX512-BF16 or AMX, :func:`segcore.device.native_bf16`), ``"fp32"`` on other CPUs,
where bf16 is emulated and slower. ``"bf16"`` runs the network under
``torch.autocast("cpu", dtype=torch.bfloat16)``: the backbone, FPN, FCOS towers and YOLACT's
protonet body (most of the time) compute in bf16, while every family keeps its precision-sensitive
parts in float32 inside ``forward`` (:func:`segcore.ops.precision.fp32_call`): YOLACT's class /
box / coefficient head, last protonet conv, decoding and ``proto @ coef`` mask assembly and
YOLACT++ re-scoring net; the FCOS class / box / centerness convs; BlendMask's bases and
attentions; CenterMask's RoIAlign, SAG-Mask and MaskIoU heads. Their outputs are read as numbers
(scores, box sides, mask pixels near the 0.5 threshold): with the whole network in bf16, a
``yolact_tiny`` trained on nuclei-he gave matched-mask IoU against fp32 of mean 0.984 / 5th
percentile 0.955, with these parts in fp32 0.990 / 0.976 (README "Precision";
``tests/segcore/test_bf16_trained.py`` asserts mean >= 0.98, 5th percentile >= 0.97, scores within
0.02). The rest of the difference comes from the bf16 backbone. ``precision="fp32"``
(``--precision fp32`` on the command line) turns it off; :attr:`Predictor.precision_reason` says
why a precision was chosen.

CUDA path: default precision ``"fp16"`` (``torch.autocast("cuda", dtype=torch.float16)``; ``"fp32"``
and ``"bf16"`` can be asked for), channels_last, the resized images (uint8 for the short-side
families, float32 S x S for YOLACT) copied host-to-device from pinned memory (``pin_memory()`` +
``non_blocking=True``), masks upsampled / pasted and thresholded on the GPU so only bool masks
come back, in one device-to-host copy per batch.

Every trainable module runs in the model's ``forward`` (the family contract of
:mod:`segcore.modeling.registry`: CenterMask's RoI heads and YOLACT++'s re-scoring net included),
so the whole network runs under the autocast, apart from the fp32 parts named above; the raw
outputs are cast back to float32 before the post-processing (which has no parameters), and the
families decode, suppress and assemble masks in float32.

The predictor never changes the model it is given: it works on its own copy (moved to the
device, eval mode, channels_last). :meth:`Predictor.from_checkpoint` builds the model itself and
uses it without a copy.

Resizing is each family's official test-time resize (``Family.resize_image``), on the host, on
every device, so that imported official weights give the official outputs end to end and the
network input is bit-identical on the CPU and CUDA: YOLACT as dbolya/yolact ``FastBaseTransform``
(the float image resized with ``F.interpolate`` bilinear, ``align_corners=False``;
``segcore.modeling.yolact.preprocess``), BlendMask / CenterMask as detectron2's test-time
``ResizeShortestEdge`` (``get_output_shape`` rounding, Pillow bilinear on the uint8 image, which
antialiases when shrinking; ``segcore.modeling.fcos.d2_input``). Training (``segcore.data``)
resizes with OpenCV ``INTER_LINEAR`` on uint8; the two differ by up to a few grey levels on a
shrunk photo. The square families upload the resized float32 S x S image, the short-side
families the resized uint8 image (smaller than the original for photos larger than S).

Batches (:meth:`Predictor.predict_batch`): YOLACT resizes every image to S x S and stacks them.
The short-side families (BlendMask, CenterMask) resize each image on its own (short side S, long
side <= ``max_size``), pad all of them at the bottom / right with the pixel mean to one canvas
whose sides are the largest sides rounded up to a multiple of 32 (detectron2 ``ImageList``,
:func:`segcore.data.transforms.pad_images`) and give the post-processing each image's resized
size. An image's result in a batch can therefore differ slightly from its single-image result when
the batch canvas is larger than its own padded size: convolutions near the right / bottom border
then see computed features of the mean-padded area instead of zero padding, and FCOS has extra
locations there (detectron2 has the same property). Images with the same padded size (for example
4:3 photos of any size) give :meth:`Predictor.predict`'s results: identical masks, boxes and scores
within float noise (oneDNN picks batch-size-dependent convolution kernels; ~1e-5 on logits).
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import nn

from segcore.device import native_bf16, resolve_device
from segcore.modeling.fold_bn import fold_batchnorm
from segcore.structures import BoxMasks

__all__ = ["Prediction", "Predictor", "PRECISIONS", "AUTOCAST_DTYPES", "default_precision", "resolve_precision",
           "precision_reason", "check_image", "resize_input", "small_object_factor"]

#: Bytes of masks per pycocotools encode call in :meth:`Prediction.to_rle` (each call copies its
#: masks into a Fortran-ordered uint8 array): 64 MiB, at least one mask, instead of N x H x W.
RLE_CHUNK_BYTES = 64 << 20

#: Precisions the predictor accepts: ``"fp32"`` (no autocast), ``"bf16"`` / ``"fp16"`` (autocast of
#: the network to bfloat16 / float16; outputs cast back to float32 before post-processing).
PRECISIONS = ("fp32", "bf16", "fp16")

#: Precision -> ``torch.autocast`` dtype (``"fp32"`` runs without autocast).
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def default_precision(device: str | torch.device) -> str:
    """The precision used when none is given: ``"fp16"`` on a CUDA device, ``"bf16"`` on a CPU
    with native bf16 (:func:`segcore.device.native_bf16`: AVX512-BF16 or AMX; about 1.5-2x faster
    there, with the heads kept in fp32, see the module docstring), ``"fp32"`` elsewhere.

    Args:
        device: a ``torch.device`` or a device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``); it is
            only parsed, CUDA is not probed.
    """
    kind = torch.device(device).type
    if kind == "cuda":
        return "fp16"
    return "bf16" if kind == "cpu" and native_bf16() else "fp32"


def precision_reason(precision: str | None, device: str | torch.device) -> str:
    """One line saying which precision a request resolves to and why, for the command line and
    logs, e.g. ``"precision: bf16 (CPU has native bf16; --precision fp32 to override)"``.

    Args:
        precision: as :func:`resolve_precision` takes it (None / ``"auto"`` or one of :data:`PRECISIONS`).
        device: the device the model runs on.
    """
    resolved = resolve_precision(precision, device)
    kind = torch.device(device).type
    if precision is not None and precision != "auto":
        why = "asked for"
    elif kind == "cuda":
        why = "CUDA device"
    elif resolved == "bf16":
        why = "CPU has native bf16"
    else:
        why = "CPU without native bf16" if kind == "cpu" else f"{kind} device"
    other = "fp32" if resolved != "fp32" else ("bf16" if kind == "cpu" else "fp16")
    return f"precision: {resolved} ({why}; --precision {other} to override)"


def resolve_precision(precision: str | None, device: str | torch.device) -> str:
    """Turn a precision request into one of :data:`PRECISIONS`.

    Args:
        precision: ``None`` or ``"auto"`` = :func:`default_precision` of ``device``; otherwise one
            of :data:`PRECISIONS`.
        device: the device the model runs on (only parsed, CUDA is not probed).

    Raises:
        ValueError: ``precision`` is not None, ``"auto"`` or one of :data:`PRECISIONS`.
    """
    if precision is None or precision == "auto":
        return default_precision(device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS} or 'auto', got {precision!r}")
    return precision


class Prediction:
    """One image's predictions as numpy arrays.

    Attributes:
        boxes: ``[N, 4]`` float32 XYXY absolute pixels of the original image.
        scores: ``[N]`` float32, sorted descending: the mask score where the family predicts
            one (YOLACT++, CenterMask: class / box score x predicted mask IoU, which can leave
            [0, 1] slightly as officially), else the class / box score in [0, 1].
        category_ids: ``[N]`` int64 COCO category ids (from the checkpoint's categories).
        masks: ``[N, H, W]`` bool at the original image resolution. Given box-local masks
            (``box_masks``, the predictor's CPU path) it is built on first access (N x H x W
            bytes) and kept; :meth:`to_rle` never builds it.
        box_scores: ``[N]`` float32 class / box scores where they differ from ``scores``
            (YOLACT++, CenterMask), else None (``segcore.structures.Instances.box_scores``).
        box_masks: the same masks as :class:`segcore.structures.BoxMasks` (CPU tensors, each
            mask inside its pixel window), or None.

    Raises:
        ValueError: neither or both of ``masks`` and ``box_masks`` are given.
    """

    def __init__(self, boxes: np.ndarray, scores: np.ndarray, category_ids: np.ndarray,
                 masks: np.ndarray | None = None, box_scores: np.ndarray | None = None, *,
                 box_masks=None):
        if (masks is None) == (box_masks is None):
            raise ValueError("Prediction needs exactly one of masks [N, H, W] and box_masks")
        self.boxes = boxes
        self.scores = scores
        self.category_ids = category_ids
        self.box_scores = box_scores
        self.box_masks = box_masks
        self._masks = masks

    @property
    def masks(self) -> np.ndarray:
        if self._masks is None:
            self._masks = self.box_masks.full().numpy()
        return self._masks

    @masks.setter
    def masks(self, value: np.ndarray) -> None:
        self._masks, self.box_masks = value, None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __repr__(self) -> str:
        return f"Prediction({len(self)} instances, category_ids={self.category_ids.tolist()})"

    def to_rle(self) -> list[dict]:
        """Masks as pycocotools compressed RLE.

        Returns:
            N dicts ``{"size": [H, W], "counts": str}`` (counts decoded from bytes to ASCII str,
            JSON-ready; ``pycocotools.mask.decode`` accepts them back). Box-local masks are
            encoded one at a time from a strip of their window's columns
            (:meth:`segcore.structures.BoxMasks.to_rle`: memory ``H x w_i``); full masks in chunks
            of :data:`RLE_CHUNK_BYTES` (each pycocotools call copies its masks to Fortran order).
        """
        if len(self) == 0:
            return []
        if self.box_masks is not None:
            return self.box_masks.to_rle()
        masks = np.ascontiguousarray(self.masks, dtype=bool).view(np.uint8)  # no copy for the usual bool array
        per = max(1, RLE_CHUNK_BYTES // max(1, masks.shape[1] * masks.shape[2]))
        rles = []
        for i in range(0, len(masks), per):  # a chunk per Fortran copy: its memory, not N x H x W
            rles += mask_utils.encode(np.asfortranarray(masks[i:i + per].transpose(1, 2, 0)))
        out = []
        for rle in rles:
            counts = rle["counts"]
            out.append({"size": [int(rle["size"][0]), int(rle["size"][1])],
                        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts})
        return out

    def to_coco_results(self, image_id: int) -> list[dict]:
        """COCO results entries of this image as detectron2's ``COCOEvaluator`` writes them
        (:func:`segcore.evaluation.coco.d2_coco_results`: ``bbox`` XYWH, ``score`` the box score,
        ``mask_score`` the mask score where they differ, ``segmentation`` RLE). The official
        writer of a model's family is ``Family.coco_results`` (``segcore.evaluation``
        ``coco_results_writer``)."""
        from segcore.evaluation.coco import d2_coco_results

        return d2_coco_results(self, image_id)


def check_image(image) -> None:
    """Raise ``ValueError`` (naming the problem) unless ``image`` is a ``[H, W, 3]`` uint8 numpy array."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array [H, W, 3] uint8 RGB, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape [H, W, 3] (RGB), got {list(image.shape)}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 RGB 0..255, got dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image is empty: shape {list(image.shape)}")


def resize_input(image: np.ndarray, info) -> torch.Tensor:
    """Resize one image for a model on the host, as :meth:`Predictor.preprocess_batch` does.

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
        info: the model's ``ModelInfo`` (family, input policy, S, ``max_size``, ``input_scale``).

    Returns:
        ``[3, h, w]`` RGB CPU tensor (uint8, or float32 for YOLACT's float resize):

        * ``input_scale`` > 0 (a recipe of a model trained here): ``(h, w)`` =
          :func:`segcore.data.transforms.network_input_hw`, ``cv2.resize`` ``INTER_LINEAR`` as in
          training (no official path exists for it);
        * otherwise the family's official test-time resize (``Family.resize_image``: YOLACT
          ``FastBaseTransform``, detectron2 ``ResizeShortestEdge``).

    Picklable through :meth:`Predictor.input_transform` (it carries ``info``, not the model).
    """
    if info.input_scale > 0:
        import cv2

        from segcore.data.transforms import network_input_hw

        h, w = network_input_hw(info, int(image.shape[0]), int(image.shape[1]))
        return torch.from_numpy(cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)).permute(2, 0, 1)
    from segcore.modeling.registry import family_of_arch

    return family_of_arch(info.arch).resize_image(image, info)


class Predictor:
    """Runs a segcore model on RGB images, one at a time or in batches.

    Args:
        model: a model from ``build_model`` / ``load_checkpoint`` (``model.info``). Not changed:
            the predictor runs a copy, moved to ``device``, in eval mode and, with
            ``channels_last``, in that memory format (attribute ``model``).
        categories: ``[{"id", "name"}, ...]`` of length K; index = class index.
        device: ``"cpu"``, ``"cuda[:N]"``, ``"auto"`` or a ``torch.device``.
        precision: ``None`` / ``"auto"`` (default) = ``"fp16"`` on CUDA, ``"bf16"`` on a CPU
            with native bf16, else ``"fp32"`` (:func:`resolve_precision`); or ``"fp32"``,
            ``"bf16"``, ``"fp16"`` (autocast of the backbone / FPN, heads in fp32: see the module
            docstring).
        channels_last: run in ``torch.channels_last``; None = on (CPU and CUDA).
        fold_bn: fold each inference BatchNorm into the convolution before it
            (:func:`segcore.modeling.fold_bn.fold_batchnorm`; outputs equal up to float rounding,
            one pass over every feature map less); default on.
        box_local: keep each predicted mask inside its box window (``Prediction.box_masks``,
            memory following the boxes; ``Prediction.masks`` is built on first access); None = on
            the CPU, off on CUDA (there the masks are assembled whole on the device).

    Attributes:
        device (``torch.device``), precision (str, resolved), precision_reason (str: one line
            naming the precision and why, :func:`precision_reason`), channels_last (bool),
        box_local (bool), folded_bn (int, BatchNorm layers folded), adapt_scale (bool: the
            second pass at a larger scale for images of small objects, :meth:`predict_preprocessed`),
        input_size (S), max_size (long-side cap of the short-side families, 0 for YOLACT),
        categories.

    Raises:
        ValueError: unknown precision or device, categories / num_classes mismatch, or a model
            without ``ModelInfo`` / of an unregistered family.
    """

    def __init__(self, model: nn.Module, categories: list[dict], *, device: str | torch.device = "cpu",
                 precision: str | None = None, channels_last: bool | None = None, box_local: bool | None = None,
                 fold_bn: bool = True, adapt_scale: bool = True, _own_model: bool = False):
        from segcore.modeling.registry import family_of

        if precision is not None and precision != "auto" and precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS} or 'auto', got {precision!r}")
        family = family_of(model)  # ValueError without ModelInfo / family
        info = model.info
        self.categories = [{"id": int(c["id"]), "name": str(c["name"])} for c in categories]
        if len(self.categories) != info.num_classes:
            raise ValueError(f"{len(self.categories)} categories for a model with num_classes={info.num_classes}")
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.precision_reason = precision_reason(precision, self.device)
        self.channels_last = True if channels_last is None else bool(channels_last)
        self.box_local = self.device.type == "cpu" if box_local is None else bool(box_local)
        self.adapt_scale = bool(adapt_scale)
        self.info = info
        self.input_size = info.input_size
        self.model = (model if _own_model else copy.deepcopy(model)).to(self.device).eval()
        self.folded_bn = fold_batchnorm(self.model) if fold_bn else 0
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._category_ids = np.asarray([c["id"] for c in self.categories], dtype=np.int64)
        self._postprocess = family.make_postprocess(self.model)
        self._short_side = info.input_policy == "short_side"
        self.max_size = info.max_size
        self._last_input_hw: tuple[int, int] | None = None
        # one host-to-device copy per batch (a stacked / canvas uint8 array) instead of one per
        # image; on for CUDA (the tests also switch it on for the CPU: same values either way)
        self._single_upload = self.device.type == "cuda"

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | torch.device = "auto",
                        precision: str | None = None) -> "Predictor":
        """Load a segcore checkpoint (``segcore.checkpoints.load_checkpoint``) into a predictor.

        ``device="auto"`` = CUDA when available, else CPU; ``precision=None`` = fp16 on CUDA,
        bf16 on a CPU with native bf16, else fp32 (:func:`default_precision`).

        Raises:
            segcore.checkpoints.CheckpointError: the file is not a valid segcore checkpoint.
            ValueError: unknown device or precision.
        """
        from segcore.checkpoints import load_checkpoint

        dev = resolve_device(device)
        model, info = load_checkpoint(path, device=dev)
        return cls(model, info["categories"], device=dev, precision=precision, _own_model=True)

    # ------------------------------------------------------------------------------ input

    def _upload(self, t: torch.Tensor) -> torch.Tensor:
        """Host tensor -> tensor on the device (CUDA: through pinned memory, asynchronously; the
        caching host allocator keeps the pinned block alive until the copy has run)."""
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def preprocess_batch(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Resize and batch images for the network: :meth:`batch_inputs` of :meth:`resize_input`
        of each image.

        Args:
            images: B arrays ``[H_i, W_i, 3]`` uint8 RGB (not checked here, see :meth:`predict_batch`).

        Returns:
            ``(x, input_hw)``: ``x`` ``[B, 3, H', W']`` float32 RGB 0..255 on the device
            (channels_last when the predictor is); ``input_hw`` the B ``(h, w)`` of each resized
            image inside ``x``. Each image is resized on the host by :func:`resize_input`:

            * square (YOLACT): the float image resized to S x S with ``F.interpolate``
              (bilinear, ``align_corners=False``), aspect ratio not kept, as the official
              ``FastBaseTransform``; ``H' = W' = S`` and every ``input_hw`` is ``(S, S)``.
            * short side (BlendMask, CenterMask): detectron2 ``ResizeShortestEdge`` (short side
              S, long side at most ``max_size``, ``get_output_shape`` rounding, Pillow bilinear on
              the uint8 image), then padded at the bottom / right with the pixel mean to the
              largest size rounded up to a multiple of 32
              (:func:`segcore.data.transforms.pad_images`; normalised, the padding is 0 as in
              detectron2 ``ImageList``).
            * a data-driven input scale s (``ModelInfo.input_scale`` > 0, a model trained here
              with a recipe, short-side families): each image at s x its size
              (:func:`segcore.data.transforms.network_input_hw`) with ``cv2.resize`` INTER_LINEAR,
              as in training (no official path exists for it), padded the same way.
        """
        return self.batch_inputs([self.resize_input(image) for image in images])

    def resize_input(self, image: np.ndarray) -> torch.Tensor:
        """One image resized for the network on the host (:func:`resize_input` with this model's
        ``ModelInfo``): ``[3, h, w]`` RGB CPU tensor (uint8, float32 for YOLACT). Thread- and process-safe; a
        ``DataLoader`` worker runs it through :meth:`input_transform`."""
        return resize_input(image, self.info)

    def input_transform(self) -> Callable[[np.ndarray], torch.Tensor]:
        """:meth:`resize_input` as a picklable function of the image alone (it carries the
        ``ModelInfo``, not the model), for ``torch.utils.data.DataLoader`` workers; their outputs
        go to :meth:`batch_inputs`."""
        return functools.partial(resize_input, info=self.info)

    def batch_inputs(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Batch resized images (:meth:`resize_input`) into the network input on the device.

        Args:
            inputs: B host tensors ``[3, h_i, w_i]`` (uint8 or float RGB 0..255).

        Returns:
            ``(x, input_hw)`` as :meth:`preprocess_batch`: square inputs stacked, short-side ones
            padded with the pixel mean to the largest size rounded up to ``size_divisibility``.
            One (pinned, non-blocking) host-to-device copy per batch on CUDA.
        """
        sizes = [(int(r.shape[1]), int(r.shape[2])) for r in inputs]
        single_upload = self._single_upload
        if self._short_side or self.info.input_scale > 0:
            from segcore.data.transforms import pad_images

            if single_upload:  # one (pinned) upload of a canvas, the per-image views padded there
                canvas = torch.zeros((len(inputs), 3, max(h for h, _ in sizes), max(w for _, w in sizes)),
                                     dtype=inputs[0].dtype)
                for i, (r, (h, w)) in enumerate(zip(inputs, sizes)):
                    canvas[i, :, :h, :w] = r
                dev = self._upload(canvas)
                parts = [dev[i, :, :h, :w].float() for i, (h, w) in enumerate(sizes)]
            else:
                parts = [r.to(self.device).float() for r in inputs]
            x = pad_images(parts, self.info.size_divisibility)
        elif len(inputs) == 1 and not single_upload:
            x = inputs[0].to(self.device)[None].float()
        else:
            x = self._upload(torch.stack(list(inputs))).float()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, sizes

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """One image: ``[H, W, 3]`` uint8 RGB -> ``[1, 3, H', W']`` float32 RGB 0..255 on the device
        (:meth:`preprocess_batch` of ``[image]``; the resized size is kept for the post-processing)."""
        x, sizes = self.preprocess_batch([image])
        self._last_input_hw = sizes[0]
        return x

    def _autocast(self):
        dtype = AUTOCAST_DTYPES.get(self.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    # ------------------------------------------------------------------------------ inference

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
        return self.predict_batch([image], score_threshold=score_threshold)[0]

    def predict_batch(self, images: Sequence[np.ndarray], *, score_threshold: float = 0.05) -> list[Prediction]:
        """Predict the instances of several images with one forward pass.

        Args:
            images: B arrays ``[H_i, W_i, 3]`` uint8 RGB, sizes may differ (B = 0 gives ``[]``).
            score_threshold: minimum class score kept (0..1), as in :meth:`predict`.

        Returns:
            B :class:`Prediction` in input order; ``masks`` of image i are ``[N_i, H_i, W_i]`` bool.
            For YOLACT, and for short-side images of the same padded size, each equals
            :meth:`predict` of that image (up to floating-point differences of batched
            convolution kernels); see the module docstring for the padding of mixed sizes.

        Raises:
            ValueError: an image is not a ``[H, W, 3]`` uint8 numpy array (the message gives its
                index when B > 1).

        Memory: on the CPU each mask is kept inside its box window
        (:class:`segcore.structures.BoxMasks`, ``Prediction.box_masks``), so a batch needs about
        the boxes' pixels in bytes, not ``sum N_i x H_i x W_i`` (``Prediction.masks`` builds the
        full array on first access; ``Prediction.to_rle`` never does). On CUDA the bool masks
        ``[N_i, H_i, W_i]`` are assembled on the device before one copy to the host.
        """
        images = list(images)
        for i, image in enumerate(images):
            try:
                check_image(image)
            except ValueError as exc:
                if len(images) == 1:
                    raise
                raise ValueError(f"images[{i}]: {exc}") from None
        if not images:
            return []
        sizes = [(int(im.shape[0]), int(im.shape[1])) for im in images]
        with torch.inference_mode():
            x, input_hw = self.preprocess_batch(images)
            if len(images) == 1:
                self._last_input_hw = input_hw[0]
            return self.predict_preprocessed(x, sizes, input_hw, score_threshold=score_threshold)

    def predict_preprocessed(self, x: torch.Tensor, image_sizes: Sequence[tuple[int, int]],
                             input_sizes: Sequence[tuple[int, int]], *,
                             score_threshold: float = 0.05) -> list[Prediction]:
        """Network + post-processing of a batch that :meth:`preprocess_batch` (or the caller) made.

        Args:
            x: ``[B, 3, H', W']`` float32 RGB 0..255 on the device.
            image_sizes: B original ``(H, W)``: boxes and masks are returned there.
            input_sizes: B ``(h, w)`` of each resized image inside ``x`` (short-side families;
                square families fill the S x S input).
            score_threshold: as in :meth:`predict`.

        Returns:
            B :class:`Prediction`.

        Small objects, second pass (``adapt_scale``, models with a data-driven input scale s
        only): when the median ``sqrt(box area)`` of an image's confident detections (score >=
        :data:`ADAPT_SCORE`, at least :data:`ADAPT_MIN_COUNT` of them) is at least 10 % below
        :data:`ADAPT_TARGET_PX` (40 px) at the input, that image is predicted again with its
        input enlarged (bilinear, from ``x``) so that this median reaches 40 px, by at most
        :data:`ADAPT_MAX_FACTOR` (:func:`small_object_factor`) and to a long side of at most
        :data:`segcore.data.transforms.MAX_SCALED_SIDE`; the second pass's predictions
        replace the first's. The recipe scales images so that the median labelled object is 32 px,
        but a tile of crowded nuclei can hold objects half the size of the others. Images whose
        objects are large enough take one pass.
        """
        preds = self._predict_once(x, image_sizes, input_sizes, score_threshold=score_threshold)
        if not (self.adapt_scale and self.info.input_scale > 0):
            return preds
        from segcore.data.transforms import MAX_SCALED_SIDE, pad_images

        for i, (pred, (h_in, w_in), (h, w)) in enumerate(zip(preds, input_sizes, image_sizes)):
            factor = small_object_factor(pred, int(h_in) / max(int(h), 1))
            if factor is None:
                continue
            factor = min(factor, MAX_SCALED_SIDE / max(int(h_in), int(w_in)))  # the scaled-input cap
            if factor < ADAPT_MIN_FACTOR:
                continue
            size = (int(round(int(h_in) * factor)), int(round(int(w_in) * factor)))

            with torch.inference_mode():
                part = torch.nn.functional.interpolate(x[i:i + 1, :, :int(h_in), :int(w_in)].float(), size=size,
                                                       mode="bilinear", align_corners=False)[0]
                big = pad_images([part], self.info.size_divisibility)
                if self.channels_last:
                    big = big.contiguous(memory_format=torch.channels_last)
            preds[i] = self._predict_once(big, [(h, w)], [size], score_threshold=score_threshold)[0]
        return preds

    def _predict_once(self, x: torch.Tensor, image_sizes: Sequence[tuple[int, int]],
                      input_sizes: Sequence[tuple[int, int]], *, score_threshold: float) -> list[Prediction]:
        sizes = [(int(h), int(w)) for h, w in image_sizes]
        input_sizes = [(int(h), int(w)) for h, w in input_sizes]
        with torch.inference_mode():
            with self._autocast():
                outputs = self.model(x, image_sizes=input_sizes, score_threshold=float(score_threshold))
            outputs = {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v)
                       for k, v in outputs.items()}
            insts = self._postprocess(outputs, sizes, input_sizes=input_sizes, score_threshold=float(score_threshold),
                                      box_local=self.box_local)
            insts = _to_host(insts, self.device)
        return [self._to_prediction(inst, h, w) for inst, (h, w) in zip(insts, sizes)]

    def _to_prediction(self, inst, h: int, w: int) -> Prediction:
        classes = inst.pred_classes.numpy().astype(np.int64)
        local = isinstance(inst.pred_masks, BoxMasks)
        return Prediction(
            boxes=inst.pred_boxes.numpy().astype(np.float32).reshape(-1, 4),
            scores=inst.scores.numpy().astype(np.float32),
            category_ids=self._category_ids[classes] if len(classes) else np.zeros((0,), dtype=np.int64),
            masks=None if local else inst.pred_masks.numpy().astype(bool, copy=False).reshape(-1, h, w),
            box_scores=None if inst.box_scores is None else inst.box_scores.numpy().astype(np.float32),
            box_masks=inst.pred_masks if local else None,
        )


#: Detections at or above this score measure an image's object size for the second pass.
ADAPT_SCORE = 0.3
#: Fewer confident detections than this: no second pass (too few to measure the size).
ADAPT_MIN_COUNT = 10
#: The second pass brings the median object to this size at the input (px): the recipe's median
#: object (:data:`segcore.data.recipe.MIN_OBJECT_PX`, 32) times the top of training's scale
#: jitter (:class:`segcore.data.crops.CropPolicy`, 1.25), the largest the model saw it.
ADAPT_TARGET_PX = 40.0
#: No second pass for an enlargement below this factor; none above :data:`ADAPT_MAX_FACTOR`.
ADAPT_MIN_FACTOR = 1.1
ADAPT_MAX_FACTOR = 2.0


def small_object_factor(prediction: Prediction, scale: float) -> float | None:
    """The enlargement of the second pass of :meth:`Predictor.predict_preprocessed`, or None.

    Args:
        prediction: the first pass's predictions of one image (original pixels).
        scale: network input pixels per image pixel of that pass.

    Returns:
        ``f = ADAPT_TARGET_PX / m`` clamped to ``<= ADAPT_MAX_FACTOR``, where m is the median
        ``sqrt(box area)`` x ``scale`` of the detections with score >= :data:`ADAPT_SCORE`, when
        there are at least :data:`ADAPT_MIN_COUNT` of them and ``f >= ADAPT_MIN_FACTOR``;
        otherwise None.
    """
    keep = prediction.scores >= ADAPT_SCORE
    if int(keep.sum()) < ADAPT_MIN_COUNT:
        return None
    boxes = prediction.boxes[keep]
    sides = np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))
    median = float(np.median(sides)) * float(scale)
    if median <= 0 or ADAPT_TARGET_PX / median < ADAPT_MIN_FACTOR:
        return None
    return min(ADAPT_MAX_FACTOR, ADAPT_TARGET_PX / median)


def _to_host(insts: list, device: torch.device) -> list:
    """Instances on the device -> on the CPU. CUDA: every field is copied asynchronously (into
    pinned host memory) and the stream synchronised once, instead of one blocking copy per field."""
    if device.type != "cuda":
        return [inst.to("cpu") for inst in insts]
    out = []
    for inst in insts:
        out.append(type(inst)(image_size=inst.image_size,
                              pred_boxes=inst.pred_boxes.to("cpu", non_blocking=True),
                              scores=inst.scores.to("cpu", non_blocking=True),
                              pred_classes=inst.pred_classes.to("cpu", non_blocking=True),
                              pred_masks=inst.pred_masks.to("cpu", non_blocking=True),
                              box_scores=None if inst.box_scores is None else
                              inst.box_scores.to("cpu", non_blocking=True)))
    torch.cuda.current_stream(device).synchronize()
    return out
