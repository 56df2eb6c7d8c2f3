"""CPU latency benchmark: our YOLACT predictor next to torchvision's Mask R-CNN.

Measures the full single-image path on the CPU (numpy RGB image -> preprocessing -> network ->
post-processing -> masks at the original resolution), median of ``runs`` after ``warmup`` runs,
under ``torch.inference_mode``, with the timed runs interleaved round-robin over the variants
(so load from other processes hits all of them alike):

* ours through :class:`segcore.predictor.Predictor` in fp32 NCHW, fp32 channels_last and bf16
  (autocast) channels_last;
* ``torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)``
  with ``min_size = max_size = size`` (it keeps the aspect ratio, so a 480 x 640 image runs at
  412 x 550: fewer pixels than our 550 x 550, which favours Mask R-CNN), fp32, its
  ``GeneralizedRCNNTransform`` + mask pasting included.

Both models use random-init weights (nothing is downloaded), so to compare equal work both are
made to return their maximum of 100 detections: our score threshold is 0.0 (then Fast NMS and
``max_detections=100`` bound the output) and Mask R-CNN gets ``box_score_thresh=0.0``,
``box_detections_per_img=100``. With trained weights and the default 0.05 threshold both are
faster; the ratio is what the target is about.

Run: ``python -c "from segcore.bench import run_benchmark; run_benchmark()"``.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Callable

import numpy as np
import torch

__all__ = ["run_benchmark"]

_VARIANTS = (("fp32_nchw", "fp32", False), ("fp32_channels_last", "fp32", True),
             ("bf16_channels_last", "bf16", True))


def _interleaved_median_ms(fns: dict[str, Callable[[], int]], runs: int, warmup: int
                           ) -> tuple[dict[str, float], dict[str, int]]:
    """Median wall time (ms) per function; the timed runs go round-robin over the functions so
    that load from other processes affects every variant alike."""
    dets = {name: 0 for name in fns}
    for name, fn in fns.items():
        for _ in range(warmup):
            dets[name] = fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(max(1, runs)):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            dets[name] = fn()
            times[name].append((time.perf_counter() - t0) * 1000.0)
    return {name: statistics.median(t) for name, t in times.items()}, dets


def run_benchmark(arch: str = "yolact_r50_550", size: int = 550, runs: int = 5, warmup: int = 2,
                  threads: int | None = None, print_fn: Callable[[str], None] | None = print,
                  image_hw: tuple[int, int] = (480, 640), num_classes: int = 80, seed: int = 0) -> dict:
    """Time ours vs Mask R-CNN on the CPU and print a table.

    Args:
        arch: registered segcore architecture (built with ``input_size=size``, random init).
        size: network input side S (ours: S x S; Mask R-CNN: ``min_size = max_size = S``).
        runs: timed runs per variant (median reported).
        warmup: untimed runs before timing.
        threads: ``torch.set_num_threads`` for the run (restored afterwards); None = unchanged.
        print_fn: receives each output line; None = silent.
        image_hw: ``(H, W)`` of the synthetic uint8 RGB test image (seeded noise).
        num_classes: K for our model (Mask R-CNN uses torchvision's 91 COCO classes).
        seed: seed for the weights and the image.

    Returns:
        ``{"arch", "size", "image_hw", "threads", "runs", "warmup", "ms": {variant: float},
        "ratio": {variant: ours / Mask R-CNN}, "detections": {variant: int}, "best": variant,
        "target_met_best": bool, "target_met_fp32": bool}`` where the variants are
        ``fp32_nchw``, ``fp32_channels_last``, ``bf16_channels_last`` and ``maskrcnn_fp32``
        (``ratio`` has ours only). Target: ours <= 1/3 of Mask R-CNN's latency.
    """
    import torchvision

    from segcore.modeling.registry import build_model
    from segcore.predictor import Predictor

    import segcore.modeling  # noqa: F401  (registers the architectures)

    say = print_fn or (lambda _line: None)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        image = rng.integers(0, 256, size=(image_hw[0], image_hw[1], 3), dtype=np.uint8)
        categories = [{"id": i + 1, "name": f"class{i + 1}"} for i in range(num_classes)]
        base = build_model(arch, num_classes=num_classes, input_size=size).eval()

        runners: dict[str, Callable[[], int]] = {}
        for name, precision, channels_last in _VARIANTS:
            pred = Predictor(copy.deepcopy(base), categories, device="cpu", precision=precision,
                             channels_last=channels_last)
            runners[name] = lambda p=pred: len(p.predict(image, score_threshold=0.0))

        mrcnn = torchvision.models.detection.maskrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, min_size=size, max_size=size,
            box_score_thresh=0.0, box_detections_per_img=100).eval()

        def run_mrcnn() -> int:
            with torch.inference_mode():
                x = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)
                out = mrcnn([x])[0]
                masks = out["masks"][:, 0] > 0.5  # [N, H, W] bool at the original resolution
                return int(masks.shape[0])

        runners["maskrcnn_fp32"] = run_mrcnn
        ms, dets = _interleaved_median_ms(runners, runs, warmup)
    finally:
        torch.set_num_threads(old_threads)

    ref = ms["maskrcnn_fp32"]
    ratio = {name: ms[name] / ref for name, _, _ in _VARIANTS}
    best = min(ratio, key=ratio.get)
    target = 1.0 / 3.0
    result = {
        "arch": arch, "size": int(size), "image_hw": tuple(image_hw),
        "threads": int(threads) if threads is not None else old_threads,
        "runs": int(runs), "warmup": int(warmup), "ms": ms, "ratio": ratio, "detections": dets,
        "best": best, "target_met_best": ratio[best] <= target,
        "target_met_fp32": min(ratio["fp32_nchw"], ratio["fp32_channels_last"]) <= target,
    }

    say(f"segcore CPU benchmark: {image_hw[0]}x{image_hw[1]} RGB image, input {size}, "
        f"{result['threads']} torch threads, median of {max(1, runs)} runs after {warmup} warmup")
    say("random-init weights (timing only); both models forced to their max of 100 detections")
    say(f"{'model':<44}{'ms/image':>10}{'dets':>6}{'ours/MaskRCNN':>15}")
    for name, precision, channels_last in _VARIANTS:
        label = f"{arch} {precision} {'channels_last' if channels_last else 'NCHW'}"
        say(f"{label:<44}{ms[name]:>10.1f}{dets[name]:>6d}{ratio[name]:>15.3f}")
    say(f"{'maskrcnn_resnet50_fpn fp32 NCHW (torchvision)':<44}{ref:>10.1f}{dets['maskrcnn_fp32']:>6d}{1.0:>15.3f}")
    fp32_best = "fp32_nchw" if ratio["fp32_nchw"] <= ratio["fp32_channels_last"] else "fp32_channels_last"
    say(f"target: YOLACT <= 1/3 of Mask R-CNN latency: {'MET' if result['target_met_best'] else 'NOT MET'} "
        f"(best precision: {best}, ratio {ratio[best]:.3f})")
    say(f"target: YOLACT <= 1/3 of Mask R-CNN latency: {'MET' if result['target_met_fp32'] else 'NOT MET'} "
        f"(fp32: {fp32_best}, ratio {ratio[fp32_best]:.3f})")
    return result
