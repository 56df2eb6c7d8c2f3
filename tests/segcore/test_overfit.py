"""Acceptance: yolact_tiny and yolact_plus_tiny overfit 4 real COCO images (segm AP50 >= 0.5 on
them) on the CPU.

Images: from coco-tiny train2017, those with 1..3 annotations, no crowd region and every instance
covering >= 5 % of the image, sorted by image id, first 4 (ids 24577, 114694, 188416, 286720:
donut x2, teddy bear, keyboard, cat + toilet). Categories: the 5 present ones.

Settings (and why): input 256 (a 320 step costs ~2x on 2 cores), batch 4 = the 4 images,
augment=False, SGD lr 1e-3 (official; 1e-2 diverged to NaN) with a 20-iteration warmup,
100 iterations. BatchNorm is trained (freeze_bn=False): the official rule freezes BN for batches
< 6, which assumes ImageNet-pretrained BN statistics; this random-init network (nothing can be
downloaded) trains unstably with identity BN. Measured on the 2-core dev machine: ~1-2 min
(quiet machine, 2 threads: 46 s training, segm AP50 0.90).

YOLACT++ (``yolact_plus_tiny``: DCNv2 in the last block of C3-C5, 3 x 3 priors, MaskIoU re-scoring;
input 256 is its minimum, the MaskIoU net needs it): one step costs 1.4 s on 2 quiet cores against
0.42 s for v1, 1.0 s of it in torchvision's CPU ``deform_conv2d`` backward (single-threaded; 875 ms
of backward for the three DCN layers against 40 ms for plain 3x3 convs of the same shapes; measured
before DCNv2 ran on ``segcore.ops.dcn.deform_conv2d_cpu``, with which this test gave segm AP50 0.90). So it
gets fewer, larger steps: 60 iterations at lr 2e-3 (10-iteration warmup, x0.1 at 45; lr 4e-3 and
larger mask-loss weights made the mask loss oscillate). The evaluated score is the re-scored one
(class score x predicted mask IoU), as the app sees it. Measured (2 quiet cores): ~85 s training,
segm AP50 0.57 (bbox AP50 0.77); v1's recipe (100 x 1e-3) gives 0.64 in ~140 s.
Why not higher: with only 4 images, the MaskIoU net's final ReLU starts (and stays) negative for
some class channels (cat, teddy bear here), so those classes' mask scores are 0 although their
class scores are 0.99 (class-score-only AP50 of the same model: 0.90). Training through the
pre-activation and a grid_sample-based DCN on the CPU (both outside this test) give AP50 1.0 in
~35 s with this recipe.
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
PLUS_ITERATIONS = 60



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


@pytest.mark.slow
def test_yolact_plus_tiny_overfits_four_images(overfit_set, tmp_path):
    chosen, cats = overfit_set  # the 4 images of tests/conftest.py

    torch.manual_seed(0)
    model = build_model("yolact_plus_tiny", num_classes=len(cats), input_size=INPUT_SIZE)
    t0, cpu0 = time.perf_counter(), time.process_time()
    result = train(model, chosen, cats, iterations=PLUS_ITERATIONS, batch_size=4, lr=2e-3, warmup_iters=10,
                   steps=(45,), augment=False, freeze_bn=False, device="cpu", seed=0, out_dir=tmp_path)
    train_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    assert result.iterations_done == PLUS_ITERATIONS and result.skipped_nonfinite == 0
    assert "loss_maskiou" in result.final_losses

    predictor = Predictor.from_checkpoint(result.checkpoint_path, device="cpu")
    metrics = evaluate_predictions(predictor, chosen, cats)
    print(f"overfit ++: {PLUS_ITERATIONS} iterations in {train_s:.1f} s wall, {cpu_s:.1f} s CPU, final losses "
          f"{ {k: round(v, 3) for k, v in result.final_losses.items()} }, segm {metrics['segm']}, "
          f"bbox {metrics['bbox']}")
    assert metrics["segm"]["AP50"] >= 0.5, metrics
