"""Latency benchmark: segcore predictors next to torchvision's Mask R-CNN R50-FPN, in one run.

Measures the full path of the app (numpy RGB image -> preprocessing -> network ->
post-processing -> bool masks at the original resolution on the host) under
``torch.inference_mode``, median of ``runs`` after ``warmup`` runs, with the timed runs interleaved
round-robin over every (architecture, variant) and Mask R-CNN (so load from other processes hits
all of them alike).

CPU mode (``device="cpu"``, default), per architecture, through :class:`segcore.predictor.Predictor`:
fp32 NCHW, fp32 channels_last and bf16 channels_last (the predictor's bf16: autocast of the
backbone / FPN, prediction heads in fp32, see :mod:`segcore.ops.precision`; the default on CPUs with
native bf16); Mask R-CNN fp32. The table gives ms per image and the ratio ours / Mask R-CNN.

GPU mode (``device="cuda"``), per architecture and for Mask R-CNN, fp32 and fp16 (autocast), all
channels_last for ours: frames per second at batch 1 end to end (``Predictor.predict``, numpy in,
numpy masks out, ``torch.cuda.synchronize()`` after each call) and images per second with
``batch`` images per forward (``Predictor.predict_batch``; Mask R-CNN gets a list of ``batch``
images). ``torch.backends.cudnn.benchmark`` is switched on for the run and restored afterwards.

**Same input.** Mask R-CNN is ``torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None,
weights_backbone=None)``, fp32, its ``GeneralizedRCNNTransform`` (resize, normalise, pad to 32)
and mask pasting included:

* against YOLACT (square S x S input, aspect ratio not kept) with ``min_size = max_size = S``: it
  keeps the aspect ratio, so a 480 x 640 image runs at 412 x 550, fewer pixels than our 550 x
  550, which favours Mask R-CNN;
* against the short-side families (BlendMask, CenterMask) with ``min_size = S`` (our short side)
  and ``max_size`` = our long-side cap: the same resize rule (short side S, long side capped) and
  the same padding to a multiple of 32, so both networks see the same number of pixels
  (torchvision floors the resized sides where detectron2 rounds them: at most one pixel apart).

Both models use random-init weights (nothing is downloaded). Before timing, every BatchNorm's
running statistics are set from its own input on the benchmark image (one fp32 forward pass, in
order, :func:`_calibrate_batchnorm`; ours and Mask R-CNN alike): with the initial statistics (mean
0, variance 1) a random-init ResNet's activations grow layer by layer until every class score
saturates at 1.0, and FCOS's official cut, which keeps every detection tied with the 100th, then
keeps 600-800 BlendMask detections instead of 100 -- work no trained model does. To compare equal
work both are made to return their maximum number of detections: our score threshold is 0.0 (then NMS and
``max_detections`` bound the output: 100 for YOLACT and BlendMask, 50 for CenterMask) and Mask
R-CNN gets ``box_score_thresh=0.0``, ``box_detections_per_img=100``. With trained weights and
the default 0.05 threshold every model is faster; the ratio is what the targets are about.

Targets (each family's ``latency_target``; the "target" column, checked on the CPU ratio of each
variant; issue 17): ``yolact_r50_550`` <= 0.20 of Mask R-CNN, ``yolact_plus_r50_550`` <= 0.35,
``centermask_lite_v19`` and ``blendmask_rt_r50`` <= 0.15 each at their own inputs; other
BlendMasks <= 0.8 (the BlendMask paper's figure: about 20 % faster than Mask R-CNN). On a GPU:
``yolact_r101_550`` >= 150 fps at batch 1 end to end (stated for an H100).

Run: ``python -c "from segcore.bench import run_benchmark; run_benchmark()"`` (YOLACT R-50 and
YOLACT++ R-50 at 550 on the CPU), or e.g. ``run_benchmark(archs=["centermask_lite_v19",
"centermask_lite_v39", "centermask_v39"])`` (each at its own default input).
"""

from __future__ import annotations

import copy
import inspect
import statistics
import time
from collections.abc import Sequence
from typing import Callable

import numpy as np
import torch

__all__ = ["run_benchmark", "default_archs"]

def default_archs() -> tuple[str, ...]:
    """Architectures of ``run_benchmark()`` without arguments: every family's ``bench_archs``
    (issue 3: YOLACT and YOLACT++ R-50)."""
    from segcore.modeling.registry import FAMILIES

    return tuple(a for fam in FAMILIES.values() for a in fam.bench_archs)


_CPU_VARIANTS = (("fp32_nchw", "fp32", False), ("fp32_channels_last", "fp32", True),
                 ("bf16_channels_last", "bf16", True))
_GPU_PRECISIONS = ("fp32", "fp16")


def _cpu_target(arch: str):
    """The family's CPU latency target for ``arch`` (:class:`segcore.modeling.registry.LatencyTarget`) or None."""
    from segcore.modeling.registry import family_of_arch

    return family_of_arch(arch).latency_target(arch)


def _gpu_fps_target(arch: str) -> float | None:
    from segcore.modeling.registry import family_of_arch

    return family_of_arch(arch).gpu_fps_targets.get(arch)


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


def _calibrate_batchnorm(model: torch.nn.Module, run: Callable[[], object]) -> int:
    """Set the running statistics of every BatchNorm of ``model`` (any module with
    ``running_mean`` / ``running_var`` buffers: ``nn.BatchNorm2d``, torchvision's and our
    ``FrozenBatchNorm2d``) to the per-channel mean and variance of its input in one call of
    ``run`` (which must run ``model``'s forward, unfolded, in fp32). Layers are set in the order
    the forward reaches them, so each sees inputs already normalised by the layers before it.
    Returns the number of layers set. Used only by the benchmark (random-init weights)."""
    def set_stats(module, args):
        x = args[0]
        if torch.is_tensor(x) and x.dim() == 4 and x.shape[1] == module.running_mean.numel():
            xf = x.detach().float()
            module.running_mean.copy_(xf.mean(dim=(0, 2, 3)))
            module.running_var.copy_(xf.var(dim=(0, 2, 3), unbiased=False))
            done.add(module)

    done: set = set()
    hooks = [m.register_forward_pre_hook(set_stats) for m in model.modules()
             if isinstance(getattr(m, "running_mean", None), torch.Tensor)
             and isinstance(getattr(m, "running_var", None), torch.Tensor)]
    try:
        with torch.inference_mode():
            run()
    finally:
        for h in hooks:
            h.remove()
    return len(done)


def _calibrate_ours(model: torch.nn.Module, categories: list[dict], image: np.ndarray,
                    score_threshold: float) -> int:
    """:func:`_calibrate_batchnorm` of one of our models (in place, on the CPU) through the
    predictor's whole path in fp32, BatchNorm unfolded."""
    from segcore.predictor import Predictor

    pred = Predictor(model, categories, device="cpu", precision="fp32", channels_last=False, fold_bn=False,
                     adapt_scale=False, _own_model=True)
    return _calibrate_batchnorm(model, lambda: pred.predict(image, score_threshold=score_threshold))


def _build(arch: str, size: int | None, num_classes: int):
    """Our model at ``size`` (None = the builder's default input). Short-side families keep their
    long-side cap in proportion: ``max_size = round(size x default max_size / default size)``."""
    from segcore.modeling.registry import ARCHITECTURES, build_model

    if arch not in ARCHITECTURES:
        build_model(arch, num_classes=num_classes)  # raises ValueError listing the known names
    kwargs: dict = {}
    if size is not None:
        params = inspect.signature(ARCHITECTURES[arch]).parameters
        kwargs["input_size"] = int(size)
        if "max_size" in params and "input_size" in params:
            d_in, d_max = params["input_size"].default, params["max_size"].default
            if isinstance(d_in, int) and isinstance(d_max, int) and d_in > 0:
                kwargs["max_size"] = max(int(size), int(round(size * d_max / d_in)))
    return build_model(arch, num_classes=num_classes, **kwargs).eval()


def _maskrcnn_input(model) -> tuple[int, int]:
    """``(min_size, max_size)`` giving Mask R-CNN the same input as ``model`` (module docstring)."""
    info = model.info
    if info.input_policy == "short_side":
        return info.input_size, info.max_size
    return info.input_size, info.input_size


def _mrcnn_label(key: tuple[int, int]) -> str:
    return f"maskrcnn_r50_fpn@{key[0]}" if key[0] == key[1] else f"maskrcnn_r50_fpn@{key[0]}/{key[1]}"


def _input_desc(model, image_hw: tuple[int, int]) -> str:
    from segcore.data.transforms import short_side_size

    lo, hi = _maskrcnn_input(model)
    if model.info.input_policy == "square":
        return f"{lo}x{lo}"
    h, w = short_side_size(image_hw[0], image_hw[1], lo, hi)
    return f"{h}x{w}"


def _mrcnn_desc(key: tuple[int, int], image_hw: tuple[int, int]) -> str:
    scale = min(key[0] / min(image_hw), key[1] / max(image_hw))
    return f"{int(image_hw[0] * scale)}x{int(image_hw[1] * scale)}"


def run_benchmark(arch: str | None = None, size: int | None = None, runs: int = 5, warmup: int = 2,
                  threads: int | None = None, print_fn: Callable[[str], None] | None = print,
                  image_hw: tuple[int, int] = (480, 640), num_classes: int = 80, seed: int = 0, *,
                  archs: Sequence[str] | str | None = None, device: str = "cpu", batch: int = 8,
                  score_threshold: float = 0.0) -> dict:
    """Time our architectures and Mask R-CNN in one interleaved run and print one table.

    Args:
        arch: one architecture (the pre-multi-architecture call ``run_benchmark(arch=...)``);
            combined with ``archs`` if both are given.
        size: network input side S for every architecture (YOLACT: S x S; short-side families:
            short side S, long-side cap scaled in proportion); None = each architecture's default
            (550 for ``yolact_*_550``, 800 / 1333 for ``blendmask_r50``, 600 / 1000 for
            ``centermask_lite_*``, ...).
        runs: timed runs per variant (median reported).
        warmup: untimed runs before timing.
        threads: ``torch.set_num_threads`` for the run (restored afterwards); None = unchanged.
        print_fn: receives each output line; None = silent.
        image_hw: ``(H, W)`` of the synthetic uint8 RGB test images (seeded noise).
        num_classes: K for our models (Mask R-CNN uses torchvision's 91 COCO classes).
        seed: seed for the weights and the images.
        archs: architectures to measure (a list, or a comma-separated string); None and no
            ``arch`` = :func:`default_archs`.
        device: ``"cpu"`` (latency table) or ``"cuda"`` / ``"cuda:N"`` (fps table).
        batch: GPU mode: images per forward for the batched throughput (B).
        score_threshold: our score threshold (0.0 = every model returns its maximum number of
            detections, see the module docstring).

    Returns:
        ``{"device", "size", "image_hw", "threads", "runs", "warmup", "archs": {arch: result},
        "maskrcnn": {label: {...}}, "rows": [row, ...]}``; every row of the printed table is a dict
        in ``rows`` (``arch``, ``variant``, ``input``, ``ms``, ``dets``, ``ratio`` / fps fields,
        ``target``, ``met``).

        CPU: ``archs[arch]`` = ``{"arch", "size", "input", "ms": {variant: float}, "ratio":
        {variant: ours / Mask R-CNN}, "detections": {variant: int}, "best": variant,
        "target": str | None, "target_met_best": bool | None, "target_met_fp32": bool | None}``
        with variants ``fp32_nchw``, ``fp32_channels_last``, ``bf16_channels_last`` and
        ``maskrcnn_fp32`` (the Mask R-CNN at this architecture's input; ``ratio`` has ours only).
        When exactly one architecture is measured on the CPU its result's keys are also at the
        top level (the single-architecture return value of earlier versions).

        GPU: ``archs[arch]`` = ``{"arch", "input", "batch", "fps_batch1": {precision: float},
        "ms_batch1": {...}, "images_per_s": {precision: float}, "ms_batched": {...},
        "fps_target": float | None, "fps_target_met": bool | None}`` for precisions ``fp32``,
        ``fp16``; ``maskrcnn`` the same for Mask R-CNN per input, plus ``"device_name"``.

    Raises:
        ValueError: unknown architecture, bad device (CUDA asked for but missing), ``batch`` < 1.
    """
    import segcore.modeling  # noqa: F401  (registers the architectures)
    from segcore.device import resolve_device

    names: list[str] = []
    if arch is not None:
        names.append(arch)
    if isinstance(archs, str):
        archs = [a for a in (x.strip() for x in archs.split(",")) if a]
    if archs:
        names.extend(a for a in archs if a not in names)
    if not names:
        names = list(default_archs())
    dev = resolve_device(device)
    if int(batch) < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    say = print_fn or (lambda _line: None)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        images = [rng.integers(0, 256, size=(image_hw[0], image_hw[1], 3), dtype=np.uint8)
                  for _ in range(int(batch) if dev.type == "cuda" else 1)]
        categories = [{"id": i + 1, "name": f"class{i + 1}"} for i in range(num_classes)]
        models = {name: _build(name, size, num_classes) for name in names}
        for model in models.values():
            _calibrate_ours(model, categories, images[0], float(score_threshold))
        if dev.type == "cuda":
            result = _run_gpu(models, categories, images, dev, runs, warmup, int(batch), float(score_threshold), say)
        else:
            result = _run_cpu(models, categories, images[0], runs, warmup, float(score_threshold), say)
    finally:
        torch.set_num_threads(old_threads)
    result.update({"device": str(dev), "size": None if size is None else int(size), "image_hw": tuple(image_hw),
                   "threads": int(threads) if threads is not None else old_threads,
                   "runs": int(runs), "warmup": int(warmup)})
    if dev.type == "cpu" and len(names) == 1:
        single = dict(result["archs"][names[0]])
        single["size"] = int(models[names[0]].info.input_size)
        result.update(single)
    return result


def _maskrcnn(key: tuple[int, int], device: torch.device):
    import torchvision

    return torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, min_size=key[0], max_size=key[1],
        box_score_thresh=0.0, box_detections_per_img=100).eval().to(device)


def _run_cpu(models: dict, categories: list[dict], image: np.ndarray, runs: int, warmup: int,
             score_threshold: float, say: Callable[[str], None]) -> dict:
    from segcore.predictor import Predictor

    runners: dict[str, Callable[[], int]] = {}
    keys = {name: _maskrcnn_input(m) for name, m in models.items()}
    for key in dict.fromkeys(keys.values()):
        net = _maskrcnn(key, torch.device("cpu"))

        def run_mrcnn(net=net) -> int:
            with torch.inference_mode():
                x = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)
                out = net([x])[0]
                masks = out["masks"][:, 0] > 0.5  # [N, H, W] bool at the original resolution
                return int(masks.shape[0])

        _calibrate_batchnorm(net, run_mrcnn)
        runners[_mrcnn_label(key)] = run_mrcnn
    for name, base in models.items():
        for variant, precision, channels_last in _CPU_VARIANTS:
            pred = Predictor(copy.deepcopy(base), categories, device="cpu", precision=precision,
                             channels_last=channels_last)
            runners[f"{name}/{variant}"] = lambda p=pred: len(p.predict(image, score_threshold=score_threshold))
    ms, dets = _interleaved_median_ms(runners, runs, warmup)

    archs: dict[str, dict] = {}
    rows: list[dict] = []
    for name, model in models.items():
        ref_label = _mrcnn_label(keys[name])
        ref = ms[ref_label]
        a_ms = {v: ms[f"{name}/{v}"] for v, _, _ in _CPU_VARIANTS}
        a_ms["maskrcnn_fp32"] = ref
        ratio = {v: a_ms[v] / ref for v, _, _ in _CPU_VARIANTS}
        best = min(ratio, key=ratio.get)
        target = _cpu_target(name)
        fp32_best = "fp32_nchw" if ratio["fp32_nchw"] <= ratio["fp32_channels_last"] else "fp32_channels_last"
        archs[name] = {
            "arch": name, "input": _input_desc(model, image.shape[:2]), "ms": a_ms, "ratio": ratio,
            "detections": {**{v: dets[f"{name}/{v}"] for v, _, _ in _CPU_VARIANTS}, "maskrcnn_fp32": dets[ref_label]},
            "best": best, "fp32_best": fp32_best, "maskrcnn": ref_label,
            "target": target.label if target else None, "target_text": target.what if target else None,
            "target_met_best": target.met(ratio[best]) if target else None,
            "target_met_fp32": target.met(ratio[fp32_best]) if target else None,
        }
        for variant, precision, channels_last in _CPU_VARIANTS:
            rows.append({"arch": name, "variant": f"{precision} {'channels_last' if channels_last else 'NCHW'}",
                         "input": archs[name]["input"], "ms": a_ms[variant], "dets": dets[f"{name}/{variant}"],
                         "ratio": ratio[variant], "target": target.label if target else "",
                         "met": target.met(ratio[variant]) if target else None})
    maskrcnn = {}
    for key in dict.fromkeys(keys.values()):
        label = _mrcnn_label(key)
        maskrcnn[label] = {"min_size": key[0], "max_size": key[1], "ms": ms[label], "detections": dets[label]}
        rows.append({"arch": label, "variant": "fp32 NCHW (torchvision)", "input": _mrcnn_desc(key, image.shape[:2]),
                     "ms": ms[label], "dets": dets[label], "ratio": 1.0, "target": "", "met": None})

    say(f"segcore CPU benchmark: {image.shape[0]}x{image.shape[1]} RGB image, {torch.get_num_threads()} torch "
        f"threads, median of {max(1, runs)} runs after {warmup} warmup, all variants interleaved")
    say("random-init weights, BatchNorm statistics set from the image (timing only); "
        f"score threshold {score_threshold:g} (0 = every model returns its maximum of detections); "
        "Mask R-CNN at the same input (see segcore.bench)")
    say(f"{'arch':<28}{'variant':<26}{'input':>10}{'ms/image':>10}{'dets':>6}{'vs MaskRCNN':>13}  target")
    for r in rows:
        tgt = f"{r['target']} {'MET' if r['met'] else 'NOT MET'}" if r["met"] is not None else ""
        say(f"{r['arch']:<28}{r['variant']:<26}{r['input']:>10}{r['ms']:>10.1f}{r['dets']:>6d}"
            f"{r['ratio']:>13.3f}  {tgt}")
    for name, res in archs.items():
        if res["target"] is None:
            continue
        what = res["target_text"]
        say(f"target: {what}: {'MET' if res['target_met_best'] else 'NOT MET'} "
            f"({name}, best precision: {res['best']}, ratio {res['ratio'][res['best']]:.3f})")
        say(f"target: {what}: {'MET' if res['target_met_fp32'] else 'NOT MET'} "
            f"({name}, fp32: {res['fp32_best']}, ratio {res['ratio'][res['fp32_best']]:.3f})")
    return {"archs": archs, "maskrcnn": maskrcnn, "rows": rows}


def _run_gpu(models: dict, categories: list[dict], images: list[np.ndarray], dev: torch.device, runs: int,
             warmup: int, batch: int, score_threshold: float, say: Callable[[str], None]) -> dict:
    """The fps table. Written for CUDA; the device is only used generically (pinned memory, syncs
    and cudnn.benchmark on CUDA only), so the same code runs on the CPU in the tests."""
    from segcore.predictor import Predictor

    cuda = dev.type == "cuda"

    def synced(fn: Callable[[], int]) -> Callable[[], int]:
        def run() -> int:
            n = fn()
            if cuda:
                torch.cuda.synchronize(dev)
            return n
        return run

    def upload(im: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(im)
        return t.pin_memory().to(dev, non_blocking=True) if cuda else t.to(dev)

    runners: dict[str, Callable[[], int]] = {}
    keys = {name: _maskrcnn_input(m) for name, m in models.items()}
    for key in dict.fromkeys(keys.values()):
        net = _maskrcnn(key, dev)
        label = _mrcnn_label(key)
        _calibrate_batchnorm(net, lambda net=net: net([upload(images[0]).permute(2, 0, 1).float().div_(255.0)]))
        for precision in _GPU_PRECISIONS:
            def run_mrcnn(ims: list[np.ndarray], net=net, precision=precision) -> int:
                with torch.inference_mode():
                    xs = [upload(im).permute(2, 0, 1).float().div_(255.0) for im in ims]
                    amp = torch.autocast(dev.type, dtype=torch.float16, enabled=precision == "fp16")
                    with amp:
                        outs = net(xs)
                    return sum(int((o["masks"][:, 0] > 0.5).cpu().shape[0]) for o in outs)

            runners[f"{label}/{precision}/b1"] = synced(lambda f=run_mrcnn: f(images[:1]))
            runners[f"{label}/{precision}/bB"] = synced(lambda f=run_mrcnn: f(images))
    for name, base in models.items():
        for precision in _GPU_PRECISIONS:
            pred = Predictor(copy.deepcopy(base), categories, device=dev, precision=precision, channels_last=True)
            runners[f"{name}/{precision}/b1"] = synced(
                lambda p=pred: len(p.predict(images[0], score_threshold=score_threshold)))
            runners[f"{name}/{precision}/bB"] = synced(
                lambda p=pred: sum(len(r) for r in p.predict_batch(images, score_threshold=score_threshold)))
    old_bench = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = cuda or old_bench
    try:
        ms, dets = _interleaved_median_ms(runners, runs, warmup)
    finally:
        torch.backends.cudnn.benchmark = old_bench

    def entry(prefix: str) -> dict:
        return {"ms_batch1": {p: ms[f"{prefix}/{p}/b1"] for p in _GPU_PRECISIONS},
                "fps_batch1": {p: 1000.0 / ms[f"{prefix}/{p}/b1"] for p in _GPU_PRECISIONS},
                "ms_batched": {p: ms[f"{prefix}/{p}/bB"] for p in _GPU_PRECISIONS},
                "images_per_s": {p: batch * 1000.0 / ms[f"{prefix}/{p}/bB"] for p in _GPU_PRECISIONS},
                "detections_batch1": {p: dets[f"{prefix}/{p}/b1"] for p in _GPU_PRECISIONS},
                "batch": batch}

    archs, maskrcnn, rows = {}, {}, []
    for name, model in models.items():
        res = entry(name)
        target = _gpu_fps_target(name)
        res.update({"arch": name, "input": _input_desc(model, images[0].shape[:2]),
                    "maskrcnn": _mrcnn_label(keys[name]),
                    "fps_target": target,
                    "fps_target_met": (max(res["fps_batch1"].values()) >= target) if target else None})
        archs[name] = res
    for key in dict.fromkeys(keys.values()):
        label = _mrcnn_label(key)
        maskrcnn[label] = {"min_size": key[0], "max_size": key[1], "input": _mrcnn_desc(key, images[0].shape[:2]),
                           **entry(label)}
    for name, res in list(archs.items()) + list(maskrcnn.items()):
        ref = maskrcnn[res["maskrcnn"]] if "maskrcnn" in res else res
        for p in _GPU_PRECISIONS:
            target = res.get("fps_target")
            rows.append({"arch": name, "variant": p, "input": res["input"], "ms": res["ms_batch1"][p],
                         "fps_batch1": res["fps_batch1"][p], "images_per_s": res["images_per_s"][p],
                         "dets": res["detections_batch1"][p],
                         "ratio": res["fps_batch1"][p] / ref["fps_batch1"][p],
                         "target": f">= {target:g} fps" if target else "",
                         "met": (res["fps_batch1"][p] >= target) if target else None})

    device_name = torch.cuda.get_device_name(dev) if cuda else str(dev)
    say(f"segcore GPU benchmark on {device_name}: {images[0].shape[0]}x{images[0].shape[1]} RGB images, median of "
        f"{max(1, runs)} runs after {warmup} warmup, interleaved; batch 1 = numpy image in -> bool masks on the "
        f"host (synchronised); batched = {batch} images per forward; cudnn.benchmark on")
    say("random-init weights, BatchNorm statistics set from the image (timing only); "
        f"score threshold {score_threshold:g}; ours channels_last; fp16 = torch.autocast float16")
    say(f"{'arch':<28}{'prec':<6}{'input':>10}{'ms b1':>9}{'fps b1':>9}{f'img/s b{batch}':>12}{'dets':>6}"
        f"{'fps/MaskRCNN':>14}  target")
    for r in rows:
        tgt = f"{r['target']} {'MET' if r['met'] else 'NOT MET'}" if r["met"] is not None else ""
        say(f"{r['arch']:<28}{r['variant']:<6}{r['input']:>10}{r['ms']:>9.2f}{r['fps_batch1']:>9.1f}"
            f"{r['images_per_s']:>12.1f}{r['dets']:>6d}{r['ratio']:>14.2f}  {tgt}")
    for name, res in archs.items():
        if res["fps_target"]:
            best = max(res["fps_batch1"], key=res["fps_batch1"].get)
            say(f"target: {name} >= {res['fps_target']:g} fps at batch 1 end to end (H100): "
                f"{'MET' if res['fps_target_met'] else 'NOT MET'} ({best}: {res['fps_batch1'][best]:.1f} fps "
                f"on {device_name})")
    return {"archs": archs, "maskrcnn": maskrcnn, "rows": rows, "device_name": device_name}
