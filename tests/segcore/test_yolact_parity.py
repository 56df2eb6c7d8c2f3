"""Numerical parity with the official dbolya/yolact code on identical weights, on a real image.

Fixtures ``tests/fixtures/yolact_parity_<arch>.npz`` hold the official outputs (raw network
outputs sampled every 97th prior / 6th prototype pixel, and all post-processed detections,
top-10 masks bit-packed) produced by ``tests/fixtures/yolact_parity_make.py``, which ran the
official code on CPU with the seeded weights of ``yolact_parity_weights.parity_state_dict`` on
coco-tiny ``val2017/000000005001.jpg``. Here the same weights are regenerated, saved, imported
through ``import_official_weights`` and run through segcore's model and post-processing.
YOLACT++ checks DCNv2 (segcore: torchvision ``deform_conv2d``; official side: a transcription
of the official CUDA kernel) and the mask re-scoring (scores = class score x MaskIoU).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from segcore.importers import import_official_weights
from segcore.modeling import build_model
from segcore.modeling.yolact import yolact_postprocess

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
_spec = importlib.util.spec_from_file_location("yolact_parity_weights", FIXTURES / "yolact_parity_weights.py")
pw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pw)
TOL = 1e-4


@pytest.mark.parametrize("arch", ["yolact_r50_550", "yolact_plus_r50_550", "yolact_darknet53_550"])
def test_parity_with_official_code(arch, coco_tiny, tmp_path):
    ref = np.load(FIXTURES / f"yolact_parity_{arch}.npz")
    shapes = {k: tuple(v.shape) for k, v in build_model(arch, num_classes=80).state_dict().items()}
    torch.save(pw.parity_state_dict(shapes, int(ref["seed"])), tmp_path / "w.pth")
    model, report, _ = import_official_weights(tmp_path / "w.pth", arch)
    assert report.missing == [] and report.mapped == len(shapes)

    x, (h, w) = pw.parity_input(coco_tiny, int(ref["size"]))
    assert [h, w] == ref["image_hw"].tolist()
    with torch.no_grad():
        out = model(x)
        inst = yolact_postprocess(out, [(h, w)])[0]

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

    # post-processed detections (official order re-sorted by the reported score, as segcore does)
    assert len(inst) == len(ref["scores"]) > 0
    assert inst.pred_classes.numpy().tolist() == ref["classes"].tolist()
    assert np.abs(inst.scores.numpy() - ref["scores"]).max() <= TOL
    assert np.abs(inst.pred_boxes.numpy() - ref["boxes"]).max() <= TOL * max(h, w)
    if arch.startswith("yolact_plus"):
        assert not np.allclose(ref["scores"], ref["box_scores"])  # re-scoring really happened
    ref_masks = np.unpackbits(ref["masks"], axis=-1, count=w).astype(bool)
    ours = inst.pred_masks[: len(ref_masks)].numpy()
    assert (ours != ref_masks).mean() <= TOL
