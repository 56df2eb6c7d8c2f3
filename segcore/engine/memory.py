"""Training speed and memory of an architecture, measured, and a batch that fits the machine.

One iteration of ``centermask_v99`` at batch 4 on a CPU reaches 15 GB resident: a laptop with
16 GB swaps or is killed minutes into a run. So before a CPU run at the default batch the train
job measures (:func:`probe`) the peak resident memory of two training iterations at batch 1 and
at batch 2, each in a fresh child process (peak resident memory, ``VmHWM``, is per process),
and takes the largest batch up to the requested one that fits in :data:`MEMORY_SHARE` of the
memory available now (:func:`fit_batch`), or refuses in one line.

The same measurement, at the default batch and with the iteration time, is ``annotator bench
--train`` (:func:`run_train_benchmark`). Inputs are synthetic (random images with a few elliptic
instances each) at the architecture's training input size, so no data set is needed; the
precision is what :func:`segcore.engine.train` picks (bf16 on a CPU with native bf16 for inputs
of 256 px or more).

``python -m segcore.engine.memory ARCH --batch B [--side S] [--iterations N]`` is the child: it
prints one JSON line ``{"arch", "batch", "side", "iterations", "seconds_per_iteration",
"peak_mb", "amp"}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["TrainProbe", "probe", "fit_batch", "available_mb", "run_train_benchmark", "MEMORY_SHARE"]

#: Share of the available memory a training run may plan to use.
MEMORY_SHARE = 0.8


@dataclass(frozen=True)
class TrainProbe:
    """Measured training cost: ``base_mb`` (model, optimizer, runtime) + ``per_image_mb`` x batch
    = peak resident memory (MB); ``seconds_per_iteration`` at the probed batch (the larger)."""

    arch: str
    side: int
    base_mb: float
    per_image_mb: float
    seconds_per_iteration: float

    def peak_mb(self, batch: int) -> float:
        return self.base_mb + self.per_image_mb * int(batch)


def _status_kb(field: str, path: str = "/proc/self/status") -> int:
    with open(path) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in {path}")


def available_mb() -> float:
    """Memory available for new work now (``MemAvailable`` of ``/proc/meminfo``), MB."""
    return _status_kb("MemAvailable", "/proc/meminfo") / 1024.0


def _synthetic_records(folder: Path, side: int, n: int, seed: int = 0) -> list[dict]:
    """``n`` random ``side x side`` images with 3-6 elliptic instances each, as segcore records."""
    import cv2
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    records = []
    for k in range(n):
        image = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        anns = []
        for _ in range(int(rng.integers(3, 7))):
            m = np.zeros((side, side), np.uint8)
            cx, cy = (int(v) for v in rng.integers(side // 8, side - side // 8, 2))
            ax, ay = (int(v) for v in rng.integers(side // 16, side // 5, 2))
            cv2.ellipse(m, (cx, cy), (ax, ay), float(rng.uniform(0, 180)), 0, 360, 1, -1)
            image[m.astype(bool)] = rng.integers(0, 256, 3)
            rle = mask_utils.encode(np.asfortranarray(m))
            rle["counts"] = rle["counts"].decode("ascii")
            x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
            anns.append({"bbox": [x, y, w, h], "category_id": 1, "segmentation": rle, "iscrowd": 0})
        path = folder / f"{k}.png"
        cv2.imwrite(str(path), image)
        records.append({"file_name": str(path), "image_id": k, "height": side, "width": side, "annotations": anns})
    return records


def _train_side(info) -> int:
    return int(info.input_size if info.input_policy == "square" else min(info.train_sizes or (info.input_size,)))


def measure(arch: str, *, batch: int, side: int | None = None, iterations: int = 3, arch_kwargs: dict | None = None,
            threads: int | None = None) -> dict:
    """Train ``arch`` (random init) for ``iterations`` on synthetic data in *this* process and
    return ``{"arch", "batch", "side", "iterations", "seconds_per_iteration" (median of the
    iterations after the first), "peak_mb" (this process's peak resident memory), "amp"}``.
    Run it in a fresh process for a meaningful peak (:func:`probe` does)."""
    import torch

    from segcore.checkpoints import read_checkpoint
    from segcore.engine import train
    from segcore.modeling.registry import build_model

    if threads:
        torch.set_num_threads(int(threads))
    kwargs = dict(arch_kwargs or {})
    model = build_model(arch, num_classes=1, **kwargs)
    side = int(side or _train_side(model.info))
    with tempfile.TemporaryDirectory(prefix="segcore-probe-") as tmp:
        records = _synthetic_records(Path(tmp), side, max(2, batch))
        stamps: list[float] = []
        res = train(model, records, [{"id": 1, "name": "thing"}], iterations=int(iterations), batch_size=int(batch),
                    warmup_iters=0, device="cpu", out_dir=Path(tmp) / "out", augment=False,
                    progress=lambda info: stamps.append(time.perf_counter()))
        amp = read_checkpoint(res.checkpoint_path)["meta"]["amp"]
    steps = np.diff(stamps) if len(stamps) > 1 else np.array([float("nan")])
    return {"arch": arch, "batch": int(batch), "side": side, "iterations": int(iterations),
            "seconds_per_iteration": float(np.median(steps)), "peak_mb": _status_kb("VmHWM") / 1024.0, "amp": amp}


def _child(arch: str, batch: int, side: int | None, iterations: int, arch_kwargs: dict | None, threads: int | None,
           timeout: float) -> dict:
    cmd = [sys.executable, "-m", "segcore.engine.memory", arch, "--batch", str(batch), "--iterations", str(iterations),
           "--kwargs", json.dumps(arch_kwargs or {})]
    if side:
        cmd += ["--side", str(side)]
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{arch}: the training probe failed (exit {out.returncode}): "
                           f"{(out.stderr.strip().splitlines() or ['no output'])[-1]}")
    return json.loads(lines[-1])


def probe(arch: str, *, side: int | None = None, arch_kwargs: dict | None = None, threads: int | None = None,
          timeout: float = 600.0) -> TrainProbe:
    """Peak resident memory of training ``arch`` at batch 1 and 2 (two child processes, two
    iterations each) -> :class:`TrainProbe` (a straight line through the two points).

    Raises:
        RuntimeError: a child failed or timed out (the message says why, in one line).
    """
    try:
        one = _child(arch, 1, side, 2, arch_kwargs, threads, timeout)
        two = _child(arch, 2, side, 2, arch_kwargs, threads, timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{arch}: the training probe took more than {timeout:.0f} s") from None
    per_image = max(1.0, two["peak_mb"] - one["peak_mb"])
    return TrainProbe(arch=arch, side=int(one["side"]), base_mb=max(0.0, one["peak_mb"] - per_image),
                      per_image_mb=per_image, seconds_per_iteration=float(two["seconds_per_iteration"]))


def fit_batch(requested: int, cost: TrainProbe, available: float, *, share: float = MEMORY_SHARE) -> int:
    """The largest batch <= ``requested`` whose peak (``cost.peak_mb(batch)``) fits in ``share`` of
    ``available`` MB.

    Raises:
        ValueError: not even batch 1 fits (one line: what it needs, what there is).
    """
    budget = share * float(available)
    batch = int(requested)
    while batch >= 1 and cost.peak_mb(batch) > budget:
        batch -= 1
    if batch < 1:
        raise ValueError(f"{cost.arch}: training at {cost.side} px needs about {cost.peak_mb(1) / 1024:.1f} GB at "
                         f"batch 1, but only {available / 1024:.1f} GB are available ({int(share * 100)} % usable); "
                         "choose a smaller architecture or input size, or close other programs")
    return batch


def run_train_benchmark(archs, *, batch: int = 4, iterations: int = 6, threads: int | None = None,
                        print_fn=print) -> list[dict]:
    """``annotator bench --train``: per architecture, a fresh child trains ``iterations`` at
    ``batch`` on synthetic data at the architecture's training input size; prints iterations/s
    and peak resident memory. Returns the rows."""
    rows = []
    print_fn(f"training on the CPU, batch {batch}, synthetic data at each architecture's training input size, "
             f"{iterations} iterations (median of the last {iterations - 1})")
    print_fn(f"{'arch':<24} {'input':>6} {'precision':>9} {'it/s':>7} {'s/it':>7} {'peak MB':>9}")
    for arch in archs:
        try:
            r = _child(arch, batch, None, iterations, None, threads, timeout=3600)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print_fn(f"{arch:<24} failed: {exc}")
            continue
        rows.append(r)
        spi = r["seconds_per_iteration"]
        print_fn(f"{arch:<24} {r['side']:>6} {r['amp']:>9} {1 / spi:>7.2f} {spi:>7.2f} {r['peak_mb']:>9.0f}")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m segcore.engine.memory", description=__doc__.split("\n")[0])
    ap.add_argument("arch")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--side", type=int)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--kwargs", default="{}", help="builder keyword arguments as JSON")
    a = ap.parse_args(argv)
    print(json.dumps(measure(a.arch, batch=a.batch, side=a.side, iterations=a.iterations,
                             arch_kwargs=json.loads(a.kwargs), threads=a.threads)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
