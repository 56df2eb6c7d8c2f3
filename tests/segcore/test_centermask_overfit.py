"""Acceptance: centermask_tiny overfits 4 real COCO images (segm AP50 >= 0.85 on them) on the CPU.

Images: the 4 coco-tiny train2017 images of the ``overfit_set`` fixture (tests/conftest.py) (ids 24577, 114694,
188416, 286720). Settings: short side 192 (long side <= 416, padded to 32), batch 4 = the 4 images,
augment=False, trainable BN (freeze_bn=False; random init, see ``centermask/builders.py``), one
torch thread (on the shared 2-core machine more threads were slower). Schedule: SGD lr 6e-3 with a
50-iteration warmup, 400 iterations, x0.1 at 320. Why: the mask is pasted into the detected box,
so segm AP needs accurate FCOS boxes first; 150 iterations at 3e-3 left boxes ~20 % too small
(box IoU 0.6-0.8 with the gt, segm AP50 0.70) and the SAG-Mask channel of the toilet unlearnt;
the longer schedule with the decay brings box IoU to 0.9-0.95. Measured on the shared 2-core
machine: 83 s training (load-dependent), segm AP50 0.90, bbox AP50 1.0 with the Predictor's
former OpenCV resize; with the official detectron2 resize (Pillow, antialiased; issue 14) that
the Predictor uses now while training still resizes with OpenCV: segm AP50 0.85 (0.90 when the
same checkpoint is evaluated with the OpenCV resize), bbox AP50 1.0. Training RoIs stay clipped
(:func:`segcore.modeling.centermask.centermask_proposals`): with centermask2's unclipped ones
segm AP50 was 0.70.
"""

from __future__ import annotations

import time

import pytest
import torch

from segcore.engine import train
from segcore.evaluation import evaluate_predictions
from segcore.modeling.registry import build_model
from segcore.predictor import Predictor


ITERATIONS = 400
INPUT_SIZE = 192



@pytest.mark.slow
def test_centermask_tiny_overfits_four_images(overfit_set, tmp_path):
    chosen, cats = overfit_set  # the 4 images of tests/conftest.py

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = build_model("centermask_tiny", num_classes=len(cats), input_size=INPUT_SIZE)
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        result = train(model, chosen, cats, iterations=ITERATIONS, batch_size=4, lr=6e-3, warmup_iters=50,
                       steps=(320,), weight_decay=1e-4, augment=False, freeze_bn=False, device="cpu", seed=0,
                       out_dir=tmp_path)
        train_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
        assert result.iterations_done == ITERATIONS and result.skipped_nonfinite == 0
        predictor = Predictor.from_checkpoint(result.checkpoint_path, device="cpu")
        metrics = evaluate_predictions(predictor, chosen, cats)
    finally:
        torch.set_num_threads(threads)
    losses = {k: round(v, 3) for k, v in result.final_losses.items()}
    print(f"overfit: {ITERATIONS} iterations in {train_s:.1f} s wall, {cpu_s:.1f} s CPU, final losses {losses}, "
          f"segm {metrics['segm']}, bbox {metrics['bbox']}")
    assert metrics["segm"]["AP50"] >= 0.85, metrics
