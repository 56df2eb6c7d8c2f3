"""ONNX export of YOLACT / YOLACT++ inference, and a small onnxruntime runner (the YOLACT
family's ``Family.onnx``; ``segcore.export.onnx.export_onnx`` dispatches here).

Symbol legend: S network input side (``model.info.input_size``), P priors, K classes (no background),
k prototypes, D = min(top_k, P) candidates per class, N = min(max_detections, K * D) output rows,
Hp x Wp prototype map (80 x 80 at S = 320, 138 x 138 at S = 550), H x W original image.

**What the graph contains** (everything after the resize, so a consumer needs no PyTorch):
the network (normalisation with the model's ``pixel_mean`` / ``pixel_std`` included), box
decoding against the priors (baked in as a constant), softmax, the score pre-filter, per-class
Fast NMS written as fixed-size matrix ops (per-class ``TopK`` of D priors, IoU matrix, upper
triangle, column max), the global top-N, mask assembly ``sigmoid(proto @ coef^T)`` cropped to
the box (+1 prototype pixel) at **prototype resolution**, and for YOLACT++ the fast mask
re-scoring network (score x predicted IoU of the class, rows re-sorted). It is the same
computation as :func:`segcore.modeling.yolact.yolact_postprocess` with its defaults
(``second_score_threshold=False``, which is what :class:`segcore.predictor.Predictor` runs),
except that the last two steps, bilinear upsampling of the masks to H x W and the 0.5
threshold, depend on the original image size and are left to the consumer
(:class:`OnnxYolact` does them with ``cv2.resize``).

Inputs / outputs of the ONNX model (batch of one image):

- ``images``: ``[1, 3, S, S]`` float32, RGB, 0..255, the image resized to S x S (aspect ratio
  not kept) as the official ``FastBaseTransform`` and the Predictor do: the float image resized
  bilinearly with half-pixel centres, no antialiasing (``F.interpolate(align_corners=False)``;
  :mod:`.preprocess`; OpenCV ``cv2.resize`` of the float32 image is within 0.01 grey levels).
- ``boxes``: ``[N, 4]`` float32 XYXY **normalised** to 0..1 of the input (multiply x by W and y
  by H for original-image pixels), corners ordered and clipped to [0, 1].
- ``scores``: ``[N]`` float32 in [0, 1], descending (YOLACT++: the re-scored mask score).
- ``classes``: ``[N]`` int64 contiguous class index 0..K-1 (``categories[i]`` in the metadata).
- ``masks``: ``[N, Hp, Wp]`` float32 mask probabilities at prototype resolution, 0 outside the
  box (+1 px).
- ``num_detections``: ``[]`` int64; rows ``>= num_detections`` are padding (score 0, class -1,
  box and mask 0).

The score threshold, NMS IoU threshold, ``top_k`` and ``max_detections`` are fixed at export
time and stored, with the categories and the input size, in the model's ``metadata_props``
(keys ``segcore.*``, values JSON; see :data:`METADATA_KEYS`).

Exporter: ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript) works for every
YOLACT and YOLACT++ configuration tried (``yolact_tiny``, ``yolact_plus_tiny``,
``yolact_r50_550``) at opset 19 and is the default. The TorchScript exporter (``dynamo=False``,
deprecated since torch 2.9) also works for YOLACT v1 (same onnxruntime outputs as the dynamo
file) but not for YOLACT++: it has no symbolic for ``torchvision::deform_conv2d``, so that
combination is refused. With the dynamo exporter YOLACT++'s DCNv2 layers
(``torchvision.ops.deform_conv2d``) become the ONNX ``DeformConv`` operator, which exists from
opset 19 on and is implemented by onnxruntime's CPU provider; ``yolact_plus_*`` exports
therefore need ``opset >= 19`` (lower opsets are refused with :class:`OnnxExportError`).

Measured (torch 2.15, onnxruntime 1.31, 2 CPU cores shared with other jobs, so +-50 %):
export 5 s (yolact_tiny), 6 s (yolact_plus_tiny), 7-18 s (yolact_r50_550); onnxruntime vs the
PyTorch Predictor on a 640 x 480 COCO image: max score difference 3e-6, min mask IoU 0.996;
``OnnxYolact.predict`` 0.16 s vs ``Predictor.predict`` 0.7 s (yolact_tiny, S = 320) and 1.3 s
vs 3.8 s (yolact_r50_550, S = 550), 2 threads each.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...export.onnx import DEFAULT_OPSET, OnnxExportError
from ...ops.boxes import crop_masks, decode_boxes
from ...ops.nms import fast_nms_keep

__all__ = ["METADATA_KEYS", "OnnxExportReport", "YolactInference", "export_yolact_onnx", "OnnxYolact"]

#: Lowest opset accepted for YOLACT v1 (the dynamo exporter writes opset 18 natively).
MIN_OPSET = 18
#: ``metadata_props`` keys written into the ONNX model (values are JSON).
METADATA_KEYS = ("segcore.format", "segcore.arch", "segcore.input_size", "segcore.num_classes",
                 "segcore.categories", "segcore.score_threshold", "segcore.nms_iou_threshold", "segcore.top_k",
                 "segcore.max_detections", "segcore.box_format", "segcore.mask_format")
FORMAT = "segcore-yolact-onnx-v1"
INPUT_NAMES = ["images"]
OUTPUT_NAMES = ["boxes", "scores", "classes", "masks", "num_detections"]


class YolactInference(nn.Module):
    """YOLACT / YOLACT++ inference with fixed-size outputs (the module that is exported).

    Args:
        model: a :class:`segcore.modeling.yolact.Yolact` (``arch_name`` ``yolact_*``), put in eval
            mode here.
        score_threshold: priors whose best foreground score is ``<= score_threshold`` are dropped
            before NMS (official pre-filter; no second threshold).
        nms_iou_threshold: Fast NMS IoU threshold.
        top_k: candidates per class entering Fast NMS.
        max_detections: N, rows returned.
        rescore_mask: YOLACT++ only: score = class score x predicted mask IoU of the class.

    ``forward(images [1, 3, S, S] float32 RGB 0..255)`` returns ``(boxes [N, 4], scores [N],
    classes [N] int64, masks [N, Hp, Wp], num_detections [] int64)`` as described in the module
    docstring.

    Raises:
        OnnxExportError: the model is not a YOLACT family model.
    """

    def __init__(self, model: nn.Module, *, score_threshold: float = 0.05, nms_iou_threshold: float = 0.5,
                 top_k: int = 200, max_detections: int = 100, rescore_mask: bool = True):
        super().__init__()
        from .model import Yolact

        if not isinstance(model, Yolact):
            raise OnnxExportError(f"ONNX export supports the yolact_* / yolact_plus_* architectures only, "
                                  f"not {type(model).__name__!r}")
        if top_k < 1 or max_detections < 1:
            raise OnnxExportError(f"top_k and max_detections must be >= 1, got {top_k} and {max_detections}")
        self.model = model.eval()
        self.score_threshold = float(score_threshold)
        self.nms_iou_threshold = float(nms_iou_threshold)
        self.top_k = int(top_k)
        self.max_detections = int(max_detections)
        self.rescore_mask = bool(rescore_mask)
        self.eval()

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        out = self.model.network(images)
        loc, conf, coef, proto = out["loc"][0], out["conf"][0], out["mask_coef"][0], out["proto"][0]
        priors = out["priors"]
        num_priors, num_classes = conf.shape[0], conf.shape[1] - 1

        scores = F.softmax(conf, dim=-1)[:, 1:]  # [P, K]
        candidate = scores.max(dim=1).values > self.score_threshold  # [P]
        # non-candidates get -1: below every candidate, so they sort last and never suppress one
        scores = torch.where(candidate[:, None], scores, torch.full_like(scores, -1.0))
        boxes = decode_boxes(loc, priors)  # [P, 4] relative XYXY

        d = min(self.top_k, num_priors)
        cls_scores, order = scores.t().topk(d, dim=1)  # [K, D], descending
        keep = fast_nms_keep(boxes[order], self.nms_iou_threshold) & (cls_scores >= 0)  # [K, D]
        flat = torch.where(keep, cls_scores, torch.full_like(cls_scores, -1.0)).reshape(-1)
        n = min(self.max_detections, num_classes * d)
        det_scores, flat_idx = flat.topk(n)  # [N]
        valid = det_scores >= 0
        classes = torch.div(flat_idx, d, rounding_mode="floor")
        prior_idx = order.reshape(-1)[flat_idx]

        det_boxes = boxes[prior_idx]  # [N, 4]
        masks = torch.sigmoid(torch.einsum("hwk,nk->nhw", proto, coef[prior_idx]))
        masks = crop_masks(masks, det_boxes, padding=1)  # [N, Hp, Wp]

        maskiou_net = self.model.maskiou_net
        if maskiou_net is not None and self.rescore_mask:
            maskiou = maskiou_net(masks[:, None])  # [N, K]
            det_scores = det_scores * maskiou.gather(1, classes[:, None]).squeeze(1)
            key = torch.where(valid, det_scores, torch.full_like(det_scores, -1.0))
            _, resort = key.topk(n)  # ONNX TopK: ties keep the lower index first (stable)
            det_scores, classes, det_boxes, masks, valid = (
                det_scores[resort], classes[resort], det_boxes[resort], masks[resort], valid[resort])

        xs, ys = det_boxes[:, 0::2], det_boxes[:, 1::2]
        det_boxes = torch.stack((xs.min(dim=1).values, ys.min(dim=1).values,
                                 xs.max(dim=1).values, ys.max(dim=1).values), dim=1).clamp(0.0, 1.0)
        vf = valid.to(det_boxes.dtype)
        return (det_boxes * vf[:, None], det_scores * vf,
                torch.where(valid, classes, torch.full_like(classes, -1)),
                masks * vf[:, None, None], valid.sum())


@dataclass
class OnnxExportReport:
    """What :func:`export_yolact_onnx` wrote: ``path``, ``opset``, ``exporter`` ("dynamo" or
    "torchscript"), ``seconds`` (export + check), ``input_size`` S, ``num_outputs`` N,
    ``proto_size`` (Hp, Wp)."""

    path: Path
    opset: int
    exporter: str
    seconds: float
    input_size: int
    num_outputs: int
    proto_size: tuple[int, int]

    def line(self) -> str:
        return (f"wrote {self.path} (opset {self.opset}, {self.exporter} exporter, {self.seconds:.1f} s): "
                f"images [1, 3, {self.input_size}, {self.input_size}] -> boxes [{self.num_outputs}, 4], "
                f"scores, classes, masks [{self.num_outputs}, {self.proto_size[0]}, {self.proto_size[1]}], "
                f"num_detections")


def _is_plus(model: nn.Module) -> bool:
    from ...ops.dcn import ModulatedDeformConv2d

    return any(isinstance(m, ModulatedDeformConv2d) for m in model.modules())


def export_yolact_onnx(model: nn.Module, out_path: str | Path, *, categories: list[dict],
                       opset: int = DEFAULT_OPSET, score_threshold: float = 0.05, nms_iou_threshold: float = 0.5,
                       top_k: int = 200, max_detections: int = 100, dynamo: bool = True) -> OnnxExportReport:
    """Export a YOLACT / YOLACT++ model's whole inference to an ONNX file (see module docstring).

    The file is written next to ``out_path`` under a temporary name, checked with
    ``onnx.checker.check_model`` and then renamed, so a failed export leaves nothing behind.

    Args:
        model: a ``yolact_*`` / ``yolact_plus_*`` model (moved to the CPU and set to eval mode).
        out_path: ``.onnx`` file to write (parent folders are created).
        categories: ``[{"id", "name"}, ...]`` of length K, stored in the metadata.
        opset: ONNX opset; ``>= 18``, and ``>= 19`` for YOLACT++ (``DeformConv``).
        score_threshold, nms_iou_threshold, top_k, max_detections: baked into the graph, see
            :class:`YolactInference`.
        dynamo: True = ``torch.onnx.export(dynamo=True)`` (default), False = TorchScript exporter.

    Returns:
        :class:`OnnxExportReport`.

    Raises:
        OnnxExportError: not a YOLACT model, categories / num_classes mismatch, opset too low,
            unwritable path, or the exporter / checker failed (one line, the cause chained).
    """
    import onnx

    out_path = Path(out_path)
    wrapper = YolactInference(model, score_threshold=score_threshold, nms_iou_threshold=nms_iou_threshold,
                              top_k=top_k, max_detections=max_detections)
    model = wrapper.model.to("cpu").float().to(memory_format=torch.contiguous_format).eval()
    cats = [{"id": int(c["id"]), "name": str(c["name"])} for c in categories]
    if len(cats) != int(model.info.num_classes):
        raise OnnxExportError(f"{len(cats)} categories for a model with num_classes={model.info.num_classes}")
    plus = _is_plus(model)
    if opset < MIN_OPSET or (plus and opset < 19):
        need = 19 if plus else MIN_OPSET
        why = " (YOLACT++ DCNv2 needs the ONNX DeformConv operator, added in opset 19)" if plus else ""
        raise OnnxExportError(f"--opset {opset}: {model.info.arch} needs opset >= {need}{why}")
    if plus and not dynamo:
        raise OnnxExportError(f"{model.info.arch}: the TorchScript exporter has no ONNX symbolic for "
                              f"torchvision::deform_conv2d (YOLACT++ DCNv2); use the dynamo exporter")
    s = int(model.info.input_size)
    example = torch.zeros(1, 3, s, s)
    with torch.no_grad():
        outputs = wrapper(example)  # also fills the prior cache, so priors become a graph constant
    n, hp, wp = (int(v) for v in outputs[3].shape)

    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OnnxExportError(f"{out_path}: cannot create the folder: {exc.strerror}") from None
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    start = time.perf_counter()
    try:
        try:
            with torch.no_grad():
                if dynamo:
                    program = torch.onnx.export(wrapper, (example,), dynamo=True, opset_version=opset,
                                                input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                                                optimize=True, verbose=False)
                    proto = program.model_proto
                else:
                    import io
                    import warnings

                    buf = io.BytesIO()
                    with warnings.catch_warnings():  # tracer warnings on shape-dependent ints; deprecation
                        warnings.simplefilter("ignore", torch.jit.TracerWarning)
                        warnings.simplefilter("ignore", DeprecationWarning)
                        torch.onnx.export(wrapper, (example,), buf, dynamo=False, opset_version=opset,
                                          input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                                          do_constant_folding=True)
                    proto = onnx.load_from_string(buf.getvalue())
        except Exception as exc:  # exporter failures: report one line, keep the cause chained
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise OnnxExportError(f"{model.info.arch}: torch.onnx.export "
                                  f"({'dynamo' if dynamo else 'torchscript'}) failed: {first}") from exc
        meta = {
            "segcore.format": FORMAT,
            "segcore.arch": model.info.arch,
            "segcore.input_size": s,
            "segcore.num_classes": int(model.info.num_classes),
            "segcore.categories": cats,
            "segcore.score_threshold": float(score_threshold),
            "segcore.nms_iou_threshold": float(nms_iou_threshold),
            "segcore.top_k": int(top_k),
            "segcore.max_detections": int(max_detections),
            "segcore.box_format": "XYXY normalised 0..1 of the input",
            "segcore.mask_format": f"probabilities [N, {hp}, {wp}] at prototype resolution, cropped",
        }
        del proto.metadata_props[:]
        for key, value in meta.items():
            proto.metadata_props.add(key=key, value=json.dumps(value))
        proto.doc_string = f"segcore {model.info.arch} inference (segcore.modeling.yolact.onnx)"
        try:
            onnx.save_model(proto, str(tmp))
        except OSError as exc:
            raise OnnxExportError(f"{out_path}: cannot write: {exc.strerror}") from None
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise OnnxExportError(f"{out_path}: onnx.checker rejected the exported model: {first}") from exc
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return OnnxExportReport(path=out_path, opset=int(opset), exporter="dynamo" if dynamo else "torchscript",
                            seconds=time.perf_counter() - start, input_size=s, num_outputs=n, proto_size=(hp, wp))


class OnnxYolact:
    """Runs an exported YOLACT ONNX file with onnxruntime (numpy + OpenCV, no PyTorch needed by
    the model itself) and returns the Predictor's :class:`~segcore.predictor.Prediction`.

    Args:
        path: ``.onnx`` file written by :func:`export_yolact_onnx`.
        providers: onnxruntime execution providers (default CPU only).
        threads: ``intra_op_num_threads`` (None = onnxruntime's default).

    Attributes:
        categories: ``[{"id", "name"}]`` (index = class index), input_size: S,
        metadata: every ``segcore.*`` entry (JSON-decoded), session: the InferenceSession.

    Raises:
        OnnxExportError: the file is missing, not loadable by onnxruntime, or has no segcore metadata.
    """

    def __init__(self, path: str | Path, *, providers: tuple[str, ...] = ("CPUExecutionProvider",),
                 threads: int | None = None):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise OnnxExportError(f"{path}: ONNX file not found")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own exception types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise OnnxExportError(f"{path}: onnxruntime cannot load it: {first}") from None
        raw = self.session.get_modelmeta().custom_metadata_map
        if raw.get("segcore.format") != json.dumps(FORMAT):
            raise OnnxExportError(f"{path}: metadata 'segcore.format' missing: not exported by segcore.export.onnx")
        self.metadata = {k: json.loads(v) for k, v in raw.items() if k.startswith("segcore.")}
        self.categories = list(self.metadata["segcore.categories"])
        self.input_size = int(self.metadata["segcore.input_size"])
        self.score_threshold = float(self.metadata["segcore.score_threshold"])
        self._category_ids = np.asarray([c["id"] for c in self.categories], dtype=np.int64)

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Raw graph outputs for ``images`` ``[1, 3, S, S]`` float32 RGB 0..255, sliced to the
        ``num_detections`` valid rows: ``{"boxes", "scores", "classes", "masks"}``."""
        boxes, scores, classes, masks, num = self.session.run(OUTPUT_NAMES, {INPUT_NAMES[0]: images})
        n = int(num)
        return {"boxes": boxes[:n], "scores": scores[:n], "classes": classes[:n], "masks": masks[:n]}

    def predict(self, image: np.ndarray, *, score_threshold: float | None = None, mask_threshold: float = 0.5):
        """Predict one ``[H, W, 3]`` uint8 RGB image.

        Steps outside the graph: the Predictor's resize to S x S (:func:`.preprocess.yolact_test_resize`,
        the official ``FastBaseTransform``), masks upsampled with
        ``cv2.resize`` (bilinear, half-pixel centres as ``F.interpolate(align_corners=False)``)
        to H x W and thresholded at ``mask_threshold``, boxes scaled to pixels.

        Args:
            score_threshold: None = the exported pre-filter only (same detections as the
                Predictor with that threshold); a higher value also drops rows with
                ``score <= score_threshold``.

        Returns:
            :class:`segcore.predictor.Prediction` (boxes XYXY pixels, COCO category ids, bool masks).

        Raises:
            ValueError: bad image, or ``score_threshold`` below the exported one.
        """
        import cv2

        from ...predictor import Prediction, check_image
        from .preprocess import yolact_test_resize

        check_image(image)
        if score_threshold is not None and score_threshold < self.score_threshold:
            raise ValueError(f"score_threshold {score_threshold} is below the exported pre-filter "
                             f"{self.score_threshold}: export again with a lower --score-threshold")
        h, w = image.shape[:2]
        s = self.input_size
        x = yolact_test_resize(image, s)[None].numpy()
        out = self.run(x)
        keep = np.ones(len(out["scores"]), dtype=bool)
        if score_threshold is not None:
            keep = out["scores"] > score_threshold
        boxes = out["boxes"][keep] * np.asarray([w, h, w, h], dtype=np.float32)
        masks = np.zeros((int(keep.sum()), h, w), dtype=bool)
        for i, m in enumerate(out["masks"][keep]):
            masks[i] = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) > mask_threshold
        classes = out["classes"][keep].astype(np.int64)
        return Prediction(boxes=boxes.astype(np.float32).reshape(-1, 4), scores=out["scores"][keep].astype(np.float32),
                          category_ids=self._category_ids[classes], masks=masks)
