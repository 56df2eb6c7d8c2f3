"""ONNX export of YOLACT / YOLACT++ inference: onnxruntime (CPU) against segcore's PyTorch Predictor.

Models: random init (nothing can be downloaded), conditioned on the first test image so the
comparison means something (see :func:`_conditioned_model`): box regressions x 0.1 (boxes stay
near their priors); class-logit weights scaled to unit spread and the background bias raised
until the best prior is 2 logits above background, so only the confident priors pass the 0.05
pre-filter with well-spread scores (the raw random head puts hundreds of priors above 0.9, a
plateau of ties); the last protonet conv scaled to unit-spread prototypes and the coefficient
bias raised by 0.5 (random ResNet-50 prototypes reach 25 and give all-empty masks). YOLACT++
also gets non-zero DCN offsets and modulation, so the ONNX DeformConv samples off the grid.

Comparison per image (real coco-tiny val2017 images): the same number of detections (> 0), and
every PyTorch detection has an ONNX one with the same class, score within 1e-3, mask IoU >= 0.99
at image resolution and box corners within 1 px, taken by index after sorting by score (a
neighbour within the score tolerance is accepted only if the index partner does not match, for
near ties). A negative control checks that the comparison catches shifted masks, shifted scores
and a dropped row.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from annotator.cli import main as cli_main
from segcore.checkpoints import save_checkpoint
from segcore.data import read_image_rgb
from segcore.export.onnx import OnnxExportError, export_onnx, open_onnx
from segcore.modeling.yolact.onnx import OnnxYolact, YolactInference, export_yolact_onnx
from segcore.modeling.registry import build_model
from segcore.predictor import Prediction, Predictor

K = 3
CATEGORIES = [{"id": 5, "name": "airplane"}, {"id": 17, "name": "cat"}, {"id": 88, "name": "teddy bear"}]


def _images(coco_tiny: Path, n: int = 2) -> list[np.ndarray]:
    files = sorted((coco_tiny / "val2017").glob("*.jpg"))[:n]
    return [read_image_rgb(f) for f in files]


def _conditioned_model(arch: str, image: np.ndarray, *, seed: int = 0, margin: float = 2.0) -> torch.nn.Module:
    """Random-init model whose best prior on ``image`` has a foreground logit ``margin`` above
    background and whose prototypes have about unit scale (see the module docstring)."""
    torch.manual_seed(seed)
    model = build_model(arch, num_classes=K).eval()
    s = model.info.input_size
    head = model.prediction_layers[0]
    with torch.no_grad():
        head.bbox_layer.weight.mul_(0.1)
        for name, module in model.named_modules():
            if name.endswith("conv_offset_mask"):  # YOLACT++ DCN: real offsets and modulation
                torch.nn.init.normal_(module.weight, std=0.01)
                torch.nn.init.normal_(module.bias, std=0.5)
        x = torch.from_numpy(cv2.resize(image, (s, s), interpolation=cv2.INTER_LINEAR)).permute(2, 0, 1)[None].float()
        out = model(x)
        model.proto_net[-1].weight.div_(out["proto"].std())  # prototypes ~unit scale: masks not all 0 or 1
        head.mask_layer.bias.add_(0.5)  # coefficients lean positive: most masks are not empty
        head.conf_layer.weight.div_(out["conf"].std())  # class logits ~unit scale: no plateau of ties
        conf = model(x)["conf"][0]
        diff = conf[:, 1:].max(dim=1).values - conf[:, 0]
        head.conf_layer.bias.view(-1, K + 1)[:, 0] += diff.max() - margin
    return model


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _mismatches(pt: Prediction, ox: Prediction, *, score_tol: float = 1e-3, iou_min: float = 0.99,
                box_tol: float = 1.0) -> tuple[list[str], dict]:
    """Problems found comparing ONNX ``ox`` with PyTorch ``pt`` (empty = equivalent), and the
    figures of the index-matched pairs (max score difference, min mask IoU)."""
    problems = [] if len(pt) == len(ox) else [f"{len(pt)} PyTorch detections vs {len(ox)} ONNX"]
    used: set[int] = set()
    stats = {"max_score_diff": 0.0, "min_mask_iou": 1.0, "index_matched": 0}

    def ok(i: int, j: int) -> bool:
        return (abs(float(pt.scores[i]) - float(ox.scores[j])) <= score_tol
                and pt.category_ids[i] == ox.category_ids[j]
                and float(np.abs(pt.boxes[i] - ox.boxes[j]).max()) <= box_tol
                and _iou(pt.masks[i], ox.masks[j]) >= iou_min)

    for i in range(len(pt)):
        near = [j for j in range(len(ox)) if j != i and abs(float(pt.scores[i]) - float(ox.scores[j])) <= score_tol]
        for j in ([i] if i < len(ox) else []) + near:
            if j not in used and ok(i, j):
                used.add(j)
                stats["index_matched"] += int(i == j)
                stats["max_score_diff"] = max(stats["max_score_diff"], abs(float(pt.scores[i]) - float(ox.scores[j])))
                stats["min_mask_iou"] = min(stats["min_mask_iou"], _iou(pt.masks[i], ox.masks[j]))
                break
        else:
            problems.append(f"PyTorch detection {i} (class {pt.category_ids[i]}, score {pt.scores[i]:.6f}) has no "
                            f"ONNX match")
    return problems, stats


def _run_cli(argv: list[str]) -> int:
    """The real ``annotator`` entry point (exit 0 / 1 / 2, one ``error:`` line on stderr)."""
    return cli_main(argv)


def _export_and_compare(arch: str, images: list[np.ndarray], tmp_path: Path) -> dict:
    """Checkpoint -> ``annotator export-onnx`` -> onnxruntime vs Predictor on ``images``."""
    import onnx

    model = _conditioned_model(arch, images[0])
    ckpt = tmp_path / f"{arch}.pth"
    save_checkpoint(ckpt, model, categories=CATEGORIES)
    out = tmp_path / f"{arch}.onnx"
    t0 = time.perf_counter()
    assert _run_cli(["export-onnx", str(ckpt), "--out", str(out)]) == 0
    export_s = time.perf_counter() - t0

    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    s = model.info.input_size
    assert meta["segcore.categories"] == CATEGORIES and meta["segcore.input_size"] == s
    assert meta["segcore.arch"] == arch and meta["segcore.score_threshold"] == 0.05
    assert [i.name for i in proto.graph.input] == ["images"]
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, s, s]
    assert [o.name for o in proto.graph.output] == ["boxes", "scores", "classes", "masks", "num_detections"]
    ops = {n.op_type for n in proto.graph.node}
    assert "TopK" in ops and ("DeformConv" in ops) == arch.startswith("yolact_plus")

    runner = open_onnx(out, threads=2)  # the family is read from the file's segcore.arch
    assert isinstance(runner, OnnxYolact)
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    figures = {"export_s": export_s, "max_score_diff": 0.0, "min_mask_iou": 1.0, "detections": []}
    for image in images:
        pt = predictor.predict(image)
        ox = runner.predict(image)
        assert len(pt) > 0, "no detection: the comparison would be vacuous"
        nonempty = float(np.mean([m.any() for m in pt.masks]))
        assert nonempty >= 0.5, f"only {nonempty:.0%} of the PyTorch masks are non-empty"
        problems, stats = _mismatches(pt, ox)
        assert not problems, problems[:5]
        assert stats["index_matched"] >= 0.9 * len(pt)
        figures["max_score_diff"] = max(figures["max_score_diff"], stats["max_score_diff"])
        figures["min_mask_iou"] = min(figures["min_mask_iou"], stats["min_mask_iou"])
        figures["detections"].append(len(pt))

        # negative control: the comparison must catch a wrong export
        shifted = Prediction(ox.boxes, ox.scores, ox.category_ids, np.roll(ox.masks, 4, axis=2))
        assert _mismatches(pt, shifted)[0]
        rescored = Prediction(ox.boxes, ox.scores + 2e-3, ox.category_ids, ox.masks)
        assert _mismatches(pt, rescored)[0]
        dropped = Prediction(ox.boxes[1:], ox.scores[1:], ox.category_ids[1:], ox.masks[1:])
        assert _mismatches(pt, dropped)[0]
    print(f"{arch}: export {export_s:.1f} s, detections {figures['detections']}, max |score diff| "
          f"{figures['max_score_diff']:.2e}, min mask IoU {figures['min_mask_iou']:.5f}")
    return figures


def test_yolact_tiny_onnx_matches_pytorch(coco_tiny, tmp_path):
    figures = _export_and_compare("yolact_tiny", _images(coco_tiny), tmp_path)
    assert figures["max_score_diff"] <= 1e-3 and figures["min_mask_iou"] >= 0.99


def test_yolact_plus_tiny_onnx_matches_pytorch(coco_tiny, tmp_path):
    """YOLACT++: DCNv2 -> ONNX DeformConv (opset 19), mask re-scoring inside the graph."""
    figures = _export_and_compare("yolact_plus_tiny", _images(coco_tiny), tmp_path)
    assert figures["max_score_diff"] <= 1e-3 and figures["min_mask_iou"] >= 0.99


@pytest.mark.slow
def test_yolact_r50_550_onnx_matches_pytorch(coco_tiny, tmp_path):
    """A paper configuration (ResNet-50, 550 x 550, 19,248 priors): 20-60 s on 2 shared cores."""
    _export_and_compare("yolact_r50_550", _images(coco_tiny, 1), tmp_path)


@pytest.fixture(scope="module")
def tiny_and_input(coco_tiny):
    """A conditioned yolact_tiny and its ``[1, 3, 320, 320]`` float32 input (first test image)."""
    image = _images(coco_tiny, 1)[0]
    x = cv2.resize(image, (320, 320), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)[None].astype(np.float32)
    return _conditioned_model("yolact_tiny", image), x


def _ort_outputs(path: Path, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"images": x})


def test_padding_rows_and_raw_outputs(tiny_and_input, tmp_path):
    """Rows past ``num_detections`` are padding; valid rows are sorted, well-formed and equal to
    the PyTorch module that was exported."""
    model, x = tiny_and_input
    out = tmp_path / "t.onnx"
    report = export_yolact_onnx(model, out, categories=CATEGORIES, max_detections=300, score_threshold=0.5)
    assert report.exporter == "dynamo" and report.opset == 19 and report.proto_size == (80, 80)
    boxes, scores, classes, masks, num = _ort_outputs(out, x)
    n = int(num)
    assert boxes.shape == (300, 4) and masks.shape == (300, 80, 80) and classes.dtype == np.int64
    assert 0 < n < 300
    assert np.all(np.diff(scores[:n]) <= 0) and np.all((boxes[:n] >= 0) & (boxes[:n] <= 1))
    assert np.all(boxes[:n, 2] >= boxes[:n, 0]) and np.all((classes[:n] >= 0) & (classes[:n] < K))
    assert np.all(scores[n:] == 0) and np.all(classes[n:] == -1) and not masks[n:].any()
    wrapper = YolactInference(model, max_detections=300, score_threshold=0.5)
    with torch.no_grad():
        t_boxes, t_scores, t_classes, t_masks, t_num = wrapper(torch.from_numpy(x))
    assert int(t_num) == n and np.array_equal(t_classes.numpy(), classes)
    assert np.abs(t_scores.numpy() - scores).max() < 1e-4 and np.abs(t_masks.numpy() - masks).max() < 1e-3
    assert np.abs(t_boxes.numpy() - boxes).max() < 1e-4


def test_torchscript_exporter_gives_the_same_graph_outputs(tiny_and_input, tmp_path):
    model, x = tiny_and_input
    dyn = export_yolact_onnx(model, tmp_path / "d.onnx", categories=CATEGORIES)
    ts = export_yolact_onnx(model, tmp_path / "t.onnx", categories=CATEGORIES, dynamo=False)
    assert ts.exporter == "torchscript"
    a, b = _ort_outputs(dyn.path, x), _ort_outputs(ts.path, x)
    assert int(a[4]) == int(b[4]) > 0 and np.array_equal(a[2], b[2])
    for u, v in zip(a, b):
        assert np.abs(u.astype(np.float64) - v.astype(np.float64)).max() < 1e-4


def test_export_errors(tmp_path, capsys):
    model = build_model("yolact_plus_tiny", num_classes=K)
    with pytest.raises(OnnxExportError, match="DeformConv"):
        export_yolact_onnx(model, tmp_path / "p.onnx", categories=CATEGORIES, opset=18)
    with pytest.raises(OnnxExportError, match="deform_conv2d"):
        export_yolact_onnx(model, tmp_path / "p.onnx", categories=CATEGORIES, dynamo=False)
    with pytest.raises(OnnxExportError, match="3 categories"):
        export_yolact_onnx(build_model("yolact_tiny", num_classes=2), tmp_path / "c.onnx", categories=CATEGORIES)
    with pytest.raises(OnnxExportError, match="yolact"):
        YolactInference(torch.nn.Conv2d(3, 3, 1))
    with pytest.raises(OnnxExportError, match="blendmask family has no ONNX export"):
        export_onnx(build_model("blendmask_tiny", num_classes=K), tmp_path / "b.onnx", categories=CATEGORIES)
    assert not list(tmp_path.iterdir())
    (tmp_path / "junk.onnx").write_bytes(b"no protobuf")
    with pytest.raises(OnnxExportError, match="not an ONNX file exported by segcore"):
        open_onnx(tmp_path / "junk.onnx")
    (tmp_path / "junk.onnx").unlink()

    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    for argv in (["export-onnx", str(bad), "--out", str(tmp_path / "x.onnx")],
                 ["export-onnx", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "x.onnx")]):
        assert _run_cli(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()

    ckpt = tmp_path / "plus.pth"
    save_checkpoint(ckpt, model, categories=CATEGORIES)
    assert _run_cli(["export-onnx", str(ckpt), "--out", str(tmp_path / "x.onnx"), "--opset", "17"]) == 2
    assert "opset >= 19" in capsys.readouterr().err
