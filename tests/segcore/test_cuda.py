"""CUDA path: predictor and a few AMP training steps (skipped without a CUDA device)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segcore.checkpoints import load_checkpoint
from segcore.data import load_coco_records
from segcore.engine import train
from segcore.modeling.registry import build_model
from segcore.predictor import Predictor

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)"),
]


def test_predictor_on_cuda():
    torch.manual_seed(0)
    model = build_model("yolact_tiny", num_classes=2, input_size=128)
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    image = np.random.default_rng(0).integers(0, 256, size=(90, 120, 3), dtype=np.uint8)
    for precision in ("fp32", "bf16"):
        pred = Predictor(model, cats, device="cuda", precision=precision)
        assert pred.device.type == "cuda" and not pred.channels_last
        out = pred.predict(image, score_threshold=0.0)
        assert out.masks.shape[1:] == (90, 120) and out.masks.dtype == bool
        assert out.scores.dtype == np.float32 and len(out) > 0


def test_train_amp_on_cuda(coco_tiny, tmp_path):
    records, categories = load_coco_records(coco_tiny / "annotations" / "instances_train2017.json",
                                            coco_tiny / "train2017")
    torch.manual_seed(0)
    model = build_model("yolact_tiny", num_classes=len(categories), input_size=256)
    seen = []
    res = train(model, records[:8], categories, iterations=4, batch_size=8, warmup_iters=2, device="cuda",
                amp="auto", out_dir=tmp_path, progress=seen.append)
    assert res.iterations_done == 4 and res.skipped_nonfinite == 0
    assert all(np.isfinite(p["losses"]["total"]) for p in seen)
    _, info = load_checkpoint(res.checkpoint_path)
    assert info["meta"]["amp"] is True and info["meta"]["freeze_bn"] is False
    pred = Predictor.from_checkpoint(res.checkpoint_path)  # auto -> cuda
    assert pred.device.type == "cuda"
