"""Big-image benchmark: pre-label one large photo on the CPU and report time and peak memory.

``python -m segcore.modeling.yolact.bench_big_image --megapixels 100`` writes a synthetic JPEG of
that size (smooth colour noise, square), then in a fresh process: reads it
(:func:`segcore.data.dataset.read_image_rgb`), predicts with ``yolact_tiny`` at score threshold 0
and encodes every mask to RLE (``Prediction.to_rle``), the work of pre-labelling one image. The
model's box regression is zeroed, so its 100 detections are prior boxes (object-sized, as a trained
model's, where random weights give a few image-sized boxes); the prototype masks are random. The
peak is the process's ``VmHWM`` (Linux), the base its ``VmRSS`` with the model loaded.

The peer, measured in the same run at ``--peer-megapixels`` (default 12 MP, small enough to fit),
is the whole-image mask path (``Predictor(box_local=False)``: N x H x W bool masks, as before box-local
masks): the printed ratio is its memory growth over the box-local path's at the same size.

Targets (issue 17): 100 MP with 100 detections in under 10 s and 2 GB peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["run_big_image_benchmark"]


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def _write_image(path: Path, side: int) -> None:
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (side // 64 + 1, side // 64 + 1, 3), dtype=np.uint8)
    cv2.imwrite(str(path), cv2.resize(small, (side, side), interpolation=cv2.INTER_CUBIC),
                [cv2.IMWRITE_JPEG_QUALITY, 90])


def _measure(path: str, box_local: bool) -> dict:
    """In this process: read, predict, encode; times in s and memory in MB."""
    import numpy as np
    import torch

    from segcore.data.dataset import read_image_rgb
    from segcore.modeling import build_model
    from segcore.predictor import Predictor

    torch.manual_seed(0)
    model = build_model("yolact_tiny", num_classes=1)
    with torch.no_grad():  # detections = prior boxes (module docstring)
        model.prediction_layers[0].bbox_layer.weight.zero_()
        model.prediction_layers[0].bbox_layer.bias.zero_()
    pred = Predictor(model, [{"id": 1, "name": "object"}], device="cpu", precision="fp32", box_local=box_local)
    pred.predict(np.zeros((64, 64, 3), np.uint8))
    base = _status_mb("VmRSS")
    t0 = time.perf_counter()
    image = read_image_rgb(path)
    t1 = time.perf_counter()
    out = pred.predict(image, score_threshold=0.0)
    t2 = time.perf_counter()
    rles = out.to_rle()
    t3 = time.perf_counter()
    return {"height": int(image.shape[0]), "width": int(image.shape[1]), "detections": len(out), "rles": len(rles),
            "read_s": t1 - t0, "predict_s": t2 - t1, "rle_s": t3 - t2, "total_s": t3 - t0,
            "base_mb": base, "peak_mb": _status_mb("VmHWM")}


def _child(path: Path, box_local: bool) -> dict:
    cmd = [sys.executable, "-m", "segcore.modeling.yolact.bench_big_image", "--child", str(path)]
    if not box_local:
        cmd.append("--whole")
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return {"error": (res.stderr.strip().splitlines() or ["killed"])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def run_big_image_benchmark(megapixels: float = 100.0, peer_megapixels: float = 12.0) -> dict:
    """Measure the box-local path at ``megapixels`` and both paths at ``peer_megapixels``; print
    one line each and the targets. Returns ``{"big": {...}, "peer_box_local": {...}, "peer_whole": {...}}``."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, mp, box_local in (("big", megapixels, True), ("peer_box_local", peer_megapixels, True),
                                   ("peer_whole", peer_megapixels, False)):
            side = int(round((mp * 1e6) ** 0.5))
            path = Path(tmp) / f"{side}.jpg"
            if not path.exists():
                _write_image(path, side)
            r = results[key] = _child(path, box_local)
            label = f"{side * side / 1e6:.0f} MP {'box-local' if box_local else 'whole-image'} masks"
            if "error" in r:
                print(f"{label}: failed ({r['error']})")
                continue
            print(f"{label}: {r['detections']} detections, read {r['read_s']:.2f} s, predict {r['predict_s']:.2f} s, "
                  f"RLE {r['rle_s']:.2f} s, total {r['total_s']:.2f} s; peak resident {r['peak_mb'] / 1024:.2f} GB "
                  f"(+{(r['peak_mb'] - r['base_mb']) / 1024:.2f} GB over the loaded model)")
    big, loc, whole = results["big"], results["peer_box_local"], results["peer_whole"]
    if "error" not in big:
        print(f"targets at {megapixels:.0f} MP: total < 10 s {'MET' if big['total_s'] < 10 else 'NOT MET'}, "
              f"peak < 2 GB {'MET' if big['peak_mb'] < 2048 else 'NOT MET'}")
    if "error" not in loc and "error" not in whole:
        grow = lambda r: max(1.0, r["peak_mb"] - r["base_mb"])  # noqa: E731
        print(f"memory growth at {peer_megapixels:.0f} MP, box-local / whole-image: {grow(loc) / grow(whole):.3f}")
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--megapixels", type=float, default=100.0)
    ap.add_argument("--peer-megapixels", type=float, default=12.0)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_measure(args.child, box_local=not args.whole)))
        return 0
    run_big_image_benchmark(args.megapixels, args.peer_megapixels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
