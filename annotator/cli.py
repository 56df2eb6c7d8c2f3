"""The ``annotator`` command line.

Sub-commands (README "CLI" lists them with examples)::

    annotator new PROJECT --images DIR
    annotator import PROJECT --coco ANN.json [--image-root DIR]
    annotator import PROJECT --format yolo|labelme|via|masks PATH [--image-root DIR] [--class-attribute A]
    annotator train PROJECT [--arch NAME] [--init CKPT|VERSION] [--iterations N | --max-minutes M]
                    [--device auto|cpu|cuda] [--augment photo|topdown|none] [--max-detections N] [--out DIR]
    annotator prelabel PROJECT --model VERSION|CKPT [--score-threshold F] [--only-unreviewed] [--device ...]
                       [--precision auto|fp32|bf16|fp16] [--batch-size B]
                       [--gpus N [--nnodes M --node-rank R --rdzv-endpoint HOST:PORT]]
    annotator export PROJECT --coco OUT.json [--include accepted|human|all]
    annotator export PROJECT --results OUT.json [--gt GT.json]
    annotator export PROJECT --format yolo|labelme|via|masks --out PATH [--include ...] [--val-fraction F]
    annotator evaluate --gt GT.json --dt RESULTS.json
    annotator gui [PROJECT|FOLDER] [--sample]
    annotator import-weights FILE.pth --arch NAME [--out OUT.pth] [--project PROJECT]
    annotator bench [--arch NAME[,NAME...]] [--size S] [--runs N] [--device cpu|cuda] [--batch B]
    annotator bench --train
    annotator export-onnx CHECKPOINT.pth --out MODEL.onnx [--opset 19]
    annotator download-weights NAME [--cache DIR] [--import-to PROJECT] | --list
    annotator simulate --coco GT.json --images DIR [--arch NAME] --rounds R --per-round K [--device ...]
                       [--precision auto|fp32|bf16|fp16] [--out DIR]
                       [--max-minutes M] [--accept-iou F] [--category NAME] [--max-detections N] [--cost-* S]
    annotator --version                  # annotator X.Y.Z
    annotator --self-check               # headless installation check (annotator.selfcheck), exit 0 / 1

User errors (bad file, bad field, missing path) print one line ``error: ...`` naming the file
and the field and exit with status 2; the project is left as it was. ``new``, ``prelabel``,
``train`` and ``export`` skip image files that cannot be read (empty, truncated, not an image,
deleted since the project was made), finish the rest, name the skipped files and exit with
status 3 (:data:`EXIT_SKIPPED`). Long work shows a tqdm progress bar with ETA when stderr is a
terminal.
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

from annotator import version
from annotator.cli_models import add_subcommands as add_model_subcommands
from annotator.errors import AnnotatorError

EXIT_USER_ERROR = 2
#: Exit status when the work was done for every readable image but some image files were skipped.
EXIT_SKIPPED = 3


def _report_skipped(skipped, what: str = "skipped (unreadable)") -> int:
    """Print one ``skipped: <file>: <reason>`` line per skipped file; the exit status."""
    for line in skipped:
        print(f"skipped: {line}")
    if skipped:
        print(f"warning: {len(skipped)} image file{'s' * (len(skipped) != 1)} {what}", file=sys.stderr)
    return EXIT_SKIPPED if skipped else 0


def _progress_bar(total: int, desc: str, unit: str):
    from tqdm import tqdm

    # disable=None: shown on a terminal, silent when output is piped (CI, logs).
    return tqdm(total=total, desc=desc, unit=unit, disable=None, dynamic_ncols=True)


def _open_project(path: str, *, must_exist: bool = True):
    from annotator.project import Project

    p = Path(path)
    if must_exist and not p.exists():
        raise AnnotatorError(f"{p}: project not found (create it with 'annotator new {p} --images DIR')")
    return Project.open(p, create_if_folder=False)


def _existing_file(path: str, option: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise AnnotatorError(f"{option}: file not found: {p}")
    return p


def cmd_new(args) -> int:
    from annotator.project import Project

    images = Path(args.images)
    if not images.is_dir():
        raise AnnotatorError(f"--images: folder not found: {images}")
    project = Project.create(Path(args.project), images_dir=images)
    try:
        print(f"created project {project.root} with {project.scan.added} images"
              + (f" ({len(project.scan.skipped)} files skipped)" if project.scan.skipped else ""))
    finally:
        project.close()
    return _report_skipped([s.line() for s in project.scan.skipped], "not registered (unreadable)")


def _format_io(fmt: str, direction: str):
    """The import_* / export_* function of an interchange format (annotator.io.<module>)."""
    import importlib

    module = {"yolo": "yolo", "labelme": "labelme", "via": "via", "masks": "mask_png"}[fmt]
    return getattr(importlib.import_module(f"annotator.io.{module}"), f"{direction}_{fmt}")


def cmd_import_format(args) -> int:
    args.format, args.path = args.format
    if args.format not in ("yolo", "labelme", "via", "masks"):
        raise AnnotatorError(f"--format: {args.format!r} is not one of yolo, labelme, via, masks")
    if args.coco:
        raise AnnotatorError("import: give either --coco ANN.json or --format FORMAT PATH")
    if not Path(args.path).exists():
        raise AnnotatorError(f"PATH: not found: {args.path}")
    kwargs = {}
    if args.image_root and args.format in ("via", "masks"):
        kwargs["image_root"] = Path(args.image_root)
    if args.class_attribute and args.format == "via":
        kwargs["class_attribute"] = args.class_attribute
    project = _open_project(args.project)
    try:
        report = _format_io(args.format, "import")(project, Path(args.path), **kwargs)
    finally:
        project.close()
    print(report.line())
    return 0


def cmd_import(args) -> int:
    from annotator.io.coco import import_coco

    if args.format:
        return cmd_import_format(args)
    if not args.coco:
        raise AnnotatorError("import: give --coco ANN.json or --format yolo|labelme|via|masks PATH")
    ann = _existing_file(args.coco, "--coco")
    project = _open_project(args.project)
    try:
        summary = import_coco(project, ann, image_root=Path(args.image_root) if args.image_root else None)
        print(summary.line())
    finally:
        project.close()
    return 0


def cmd_train(args) -> int:
    from annotator.jobs.train import run_train_job

    project = _open_project(args.project)
    bar = None

    def progress(info: dict) -> None:
        nonlocal bar
        if bar is None:
            bar = _progress_bar(info["iterations"], "train", "it")
        if bar.disable:  # not a terminal: a plain log line every 10 %
            step = max(1, info["iterations"] // 10)
            if info["iteration"] % step == 0 or info["iteration"] == info["iterations"]:
                losses = " ".join(f"{k} {v:.3f}" for k, v in info.get("losses", {}).items())
                print(f"iter {info['iteration']}/{info['iterations']} {losses} lr {info.get('lr', 0):.2e} "
                      f"eta {info.get('eta_s', 0):.0f}s", flush=True)
            return
        bar.n = info["iteration"]
        losses = info.get("losses", {})
        bar.set_postfix({k.replace("loss_", ""): f"{v:.3f}" for k, v in losses.items()}, refresh=False)
        bar.refresh()

    try:
        res = run_train_job(
            project,
            arch=args.arch,
            init=args.init,
            iterations=args.iterations,
            batch_size=args.batch_size,
            lr=args.lr,
            input_size=args.input_size,
            device=args.device,
            out_dir=Path(args.out) if args.out else None,
            augment=None if args.no_augment or args.augment == "none" else args.augment,
            seed=args.seed,
            progress=progress,
            val_fraction=args.val_fraction,
            eval_every=args.eval_every,
            patience=args.patience,
            resume=args.resume,
            gpus=args.gpus,
            max_minutes=args.max_minutes,
            max_detections=args.max_detections,
        )
    finally:
        if bar is not None:
            bar.close()
        project.close()
    losses = ", ".join(f"{k} {v:.4f}" for k, v in res.final_losses.items())
    print(f"trained {res.iterations_done} iterations; final {losses}")
    if res.skipped_nonfinite:
        print(f"warning: {res.skipped_nonfinite} steps skipped because the loss was not finite")
    if res.metrics:
        m = res.metrics
        print(f"validation ({m.get('val_images', 0)} images, best at iteration {m.get('iteration')}): "
              f"segm AP {m['segm']['AP']:.4f}, bbox AP {m['bbox']['AP']:.4f}"
              + (" (stopped early)" if res.early_stopped else "") + (" (cancelled)" if res.stopped else ""))
    print(f"checkpoint {res.checkpoint}")
    print(f"registered model version {res.model_version}"
          + (f" (parent {res.parent})" if res.parent is not None else "") + f": {res.activation}")
    return _report_skipped(res.skipped_unreadable, "left out of training (unreadable)")


def _resolve_model(project, model: str) -> tuple[Path, int | None]:
    if model.isdigit():
        version = project.model_version(int(model))
        return Path(version.checkpoint_path), version.id
    return _existing_file(model, "--model"), None


def cmd_prelabel(args) -> int:
    import time

    from annotator.jobs.prelabel import prelabel, prepare_workers
    from segcore.checkpoints import CheckpointError
    from segcore.predictor import Predictor

    if args.batch_size is not None and args.batch_size < 1:
        raise AnnotatorError("--batch-size: must be >= 1")
    if args.gpus < 1:
        raise AnnotatorError("--gpus: must be >= 1")
    if args.gpus > 1 or args.nnodes > 1:
        return _prelabel_torchrun(args)
    project = _open_project(args.project)
    bar = None
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = _progress_bar(total, "prelabel", "img")
        bar.update(done - bar.n)   # update(), not n =: tqdm's images/s rate comes from it

    try:
        ckpt, version = _resolve_model(project, args.model)
        prepare_workers(len(project.image_ids()), args.device)   # the readers' server starts while the model loads
        try:
            predictor = Predictor.from_checkpoint(ckpt, device=args.device, precision=args.precision)
        except CheckpointError as exc:
            raise AnnotatorError(str(exc)) from None
        except ValueError as exc:
            raise AnnotatorError(f"--device / --precision: {exc}") from None
        print(predictor.precision_reason, flush=True)
        summary = prelabel(
            project,
            predictor,
            score_threshold=args.score_threshold,
            only_unreviewed=args.only_unreviewed,
            model_version=version,
            progress=progress,
            batch_size=args.batch_size,
        )
    finally:
        if bar is not None:
            bar.close()
        project.close()
    return _report_prelabel(summary, time.perf_counter() - start)


def _report_prelabel(summary, seconds: float) -> int:
    """The summary line of ``prelabel`` (with images/s), the skipped files; the exit status."""
    rate = f" in {seconds:.1f} s ({summary.images / seconds:.2f} images/s)" if summary.images and seconds > 0 else ""
    print(f"pre-labelled {summary.images} images{rate}: {summary.instances} predictions stored, "
          f"{summary.skipped} images skipped (in progress or done){', stopped early' if summary.stopped else ''}"
          + (f", {len(summary.unreadable)} unreadable" if summary.unreadable else ""))
    return _report_skipped(summary.unreadable)


def _prelabel_torchrun(args) -> int:
    """``prelabel --gpus N`` / ``--nnodes M``: :func:`annotator.jobs.distributed.launch_prelabel`.
    On the project's node (``--node-rank 0``) the project and model are checked here first."""
    import time

    from annotator.jobs.distributed import TorchrunNodes, launch_prelabel

    nodes = TorchrunNodes(nnodes=args.nnodes, node_rank=args.node_rank, rdzv_endpoint=args.rdzv_endpoint,
                          rdzv_backend=args.rdzv_backend, rdzv_id=args.rdzv_id)
    nodes.check()
    ckpt = version = None
    if args.node_rank == 0:   # the project's machine: fail here, in one line, rather than in N processes
        project = _open_project(args.project)
        try:
            ckpt, version = _resolve_model(project, args.model)
        finally:
            project.close()
        from segcore.device import resolve_device
        from segcore.predictor import precision_reason

        try:   # each process resolves the same request on its own device (the same kind here)
            print(precision_reason(args.precision, resolve_device(args.device)), flush=True)
        except ValueError as exc:
            raise AnnotatorError(f"--device / --precision: {exc}") from None
    bar = None
    start = time.perf_counter()

    def progress(info: dict) -> None:
        nonlocal bar
        if bar is None:
            bar = _progress_bar(info["total"], "prelabel", "img")
        bar.update(info["done"] - bar.n)

    try:
        outcome = launch_prelabel(
            Path(args.project).resolve() if ckpt is not None else None, ckpt, model_version=version,
            nproc=args.gpus, nodes=nodes, device=args.device, precision=args.precision,
            score_threshold=args.score_threshold,
            only_unreviewed=args.only_unreviewed, batch_size=args.batch_size, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    if outcome is None:
        print(f"node {args.node_rank}: done; node 0, which holds the project, wrote the predictions")
        return 0
    return _report_prelabel(outcome.summary, time.perf_counter() - start)


def cmd_export(args) -> int:
    from annotator.io.coco import export_coco, export_results

    if args.format and not args.out:
        raise AnnotatorError("export: --format needs --out PATH")
    if not args.coco and not args.results and not args.format:
        raise AnnotatorError("export: give --coco OUT.json and/or --results OUT.json and/or --format FORMAT --out PATH")
    project = _open_project(args.project)
    skipped: list[str] = []
    try:
        if args.format:
            kwargs = {"val_fraction": args.val_fraction} if args.format == "yolo" else {}
            report = _format_io(args.format, "export")(project, Path(args.out), include=args.include, **kwargs)
            print(f"wrote {args.out}: {report.line()}")
            skipped = report.skipped
        if args.coco:
            counts = export_coco(project, Path(args.coco), include=args.include)
            print(f"wrote {args.coco}: {counts['images']} images, {counts['annotations']} annotations, "
                  f"{counts['categories']} categories")
            skipped = skipped or counts["skipped"]
        if args.results:
            gt = _existing_file(args.gt, "--gt") if args.gt else None
            n = export_results(project, Path(args.results), gt_json=gt)
            print(f"wrote {args.results}: {n} predictions")
    finally:
        project.close()
    return _report_skipped(skipped)


def cmd_evaluate(args) -> int:
    from segcore.evaluation import coco_evaluate

    gt = _existing_file(args.gt, "--gt")
    dt = _existing_file(args.dt, "--dt")
    try:
        stats = coco_evaluate(gt, dt, verbose=True)
    except (ValueError, KeyError, TypeError) as exc:  # malformed JSON reaching pycocotools
        raise AnnotatorError(f"{dt}: cannot evaluate against {gt}: {exc}") from None
    print("summary: " + "  ".join(
        f"{iou} AP {s['AP']:.3f} AP50 {s['AP50']:.3f}" for iou, s in stats.items()))
    return 0


def cmd_gui(args) -> int:
    from annotator.ui.app import main as gui_main

    path = args.path
    if args.sample:
        from annotator.samples import ensure_sample_project

        path = str(ensure_sample_project())
    return gui_main(path)


def cmd_import_weights(args) -> int:
    from annotator.weights import import_weights

    import_weights(args.file, args.arch, out=args.out, project=args.project)
    return 0


def cmd_bench(args) -> int:
    from segcore.bench import run_benchmark

    archs = [a.strip() for v in (args.arch or []) for a in v.split(",") if a.strip()] or None
    if args.train:
        from annotator.jobs.train import CPU_BATCH
        from segcore.engine.memory import run_train_benchmark
        from segcore.modeling import FAMILIES

        run_train_benchmark(archs or [a for fam in FAMILIES.values() for a in (fam.tiny_arch, *fam.bench_archs)],
                            batch=CPU_BATCH, threads=args.threads)
        return 0
    from segcore.device import resolve_device
    from segcore.predictor import precision_reason

    try:
        # the default of prelabel / the app on this device (the table times every variant anyway)
        print(f"prelabel default {precision_reason(None, resolve_device(args.device))}", flush=True)
        run_benchmark(archs=archs, size=args.size, runs=args.runs, warmup=args.warmup, threads=args.threads,
                      device=args.device, batch=args.batch)
    except ValueError as exc:
        raise AnnotatorError(f"bench: {exc}") from None
    return 0


def cmd_simulate(args) -> int:
    from annotator.jobs.simulate import simulate

    coco = _existing_file(args.coco, "--coco")
    images = Path(args.images)
    if not images.is_dir():
        raise AnnotatorError(f"--images: folder not found: {images}")
    from annotator.jobs.simulate import CostModel

    simulate(coco, images, arch=args.arch, rounds=args.rounds, per_round=args.per_round,
             out_dir=Path(args.out), device=args.device, precision=args.precision, iterations=args.iterations,
             input_size=args.input_size,
             max_minutes=args.max_minutes, batch_size=args.batch_size, score_threshold=args.score_threshold,
             accept_iou=args.accept_iou, fix_iou=args.fix_iou, max_detections=args.max_detections,
             category=args.category, eval_remaining=args.eval_remaining, heldout=args.heldout, seed=args.seed,
             costs=CostModel(draw=args.cost_draw, fix=args.cost_fix, accept=args.cost_accept, delete=args.cost_delete),
             log=(lambda m: print(m, flush=True)) if args.verbose else (lambda m: None))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="annotator", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"annotator {version()}",
                   help="print 'annotator X.Y.Z' (installed distribution metadata) and exit")
    p.add_argument("--self-check", action="store_true",
                   help="headless check of an installation: import the models, one tiny CPU forward, open and "
                        "close the main window offscreen; exit 0 if all pass (annotator.selfcheck)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("new", help="create a project from a folder of images")
    s.add_argument("project")
    s.add_argument("--images", required=True, help="folder of images (jpg, png, bmp, tif)")
    s.set_defaults(func=cmd_new)

    s = sub.add_parser("import", help="import COCO instances JSON (as human, accepted)")
    s.add_argument("project")
    s.add_argument("--coco", metavar="ANN.json")
    s.add_argument("--image-root", help="where the JSON's file_names are, if not in the project")
    s.add_argument("--format", nargs=2, metavar=("FORMAT", "PATH"),
                   help="FORMAT yolo|labelme|via|masks; PATH: data.yaml or its folder (yolo), a .json or a folder "
                        "of them (labelme), a VIA .json (via), a folder with instances/ classes/ categories.json "
                        "(masks). What a format cannot hold: annotator.io.policy")
    s.add_argument("--class-attribute", help="with --format via: the region attribute holding the class")
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("train", help="train a model on accepted + edited annotations")
    s.add_argument("project")
    s.add_argument("--arch", help="registered architecture name (an unknown name lists the known ones; default: the "
                                  "active version's, else the measured default for the device: README 'Training')")
    s.add_argument("--init", help="segcore checkpoint or model version id to start from")
    s.add_argument("--iterations", type=int)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--lr", type=float)
    s.add_argument("--input-size", type=int, help="square network input side S (default: the architecture's)")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.add_argument("--out", help="checkpoint folder (default PROJECT/models/ARCH-TIME)")
    s.add_argument("--no-augment", action="store_true", help="turn off augmentation (same as --augment none)")
    s.add_argument("--augment", default="photo", choices=["photo", "topdown", "none"],
                   help="photo: flips left/right, scale, colour (default); topdown: also flips up/down and "
                        "90-degree rotations (microscopy, aerial, documents)")
    s.add_argument("--max-minutes", type=float, metavar="M",
                   help="training budget in minutes: iterations, warmup and lr steps are laid out from the measured "
                        "speed (default on a CPU without --iterations: 5)")
    s.add_argument("--max-detections", type=int, metavar="N",
                   help="detections per image (default: 1.5 x the most instances in a labelled image, >= 100)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of images held out for validation / early stopping (stored; default 0.2)")
    s.add_argument("--eval-every", type=int, help="validation every N iterations (default max(50, iterations/10))")
    s.add_argument("--patience", type=int, help="early stop after N validations without a better segm AP "
                                                "(default 3, 0 = never)")
    s.add_argument("--resume", metavar="RUN_DIR|CKPT", help="continue an interrupted run (its own settings)")
    s.add_argument("--gpus", type=int, default=1, help="N > 1: DDP on N processes via torchrun (gloo on CPU)")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("prelabel", help="pre-label images with a model")
    s.add_argument("project")
    s.add_argument("--model", required=True, metavar="VERSION|CKPT")
    s.add_argument("--score-threshold", type=float, default=0.05)
    s.add_argument("--only-unreviewed", action="store_true", help="skip images already reviewed")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="network precision (default auto: fp16 on CUDA, bf16 on a CPU with native bf16, else fp32; "
                        "bf16 / fp16 keep the prediction heads in fp32)")
    s.add_argument("--batch-size", type=int, default=None, metavar="B",
                   help="images per forward pass (default: 8 on CUDA, 1 on CPU)")
    s.add_argument("--gpus", type=int, default=1, metavar="N",
                   help="N > 1: N processes via torchrun, each predicting a shard (one GPU each; gloo on CPU); "
                        "this process's node writes the project")
    g = s.add_argument_group("several machines (torchrun's multi-node options, passed through)")
    g.add_argument("--nnodes", type=int, default=1, help="machines taking part (each runs this command)")
    g.add_argument("--node-rank", type=int, default=0,
                   help="this machine's rank; 0 = the machine that holds the project and writes it")
    g.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="rendezvous address (node 0's host and a free port)")
    g.add_argument("--rdzv-backend", default="static", choices=["static", "c10d"],
                   help="torchrun rendezvous: static (default; ranks follow --node-rank) or c10d")
    g.add_argument("--rdzv-id", help="job id (the same on every machine; c10d)")
    s.set_defaults(func=cmd_prelabel)

    s = sub.add_parser("export", help="export COCO instances JSON and/or COCO results JSON")
    s.add_argument("project")
    s.add_argument("--coco", metavar="OUT.json")
    s.add_argument("--include", default="accepted", choices=["accepted", "human", "all"])
    s.add_argument("--results", metavar="OUT.json", help="predictions as a COCO results JSON")
    s.add_argument("--gt", metavar="GT.json",
                   help="with --results: take image ids from this COCO file (matched by file name)")
    s.add_argument("--format", choices=["yolo", "labelme", "via", "masks"], help="interchange format to write")
    s.add_argument("--out", metavar="PATH", help="with --format: output folder (a .json file for via)")
    s.add_argument("--val-fraction", type=float, default=0.1, help="with --format yolo: share of images in val")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("evaluate", help="COCOeval (bbox and segm) of results against ground truth")
    s.add_argument("--gt", required=True)
    s.add_argument("--dt", required=True)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("gui", help="start the desktop app")
    s.add_argument("path", nargs="?", help="project or image folder")
    s.add_argument("--sample", action="store_true", help="open the bundled sample project")
    s.set_defaults(func=cmd_gui)

    s = sub.add_parser("import-weights", help="import official weights of an architecture into a segcore checkpoint")
    s.add_argument("file", metavar="FILE", help=".pth state_dict (or detectron2 .pkl) from the official repository")
    s.add_argument("--arch", required=True, help="architecture name the weights belong to")
    s.add_argument("--out", help="segcore checkpoint to write (default: user data folder/models)")
    s.add_argument("--project", help="also register the weights as a model version of this project")
    s.set_defaults(func=cmd_import_weights)

    s = sub.add_parser("bench", help="latency of segcore models vs torchvision Mask R-CNN (CPU ms, or fps on CUDA)")
    s.add_argument("--arch", action="append", metavar="NAME[,NAME...]",
                   help="repeat or comma-separate (default: each model family's benchmark architectures)")
    s.add_argument("--size", type=int, default=None, help="input side S for every arch (default: each arch's own)")
    s.add_argument("--runs", type=int, default=5)
    s.add_argument("--warmup", type=int, default=2)
    s.add_argument("--threads", type=int)
    s.add_argument("--device", default="cpu",
                   help="cpu: latency table; cuda[:N]: fps at batch 1 and batched, fp32 vs fp16")
    s.add_argument("--batch", type=int, default=8, help="with --device cuda: images per forward")
    s.add_argument("--train", action="store_true",
                   help="training instead: iterations/s and peak memory per architecture at the CPU default batch "
                        "(synthetic data at each architecture's training input size)")
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("simulate", help="labeling-effort benchmark: pre-label, correct to GT, fine-tune, repeat")
    s.add_argument("--coco", required=True, metavar="GT.json", help="ground truth (COCO instances)")
    s.add_argument("--images", required=True, help="folder of the GT's images")
    s.add_argument("--arch", help="architecture (default: the train job's choice for the device)")
    s.add_argument("--rounds", type=int, default=4)
    s.add_argument("--per-round", type=int, default=10, help="images labeled per round")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="network precision (default auto: fp16 on CUDA, bf16 on a CPU with native bf16, else fp32; "
                        "bf16 / fp16 keep the prediction heads in fp32)")
    s.add_argument("--out", default="simulate-out", help="folder for rounds.csv, rounds.png and the project")
    s.add_argument("--iterations", type=int, help="training iterations per round (default: a time budget)")
    s.add_argument("--max-minutes", type=float, metavar="M",
                   help="training budget per round (default: 5 on a CPU, from the data size on a GPU)")
    s.add_argument("--max-detections", type=int, metavar="N", help="detections per image (default: from the data)")
    s.add_argument("--accept-iou", type=float, default=0.7,
                   help="a prediction is accepted unchanged at this mask IoU with the right class (default 0.7)")
    s.add_argument("--fix-iou", type=float, default=0.5, help="below it a prediction is deleted, above it fixed")
    s.add_argument("--category", metavar="NAME", help="keep only this category and the images holding it")
    s.add_argument("--cost-draw", type=float, default=79.0, help="seconds to draw an instance (COCO: ~79)")
    s.add_argument("--cost-fix", type=float, default=15.0, help="seconds to fix a predicted mask")
    s.add_argument("--cost-accept", type=float, default=1.0, help="seconds to accept a prediction")
    s.add_argument("--cost-delete", type=float, default=2.0, help="seconds to delete a false positive")
    s.add_argument("--eval-remaining", action="store_true",
                   help="also measure segm AP on the images not labeled yet after each round (slow on a CPU)")
    s.add_argument("--heldout", type=int, metavar="N",
                   help="images no round labels, pre-labelled by each round's model to measure it on the same images "
                        "(default: --per-round; 0 = none)")
    s.add_argument("--verbose", action="store_true", help="print the training log of each round")
    s.add_argument("--input-size", type=int)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--score-threshold", type=float, default=0.3, help="predictions shown to the simulated person")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_simulate)
    add_model_subcommands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``annotator`` console script.

    Args:
        argv: arguments without the program name (``None`` = ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 1 when ``--self-check`` fails, 2 for a user error
        (one line ``error: ...`` on stderr), 3 when unreadable image files were skipped
        (:data:`EXIT_SKIPPED`), 130 when interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.self_check:
        if args.command:
            parser.error("--self-check takes no COMMAND")
        from annotator.selfcheck import run_self_check

        return run_self_check()
    if not args.command:
        parser.error("a COMMAND is required (or --version / --self-check)")
    try:
        return int(args.func(args) or 0)
    except AnnotatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def console_main(argv: list[str] | None = None) -> int:
    """The ``annotator`` console script and the bundle's executables: :func:`main`, then an exit
    that skips the interpreter's last garbage collections of torch's objects.

    When a command returns, its files and project are closed. What remains is the interpreter's
    shutdown, whose final collections walk the objects that importing torch and torchvision
    creates: 0.7-0.8 s on a 2-core CPU (4 % of pre-labelling 80 photos). ``gc.freeze()`` moves
    them out of the collector's reach first (shutdown then takes ~0.2 s); objects are still
    released by reference counting and atexit handlers still run. In-process callers (tests)
    use :func:`main`, whose later garbage must stay collectable.
    """
    code = main(argv)
    gc.freeze()
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(console_main())
