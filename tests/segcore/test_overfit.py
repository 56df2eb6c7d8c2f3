"""Acceptance: yolact_tiny overfits 4 real COCO images (segm AP50 >= 0.5 on them) on the CPU.

Images: from coco-tiny train2017, those with 1..3 annotations, no crowd region and every instance
covering >= 5 % of the image, sorted by image id, first 4 (ids 24577, 114694, 188416, 286720:
donut x2, teddy bear, keyboard, cat + toilet). Categories: the 5 present ones.

Settings (and why): input 256 (a 320 step costs ~2x on 2 cores), batch 4 = the 4 images,
augment=False, SGD lr 1e-3 (official; 1e-2 diverged to NaN) with a 20-iteration warmup,
100 iterations. BatchNorm is trained (freeze_bn=False): the official rule freezes BN for batches
< 6, which assumes ImageNet-pretrained BN statistics; this random-init network (nothing can be
downloaded) trains unstably with identity BN. Measured on the 2-core dev machine: ~1-2 min.
"""

from __future__ import annotations

import time

import pytest
import torch

from segcore.engine import train
from segcore.evaluation import evaluate_predictions
from segcore.modeling.registry import build_model
from segcore.predictor import Predictor

ITERATIONS = 100
INPUT_SIZE = 256



@pytest.mark.slow
def test_yolact_tiny_overfits_four_images(overfit_set, tmp_path):
    chosen, cats = overfit_set  # the 4 images of tests/conftest.py

    torch.manual_seed(0)
    model = build_model("yolact_tiny", num_classes=len(cats), input_size=INPUT_SIZE)
    t0 = time.perf_counter()
    result = train(model, chosen, cats, iterations=ITERATIONS, batch_size=4, lr=1e-3, warmup_iters=20,
                   augment=False, freeze_bn=False, device="cpu", seed=0, out_dir=tmp_path)
    train_s = time.perf_counter() - t0
    assert result.iterations_done == ITERATIONS and result.skipped_nonfinite == 0

    predictor = Predictor.from_checkpoint(result.checkpoint_path, device="cpu")
    metrics = evaluate_predictions(predictor, chosen, cats)
    print(f"overfit: {ITERATIONS} iterations in {train_s:.1f} s, final losses "
          f"{ {k: round(v, 3) for k, v in result.final_losses.items()} }, segm {metrics['segm']}, "
          f"bbox {metrics['bbox']}")
    assert metrics["segm"]["AP50"] >= 0.5, metrics
