"""Box prompts, measured: model masks from a box vs OpenCV GrabCut on the same boxes.

``python -m annotator.bench_box_prompts [--iterations N] [--out DIR] ...``

Trains the tiny architecture of every family with a box-conditioned mask head
(``Family.box_prompt``: BlendMask, CenterMask) for a few hundred iterations on a one-class subset
of real images: the ``person`` instances of the coco-tiny train2017 images (``../shared/datasets/
coco-tiny``; 40 images with 140 non-crowd persons), from random init, on the CPU. Then, on the
held-back coco-tiny val2017 images, every non-crowd person of at least ``--min-area`` pixels
(default 32 x 32: COCO's medium and large) gets its ground-truth box as a prompt, and the mask
IoU with the ground truth is measured for

* each model, through :class:`segcore.prompt.BoxPrompter` (the app's box-to-mask tool);
* OpenCV GrabCut, :func:`annotator.tools.mask_ops.grabcut_box` (the app's fallback);
* the box itself filled (a reference: what a mask that ignores the image scores).

Prints one table (mean and median IoU per method, training and prompting time) and returns /
writes (``--out``) the figures as JSON. Everything runs on the CPU with ``--threads`` threads
(default 2); the default settings take about 5 minutes on 2 cores. A benchmark, not a test
(``tests/annotator/test_bench_box_prompts.py`` runs it on a tiny setting).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["DEFAULTS", "run_box_prompt_benchmark", "main"]

PERSON = 1  # COCO category id

DEFAULTS = {"iterations": 300, "input_size": 256, "batch_size": 4, "lr": 6e-3, "augment": 1, "min_area": 1024.0,
            "train_images": 0, "eval_images": 0, "threads": 2, "seed": 0}


def _coco_tiny() -> Path:
    return Path(__file__).resolve().parents[2] / "shared" / "datasets" / "coco-tiny"


def _person_records(json_path: Path, image_root: Path, limit: int) -> list[dict]:
    """Records of the images with at least one non-crowd person, person annotations only."""
    from segcore.data import load_coco_records

    records, _ = load_coco_records(json_path, image_root)
    out = []
    for rec in records:
        anns = [a for a in rec["annotations"] if a["category_id"] == PERSON and not a["iscrowd"]]
        if anns:
            out.append({**rec, "annotations": anns})
    return out[:limit] if limit > 0 else out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _train(arch: str, records: list[dict], categories: list[dict], opts: dict, out_dir: Path, log):
    import torch

    from segcore.engine import train
    from segcore.modeling.registry import build_model
    from segcore.predictor import Predictor

    torch.manual_seed(opts["seed"])
    model = build_model(arch, num_classes=1, input_size=opts["input_size"])
    iters = int(opts["iterations"])
    t0 = time.perf_counter()
    result = train(model, records, categories, iterations=iters, batch_size=opts["batch_size"], lr=opts["lr"],
                   warmup_iters=min(50, max(1, iters // 5)), steps=(int(iters * 0.8),), weight_decay=1e-4,
                   augment=bool(opts["augment"]), freeze_bn=False, device="cpu", amp=False, seed=opts["seed"],
                   out_dir=out_dir)
    seconds = time.perf_counter() - t0
    log(f"  {arch}: {result.iterations_done} iterations in {seconds:.0f} s, final losses "
        + ", ".join(f"{k} {v:.3f}" for k, v in result.final_losses.items()))
    return Predictor.from_checkpoint(result.checkpoint_path, device="cpu", precision="fp32"), seconds


def run_box_prompt_benchmark(*, coco_tiny: Path | None = None, out: Path | None = None, log=print,
                             **options) -> dict:
    """Train, prompt and measure (module docstring). ``options``: :data:`DEFAULTS` keys
    (``train_images`` / ``eval_images`` 0 = all). Returns ``{"settings", "instances", "methods":
    {name: {"mean_iou", "median_iou", "train_s", "ms_per_box"}}}``."""
    import torch

    from segcore.data import decode_segmentation, read_image_rgb
    from segcore.modeling.registry import FAMILIES
    from segcore.prompt import BoxPrompter

    from annotator.tools.mask_ops import grabcut_box

    opts = {**DEFAULTS, **options}
    unknown = set(opts) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown options: {sorted(unknown)}")
    root = Path(coco_tiny) if coco_tiny is not None else _coco_tiny()
    train_recs = _person_records(root / "annotations" / "instances_train2017.json", root / "train2017",
                                 int(opts["train_images"]))
    eval_recs = _person_records(root / "annotations" / "instances_val2017.json", root / "val2017",
                                int(opts["eval_images"]))
    categories = [{"id": PERSON, "name": "person"}]
    archs = [f.tiny_arch for f in FAMILIES.values() if f.box_prompt is not None]
    threads = torch.get_num_threads()
    torch.set_num_threads(int(opts["threads"]))
    n_train = sum(len(r["annotations"]) for r in train_recs)
    log(f"box prompts: {len(train_recs)} coco-tiny train2017 images ({n_train} persons), "
        f"{opts['iterations']} iterations from random init, input short side {opts['input_size']}")
    try:
        prompters, train_s = {}, {}
        with tempfile.TemporaryDirectory() as tmp:
            for arch in archs:
                predictor, train_s[arch] = _train(arch, train_recs, categories, opts, Path(tmp) / arch, log)
                prompters[arch] = BoxPrompter(predictor)
        methods = {**{a: [] for a in archs}, "grabcut": [], "box": []}
        seconds = {k: 0.0 for k in methods}
        for rec in eval_recs:
            image = read_image_rgb(rec["file_name"], (int(rec["height"]), int(rec["width"])))
            anns = [a for a in rec["annotations"] if float(a.get("area", 0.0)) >= float(opts["min_area"])]
            if not anns:
                continue
            h, w = image.shape[:2]
            gts = [decode_segmentation(a["segmentation"], h, w).astype(bool) for a in anns]
            boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in anns], dtype=np.float32)
            for arch, prompter in prompters.items():
                t0 = time.perf_counter()
                masks = prompter.predict_masks(image, boxes, [PERSON] * len(boxes))
                seconds[arch] += time.perf_counter() - t0
                methods[arch] += [_iou(m, g) for m, g in zip(masks, gts)]
            for box, gt in zip(boxes, gts):
                t0 = time.perf_counter()
                methods["grabcut"].append(_iou(grabcut_box(image, box), gt))
                seconds["grabcut"] += time.perf_counter() - t0
                filled = np.zeros((h, w), bool)
                x0, y0, x1, y1 = (int(round(float(v))) for v in box)
                filled[max(0, y0):y1, max(0, x0):x1] = True
                methods["box"].append(_iou(filled, gt))
    finally:
        torch.set_num_threads(threads)
    n = len(methods["box"])
    result = {"settings": {**opts, "archs": archs, "train_images": len(train_recs), "train_instances": n_train,
                           "eval_images": len(eval_recs)},
              "instances": n,
              "methods": {k: {"mean_iou": float(np.mean(v)) if v else float("nan"),
                              "median_iou": float(np.median(v)) if v else float("nan"),
                              "train_s": float(train_s.get(k, 0.0)),
                              "ms_per_box": 1000.0 * seconds[k] / max(1, n)} for k, v in methods.items()}}
    labels = {**{a: f"{a} (box prompt)" for a in archs}, "grabcut": "GrabCut (grabcut_box)",
              "box": "the box filled (reference)"}
    log(f"held back: {len(eval_recs)} coco-tiny val2017 images, {n} persons >= {opts['min_area']:.0f} px; "
        "ground-truth box as the prompt")
    log(f"{'method':34s} {'mean IoU':>8s} {'median':>8s} {'train s':>8s} {'ms/box':>8s}")
    for k, m in result["methods"].items():
        log(f"{labels[k]:34s} {m['mean_iou']:8.3f} {m['median_iou']:8.3f} {m['train_s']:8.0f} {m['ms_per_box']:8.1f}")
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "box_prompts.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m annotator.bench_box_prompts", description=__doc__.split("\n\n")[0])
    p.add_argument("--coco-tiny", type=Path, default=None,
                   help="coco-tiny folder (default ../shared/datasets/coco-tiny)")
    p.add_argument("--out", type=Path, default=None, help="write box_prompts.json there")
    for key, value in DEFAULTS.items():
        p.add_argument("--" + key.replace("_", "-"), type=type(value), default=value)
    args = vars(p.parse_args(argv))
    coco, out = args.pop("coco_tiny"), args.pop("out")
    run_box_prompt_benchmark(coco_tiny=coco, out=out, **args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
