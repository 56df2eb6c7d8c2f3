"""Numerical parity with the official dbolya/yolact code on identical weights, on a real image,
end to end through the app path.

Fixtures ``tests/fixtures/yolact_parity_<arch>.npz`` hold the official outputs (raw network
outputs sampled every 97th prior / 6th prototype pixel, and all post-processed detections,
top-10 masks bit-packed) produced by ``tests/fixtures/yolact_parity_make.py``, which ran the
official code on CPU with the seeded weights of ``yolact_parity_weights.parity_state_dict`` on
coco-tiny ``val2017/000000005001.jpg``, its input made by ``parity_input`` (the official
``FastBaseTransform``: ``F.interpolate`` of the float image).

Here the same weights are regenerated and imported as a user does (``annotator import-weights``
-> segcore checkpoint -> ``Predictor.from_checkpoint``), and ``Predictor.predict`` runs on the
image as ``eval.py`` reads it (``cv2.imread``, flipped to RGB uint8). The predictor's network
input equals the fixture's input and the official ``FastBaseTransform`` output (transcribed
below; checked once against the official code itself, bit for bit, for the R-50, im700 and
DarkNet configs), so the one forward's raw outputs and the prediction are compared with the
official ones: raw outputs within 1e-4, the same detections, scores within 1e-4, boxes within
1e-4 x the image side, masks with IoU >= 0.999.
YOLACT++ checks DCNv2 (segcore: torchvision ``deform_conv2d``; official side: a transcription
of the official CUDA kernel) and the mask re-scoring (scores = class score x MaskIoU, the class
scores kept as ``box_scores``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from annotator.weights import import_weights
from segcore.modeling import build_model
from segcore.predictor import Predictor

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
_spec = importlib.util.spec_from_file_location("yolact_parity_weights", FIXTURES / "yolact_parity_weights.py")
pw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pw)
_spec = importlib.util.spec_from_file_location("parity_check", FIXTURES / "parity_check.py")
pc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pc)
TOL = 1e-4
MEANS, STD = (103.94, 116.78, 123.68), (57.38, 57.12, 58.40)  # dbolya/yolact data/config.py (BGR)


def _fast_base_transform(bgr: np.ndarray, size: int, normalize: bool) -> torch.Tensor:
    """dbolya/yolact ``utils/augmentations.py`` ``FastBaseTransform.forward`` on ``eval.py``'s
    ``torch.from_numpy(cv2.imread(path)).float()``, transcribed (non-square configs not used)."""
    img = torch.from_numpy(bgr).float()[None].permute(0, 3, 1, 2).contiguous()
    img = F.interpolate(img, (size, size), mode="bilinear", align_corners=False)
    if normalize:
        img = (img - torch.Tensor(MEANS)[None, :, None, None]) / torch.Tensor(STD)[None, :, None, None]
    else:
        img = img / 255
    return img[:, (2, 1, 0), :, :].contiguous()


@pytest.mark.parametrize("arch", ["yolact_r50_550", "yolact_plus_r50_550", "yolact_darknet53_550"])
def test_parity_with_official_code(arch, coco_tiny, tmp_path):
    ref = np.load(FIXTURES / f"yolact_parity_{arch}.npz")
    shapes = {k: tuple(v.shape) for k, v in build_model(arch, num_classes=80).state_dict().items()}
    torch.save(pw.parity_state_dict(shapes, int(ref["seed"])), tmp_path / "w.pth")
    lines: list[str] = []
    ckpt = import_weights(tmp_path / "w.pth", arch, out=tmp_path / "segcore.pth", log=lines.append)
    assert f"mapped {len(shapes)}, ignored 0, missing 0" in " ".join(lines), lines
    predictor = Predictor.from_checkpoint(ckpt, device="cpu", precision="fp32")
    model = predictor.model

    # the app's input path is the official one: FastBaseTransform, and the fixture's input
    bgr = cv2.imread(str(coco_tiny / pw.PARITY_IMAGE), cv2.IMREAD_COLOR)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    h, w = rgb.shape[:2]
    x, (h_ref, w_ref) = pw.parity_input(coco_tiny, int(ref["size"]))
    assert [h, w] == [h_ref, w_ref] == ref["image_hw"].tolist()
    x_pred, input_hw = predictor.preprocess_batch([rgb])
    assert input_hw == [(int(ref["size"]),) * 2] and torch.equal(x_pred, x)
    official = _fast_base_transform(bgr, int(ref["size"]), normalize=float(model.pixel_std[0, 0]) != 255.0)
    assert torch.equal((x_pred - model.pixel_mean) / model.pixel_std, official)

    out: dict = {}
    handle = model.register_forward_hook(lambda mod, args, result: out.update(result))
    try:
        pred = predictor.predict(rgb)   # score_threshold 0.05 = the official Detect conf_thresh
    finally:
        handle.remove()

    # raw outputs (official names: loc, conf, mask, proto, priors)
    assert out["loc"].shape[1] == int(ref["num_priors"])
    assert list(out["proto"].shape) == ref["proto_shape"].tolist()
    sel = slice(None, None, 97)
    diffs = {
        "loc": (out["loc"][0, sel].numpy() - ref["loc"]),
        "conf": (out["conf"][0, sel].numpy() - ref["conf"]),
        "mask_coef": (out["mask_coef"][0, sel].numpy() - ref["mask"]),
        "priors": (out["priors"][sel].numpy() - ref["priors"]),
        "proto": (out["proto"][0, ::6, ::6].numpy() - ref["proto"]),
    }
    worst = {k: float(np.abs(v).max()) for k, v in diffs.items()}
    assert all(v <= TOL for v in worst.values()), worst

    # final detections (official order re-sorted by the reported score, as segcore does; near
    # ties may come in either order: matched one to one)
    ids = np.array([c["id"] for c in predictor.categories])
    match, problems = pc.match_detections(ref["boxes"], ids[ref["classes"]], ref["scores"], pred.boxes,
                                          pred.category_ids, pred.scores, box_tol=TOL * max(h, w))
    assert not problems and len(pred) > 0, problems
    assert (np.diff(pred.scores) <= 0).all()
    figures = {"scores": float(np.abs(pred.scores[match] - ref["scores"]).max()),
               "boxes": float(np.abs(pred.boxes[match] - ref["boxes"]).max())}
    if arch.startswith("yolact_plus"):
        assert not np.allclose(ref["scores"], ref["box_scores"])  # re-scoring really happened
        figures["box_scores"] = float(np.abs(pred.box_scores[match] - ref["box_scores"]).max())
        assert figures["box_scores"] <= TOL
    else:
        assert pred.box_scores is None and np.array_equal(ref["scores"], ref["box_scores"])
    ref_masks = np.unpackbits(ref["masks"], axis=-1, count=w).astype(bool)
    figures["mask_iou_min"] = min(pc.mask_iou(pred.masks[j], m) for j, m in zip(match, ref_masks))
    assert figures["mask_iou_min"] >= pc.MIN_IOU, figures
    print(arch, "raw", worst, "final", figures)
