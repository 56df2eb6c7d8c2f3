"""CUDA path: predictor (fp16 / fp32, batches, pinned uploads) and a few AMP training steps.

Skipped without a CUDA device. The fp16-vs-fp32 comparisons use tiny models overfitted on the 4
images of the ``overfit_set`` fixture (a few seconds each on a GPU), so their detections are
confident: random-init scores are nearly uniform and fp16 rounding would reorder them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segcore.checkpoints import load_checkpoint
from segcore.data import load_coco_records, read_image_rgb
from segcore.engine import train
from segcore.modeling.registry import build_model
from segcore.predictor import Predictor

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="needs a CUDA device (torch.cuda.is_available() is False)"),
]


def test_predictor_on_cuda():
    torch.manual_seed(0)
    model = build_model("yolact_tiny", num_classes=2, input_size=128)
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    image = np.random.default_rng(0).integers(0, 256, size=(90, 120, 3), dtype=np.uint8)
    for precision, expected in ((None, "fp16"), ("fp32", "fp32"), ("bf16", "bf16"), ("fp16", "fp16")):
        pred = Predictor(model, cats, device="cuda", precision=precision)
        assert pred.device.type == "cuda" and pred.channels_last and pred.precision == expected
        out = pred.predict(image, score_threshold=0.0)
        assert out.masks.shape[1:] == (90, 120) and out.masks.dtype == bool
        assert out.scores.dtype == np.float32 and len(out) > 0
        batch = pred.predict_batch([image, image[:60]], score_threshold=0.0)
        assert [b.masks.shape[1:] for b in batch] == [(90, 120), (60, 120)]


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


# the overfit recipes of the CPU overfit tests (tests/segcore/test_overfit.py, test_blendmask.py,
# test_centermask_overfit.py), run on the GPU with AMP
_RECIPES = {
    "yolact_tiny": dict(input_size=256, iterations=100, lr=1e-3, weight_decay=5e-4),
    "blendmask_tiny": dict(input_size=224, iterations=120, lr=1e-2, weight_decay=1e-4),
    "centermask_tiny": dict(input_size=192, iterations=150, lr=3e-3, weight_decay=5e-4),
}


@pytest.fixture(scope="module")
def overfitted(overfit_set, tmp_path_factory):
    """``{arch: checkpoint path}`` of the tiny models overfitted on the GPU, and the 4 images."""
    chosen, cats = overfit_set
    paths = {}
    for arch, r in _RECIPES.items():
        torch.manual_seed(0)
        model = build_model(arch, num_classes=len(cats), input_size=r["input_size"])
        res = train(model, chosen, cats, iterations=r["iterations"], batch_size=4, lr=r["lr"], warmup_iters=20,
                    weight_decay=r["weight_decay"], augment=False, freeze_bn=False, device="cuda", amp="auto",
                    seed=0, out_dir=tmp_path_factory.mktemp(arch))
        paths[arch] = res.checkpoint_path
    images = [read_image_rgb(r["file_name"]) for r in chosen]
    return paths, images


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _compare(ref, out, top: int = 5) -> list[float]:
    """Top-1 class equal; for ref's ``top`` best detections the best mask IoU with an ``out``
    detection of the same class (0 when there is none)."""
    assert len(ref) > 0 and len(out) > 0
    assert out.category_ids[0] == ref.category_ids[0]
    ious = []
    for i in range(min(top, len(ref))):
        same = np.flatnonzero(out.category_ids == ref.category_ids[i])
        ious.append(max((_mask_iou(ref.masks[i], out.masks[j]) for j in same), default=0.0))
    return ious


@pytest.mark.parametrize("arch", sorted(_RECIPES))
def test_fp16_batch_matches_fp32(arch, overfitted):
    paths, images = overfitted
    p32 = Predictor.from_checkpoint(paths[arch], device="cuda", precision="fp32")
    p16 = Predictor.from_checkpoint(paths[arch], device="cuda")  # the CUDA default
    assert p16.precision == "fp16" and p32.precision == "fp32"
    out32 = p32.predict_batch(images, score_threshold=0.05)
    out16 = p16.predict_batch(images, score_threshold=0.05)
    ious = []
    for image, a, b in zip(images, out32, out16):
        assert b.masks.shape[1:] == image.shape[:2] and b.masks.dtype == bool and b.scores.dtype == np.float32
        ious += _compare(a, b)
    assert float(np.median(ious)) > 0.9, ious


@pytest.mark.parametrize("arch", sorted(_RECIPES))
def test_cuda_pipeline_matches_cpu(arch, overfitted):
    """Pinned uploads, GPU padding / pasting and the one device-to-host copy give the CPU's result
    (fp32 on both; cuDNN / TF32 kernels differ from oneDNN in the last bits)."""
    paths, images = overfitted
    cpu = Predictor.from_checkpoint(paths[arch], device="cpu", precision="fp32")
    gpu = Predictor.from_checkpoint(paths[arch], device="cuda", precision="fp32")
    x_cpu, hw_cpu = cpu.preprocess_batch(images)
    x_gpu, hw_gpu = gpu.preprocess_batch(images)  # pinned host memory, non_blocking copy
    assert x_gpu.device.type == "cuda" and hw_gpu == hw_cpu
    torch.testing.assert_close(x_gpu.cpu(), x_cpu, rtol=0, atol=0)  # the same network input
    ious = []
    for a, b in zip([cpu.predict(im) for im in images], gpu.predict_batch(images)):
        ious += _compare(a, b)
    assert float(np.median(ious)) > 0.95, ious


def test_prelabel_batches_on_cuda(overfitted, tmp_path, coco_tiny):
    from annotator.jobs.prelabel import default_batch_size, prelabel
    from annotator.project import Project

    paths, _ = overfitted
    predictor = Predictor.from_checkpoint(paths["yolact_tiny"], device="cuda")
    assert default_batch_size(predictor) == 8
    with Project.create(tmp_path / "proj", images_dir=coco_tiny / "val2017") as project:
        ids = [im.id for im in project.images()[:11]]  # a batch of 8 and one of 3
        seen = []
        summary = prelabel(project, predictor, ids, progress=lambda d, t: seen.append(d))
        assert summary.images == 11 and seen == list(range(1, 12))
