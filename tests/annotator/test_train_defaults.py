"""The fine-tuning job's default optimiser follows each family's official recipe (lr scaled
linearly with the batch) and reaches the engine."""

from __future__ import annotations

import pytest

from annotator.jobs.train import default_optim


@pytest.mark.parametrize("arch, batch, lr, wd", [
    ("yolact_r50_550", 8, 1e-3, 5e-4),          # yolact_base_config: lr 1e-3 at batch 8
    ("yolact_plus_r101_550", 4, 5e-4, 5e-4),
    ("blendmask_r50", 16, 0.01, 1e-4),          # Base-BlendMask.yaml: BASE_LR 0.01 at 16
    ("centermask_lite_v19", 4, 0.0025, 1e-4),   # Base-CenterMask-VoVNet.yaml: 0.01 at 16
])
def test_default_optim_per_family(arch, batch, lr, wd):
    got_lr, got_wd = default_optim(arch, batch)
    assert got_lr == pytest.approx(lr) and got_wd == wd


class _Stop(Exception):
    pass


def test_job_passes_the_family_defaults_to_the_engine(monkeypatch, tmp_path):
    import cv2
    import numpy as np
    import segcore.engine

    from annotator import masks
    from annotator.jobs.train import TrainSpec, run_train_job
    from annotator.project import Project

    assert TrainSpec.__dataclass_fields__["weight_decay"].default == 5e-4   # old spec files still load
    imgs = tmp_path / "images"
    imgs.mkdir()
    for i in range(3):
        cv2.imwrite(str(imgs / f"{i}.png"), np.full((64, 64, 3), 40 * i, np.uint8))
    seen = {}

    def fake_train(model, records, categories, **kw):
        seen.update(kw, arch=model.info.arch)
        raise _Stop

    monkeypatch.setattr(segcore.engine, "train", fake_train)
    with Project.create(tmp_path / "proj", images_dir=imgs) as p:
        p.add_category("thing")
        m = np.zeros((64, 64), bool)
        m[10:40, 10:40] = True
        for im in p.images():
            p.add_annotation(im.id, 1, rle=masks.encode_mask(m))
        for arch, lr, wd in (("blendmask_tiny", 0.01 * 2 / 16, 1e-4), ("yolact_tiny", 1e-3 * 2 / 8, 5e-4)):
            with pytest.raises(_Stop):
                run_train_job(p, arch=arch, iterations=2, batch_size=2, device="cpu", input_size=64,
                              log=lambda m: None)
            assert seen["arch"] == arch and seen["lr"] == pytest.approx(lr) and seen["weight_decay"] == wd


def _official_tiny_file(path):
    """A yolact_tiny checkpoint in the official dbolya/yolact layout (a plain state_dict; segcore's
    YOLACT keys are the official ones) for COCO's 80 classes, filled with the seeded values of
    ``tests/fixtures/yolact_parity_weights.py``: no network, no download."""
    import importlib.util
    from pathlib import Path

    import torch

    from segcore.modeling.registry import build_model

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "yolact_parity_weights.py"
    spec = importlib.util.spec_from_file_location("yolact_parity_weights", fixture)
    pw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pw)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in build_model("yolact_tiny", num_classes=80).state_dict().items()}
    state = pw.parity_state_dict(shapes, 7)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


@pytest.fixture
def coco_start(monkeypatch, tmp_path):
    """A project of 3 labelled images, an empty torch hub (no ImageNet file), and a downloaded
    official COCO checkpoint of yolact_tiny in the weights cache ($XDG_CACHE_HOME), declared by a
    registry entry as ``annotator download-weights`` leaves it (file + remembered sha256)."""
    import cv2
    import numpy as np

    from annotator import masks, weights
    from annotator.project import Project

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = tmp_path / "xdg-cache" / "annotator" / "weights" / "yolact_tiny_coco.pth"
    state = _official_tiny_file(path)
    weights._sidecar(path).write_text(f"{weights.sha256_of(path)}  {path.name}\n", encoding="ascii")
    entry = weights.WeightsEntry(name="yolact_tiny_coco", url="https://example.invalid/yolact_tiny_coco.pth",
                                 filename=path.name, arch="yolact_tiny", kind="coco")
    monkeypatch.setitem(weights.WEIGHTS, entry.name, entry)
    imgs = tmp_path / "images"
    imgs.mkdir()
    for i in range(3):
        cv2.imwrite(str(imgs / f"{i}.png"), np.full((64, 64, 3), 40 * i, np.uint8))
    project = Project.create(tmp_path / "proj", images_dir=imgs)
    project.add_category("thing")
    m = np.zeros((64, 64), bool)
    m[10:40, 10:40] = True
    for im in project.images():
        project.add_annotation(im.id, 1, rle=masks.encode_mask(m))
    yield project, path, state
    project.close()


def _plan(project, tmp_path, logs):
    from annotator.jobs.train import prepare_train_job

    return prepare_train_job(project, arch="yolact_tiny", iterations=2, batch_size=2, device="cpu", input_size=64,
                             out_dir=tmp_path / "run", log=logs.append)


def test_train_starts_from_a_downloaded_official_coco_checkpoint(coco_start, tmp_path):
    import re

    import torch

    from annotator.jobs.train import build_spec_model, find_coco_checkpoint
    from annotator.ui.training import start_weights_text

    project, path, state = coco_start
    assert find_coco_checkpoint("yolact_tiny") == path and find_coco_checkpoint("yolact_r50_550") is None
    assert start_weights_text(project, "yolact_tiny") == (f"official COCO weights downloaded ({path.name}); "
                                                          "class layers random init")
    logs = []
    spec = _plan(project, tmp_path, logs)
    assert spec.init_source == "coco" and spec.init_path == str(path) and spec.parent is None
    m = re.fullmatch(rf"starting from the official COCO weights {re.escape(str(path))} "
                     r"\((\d+)/(\d+) tensors; class layers random init\)", spec.init_note)
    assert m and spec.init_note in logs, spec.init_note
    copied, total = int(m.group(1)), int(m.group(2))
    assert total == len(state) and 0 < copied < total  # everything but the class layers

    model, notes = build_spec_model(spec)
    assert notes[0] == f"initialised {copied}/{total} tensors from the official COCO weights {path}"
    assert "prediction_layers.0.conf_layer.weight" in notes[1]  # 81 COCO logits per prior vs 2
    own = model.state_dict()
    key = "backbone.layers.2.0.conv1.weight"
    assert torch.equal(own[key], state[key]) and torch.equal(own["proto_net.0.weight"], state["proto_net.0.weight"])
    assert own["prediction_layers.0.conf_layer.weight"].shape != state["prediction_layers.0.conf_layer.weight"].shape


def test_train_passes_over_a_coco_checkpoint_that_changed_or_is_refused(coco_start, tmp_path):
    import torch

    from annotator import weights

    project, path, state = coco_start
    body = path.read_bytes()
    path.write_bytes(body[:-1] + bytes([body[-1] ^ 0xFF]))  # changed since the download: the hash no longer fits
    logs = []
    spec = _plan(project, tmp_path, logs)
    assert spec.init_source == "random" and spec.init_path is None
    assert any(line.startswith(f"{path}: downloaded yolact_tiny_coco does not verify") for line in logs), logs

    torch.save({**state, "not_a_yolact_key.weight": torch.zeros(1)}, path)  # verifies, but the importer refuses it
    weights._sidecar(path).write_text(f"{weights.sha256_of(path)}  {path.name}\n", encoding="ascii")
    logs = []
    spec = _plan(project, tmp_path, logs)
    assert spec.init_source == "random" and spec.init_path is None
    refused = [line for line in logs if line.startswith("the downloaded official COCO weights cannot be used")]
    assert len(refused) == 1 and "not_a_yolact_key" in refused[0], logs
    assert spec.init_note.startswith("no model version, --init, downloaded COCO checkpoint or ImageNet weights")
