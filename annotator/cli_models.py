"""Model sub-commands of the ``annotator`` CLI: ONNX export and official-weights download.

::

    annotator export-onnx CHECKPOINT.pth --out model.onnx [--opset N] [--score-threshold F]
                          [--max-detections N] [--exporter dynamo|torchscript]
    annotator download-weights NAME [--cache DIR] [--import-to PROJECT] [--force]
    annotator download-weights --list     # COCO checkpoints and ImageNet backbones

:func:`add_subcommands` adds both to the CLI's argparse sub-parsers. Handlers return the exit
status; user errors are raised as :class:`annotator.errors.AnnotatorError` (``annotator.cli.main``
prints ``error: <message>`` and exits 2). Exit statuses of ``download-weights``: 0 done (or
already in the cache), 1 size / sha256 mismatch (nothing kept), 2 offline / HTTP error / unknown
name / other user error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from annotator.errors import AnnotatorError

__all__ = ["add_subcommands", "cmd_export_onnx", "cmd_download_weights"]

#: = ``segcore.export.onnx.DEFAULT_OPSET`` (not imported here: building the parser must not load torch)
DEFAULT_OPSET = 19


def cmd_export_onnx(args: argparse.Namespace) -> int:
    """``annotator export-onnx``: a segcore checkpoint -> ONNX file with its family's exporter
    (:func:`segcore.export.onnx.export_onnx`).

    Raises:
        AnnotatorError: unreadable / invalid checkpoint (``torch.load(weights_only=True)``), a
            family without ONNX export, opset too low, unwritable ``--out``, or the exporter failed.
    """
    from segcore.checkpoints import CheckpointError, read_checkpoint
    from segcore.export.onnx import OnnxExportError, export_onnx, supports_onnx

    src = Path(args.checkpoint)
    try:
        arch = read_checkpoint(src)["arch"]
    except CheckpointError as exc:
        raise AnnotatorError(str(exc)) from None
    if not supports_onnx(arch):
        from segcore.modeling import FAMILIES

        names = ", ".join(f"{n}_*" for n, f in FAMILIES.items() if f.onnx is not None)
        raise AnnotatorError(f"{src}: key 'arch' is {arch!r}: export-onnx supports {names} checkpoints only")
    from segcore.checkpoints import load_checkpoint

    model, info = load_checkpoint(src, device="cpu")
    try:
        report = export_onnx(model, Path(args.out), categories=info["categories"], opset=args.opset,
                             score_threshold=args.score_threshold, max_detections=args.max_detections,
                             dynamo=args.exporter == "dynamo")
    except OnnxExportError as exc:
        raise AnnotatorError(str(exc)) from None
    print(report.line())
    return 0


def cmd_download_weights(args: argparse.Namespace) -> int:
    """``annotator download-weights``: fetch official weights and verify them
    (:func:`annotator.weights.download_weights`). COCO checkpoints go to the cache (``--cache``);
    ``--import-to`` then imports them into a segcore checkpoint registered in that project, as
    ``annotator import-weights --project``. ImageNet backbones go to torch's hub folder
    (``$TORCH_HOME/hub/checkpoints``), where training finds them by itself.

    Returns 0, or 1 after printing one ``error:`` line when the size / sha256 does not match.

    Raises:
        AnnotatorError: no NAME, unknown NAME, ``--import-to`` or ``--cache`` with an ImageNet
            backbone, offline (``cannot download NAME: offline or host unreachable (<reason>)``),
            HTTP error, unwritable cache, missing project.
    """
    from annotator import weights

    cache = Path(args.cache) if args.cache else None
    if args.list:
        for line in weights.list_lines(cache_dir=cache):
            print(line)
        return 0
    if not args.name:
        raise AnnotatorError("download-weights: give NAME or --list")
    entry = weights.lookup(args.name)
    if entry.kind != "coco" and args.import_to:
        raise AnnotatorError(f"--import-to: {entry.name} is an ImageNet backbone, not a model: training uses it "
                             "automatically once downloaded (download it without --import-to)")
    if entry.store == "torch_hub" and cache is not None:
        raise AnnotatorError(f"--cache: {entry.name} goes to torch's hub folder {weights.folder_of(entry)}, where "
                             "torchvision and training look for it (set TORCH_HOME to move that folder)")
    if args.import_to and not Path(args.import_to).exists():
        raise AnnotatorError(f"--import-to: project not found: {args.import_to}")
    try:
        result = weights.download_weights(entry.name, cache_dir=cache, force=args.force,
                                          log=lambda m: print(m, file=sys.stderr))
    except weights.ChecksumError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    against = {"published": "the published hash", "remembered": "the remembered hash",
               "name": "the sha256 prefix in its file name"}
    if not result.downloaded:
        where = "the cache" if entry.store == "cache" else "torch's hub checkpoints folder"
        print(f"{result.path}: already in {where} (sha256 {result.sha256}, verified against "
              f"{against[result.verified]})")
    elif result.verified == "published":
        print(f"downloaded {result.path} ({result.size:,} bytes, sha256 {result.sha256} matches the published hash)")
    elif result.verified == "name":
        print(f"downloaded {result.path} ({result.size:,} bytes, sha256 {result.sha256} starts with the "
              f"{entry.name_hash_prefix()} of its file name, as torch.hub checks it)")
    else:
        print(f"downloaded {result.path} ({result.size:,} bytes)")
        print(f"sha256 {result.sha256}  ({weights.NOT_PUBLISHED}: compare it with a source you trust)")
    if entry.kind != "coco":
        print(f"training {entry.arch} and the other architectures with this backbone now starts from it "
              "(when no model version or downloaded COCO checkpoint of the architecture is there)")
    if args.import_to:
        weights.import_weights(result.path, entry.arch, project=args.import_to)
    return 0


def add_subcommands(sub) -> None:
    """Add ``export-onnx`` and ``download-weights`` to ``sub`` (``parser.add_subparsers()``)."""
    s = sub.add_parser("export-onnx", help="export a checkpoint's inference to ONNX (families with an ONNX exporter)")
    s.add_argument("checkpoint", metavar="CHECKPOINT", help="segcore checkpoint (.pth)")
    s.add_argument("--out", required=True, metavar="MODEL.onnx")
    s.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset (default {DEFAULT_OPSET}; deformable convs need >= 19 for DeformConv)")
    s.add_argument("--score-threshold", type=float, default=0.05,
                   help="pre-NMS score filter baked into the graph (default 0.05, as the predictor)")
    s.add_argument("--max-detections", type=int, default=100, help="output rows N (default 100)")
    s.add_argument("--exporter", choices=["dynamo", "torchscript"], default="dynamo",
                   help="torch.onnx exporter (torchscript cannot export deformable convs)")
    s.set_defaults(func=cmd_export_onnx)

    s = sub.add_parser("download-weights", help="download official COCO checkpoints / ImageNet backbones "
                                                "(sha256-verified); never done automatically")
    s.add_argument("name", nargs="?", metavar="NAME", help="registry name (see --list)")
    s.add_argument("--list", action="store_true", help="list the downloadable weights")
    s.add_argument("--cache", metavar="DIR", help="cache folder of COCO checkpoints (default "
                   "$XDG_CACHE_HOME/annotator/weights; ImageNet backbones go to $TORCH_HOME/hub/checkpoints)")
    s.add_argument("--import-to", metavar="PROJECT",
                   help="then import the COCO checkpoint (as import-weights) and register it in PROJECT")
    s.add_argument("--force", action="store_true", help="download again even if a verified copy is cached")
    s.set_defaults(func=cmd_download_weights)
