"""Fine-tuning loop (issue 7): stored split, train -> version n+1 with metrics, re-predict only what is
unreviewed, training in its own process (cancel, crash, resume). Tiny config on CPU, coco-tiny."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from annotator import masks
from annotator.jobs.prelabel import prelabel
from annotator.jobs.train import TrainDivergedError, prepare_train_job, run_train_job
from annotator.jobs.train_process import TrainProcess
from annotator.project import Project
from annotator.project import schema

N_GT, N_REST = 20, 4
TINY = dict(arch="yolact_tiny", input_size=96, batch_size=2, device="cpu")


@pytest.fixture(scope="module")
def base(tmp_path_factory, coco_tiny) -> Path:
    """base/images (24 coco-tiny train images), base/proj: ground truth accepted on the first 20."""
    root = tmp_path_factory.mktemp("loop")
    images = root / "images"
    images.mkdir()
    gt = json.loads((coco_tiny / "annotations" / "instances_train2017.json").read_text())
    chosen = sorted(gt["images"], key=lambda im: im["file_name"])[: N_GT + N_REST]
    for im in chosen:
        shutil.copy(coco_tiny / "train2017" / im["file_name"], images / im["file_name"])
    keep = {im["id"] for im in chosen[:N_GT]}
    sub = {"images": [im for im in gt["images"] if im["id"] in keep], "categories": gt["categories"],
           "annotations": [a for a in gt["annotations"] if a["image_id"] in keep]}
    (root / "gt20.json").write_text(json.dumps(sub))
    from annotator.io.coco import import_coco

    with Project.create(root / "proj", images_dir=images) as p:
        import_coco(p, root / "gt20.json", image_root=images)
        # validation images chosen now: below MIN_VALIDATION_IMAGES a job only keeps a stored split
        p.assign_splits([r["image_id"] for r in p.training_records()[0]], val_fraction=0.2)
    return root


@pytest.fixture
def project_dir(base, tmp_path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(base, dst)
    return dst / "proj"


def _rows(project: Project, states=("accepted", "edited", "rejected")) -> dict:
    q = f"SELECT * FROM annotations WHERE review_state IN ({','.join('?' * len(states))}) ORDER BY id"
    return {r[0]: r for r in project._conn.execute(q, states)}


def test_split_is_stored_stable_and_migrated(project_dir):
    with Project.open(project_dir) as p:
        ids = [r["image_id"] for r in p.training_records()[0]]
        with p.transaction():
            p._conn.execute("DELETE FROM image_splits")  # the fixture's split: start afresh
        first = p.assign_splits(ids[:10], val_fraction=0.2, seed=0)
        assert sorted(first.values()).count("val") == 2  # round(0.2 x 10), not a draw per image
        grown = p.assign_splits(ids[:16], val_fraction=0.2, seed=0)
        assert {i: grown[i] for i in ids[:10]} == first and list(grown.values()).count("val") == 3  # round(3.2)
        with p.transaction():
            p._conn.execute("DELETE FROM image_splits")
        first = p.assign_splits(ids[:10], val_fraction=0.2, seed=0)
        again = p.assign_splits(ids, val_fraction=0.5, seed=7)  # old images keep their split
        assert {i: again[i] for i in ids[:10]} == first
        assert p.image_splits() == again
        v1 = p.register_model_version(arch="yolact_tiny", checkpoint=project_dir / "a.pth", categories=[])
        v2 = p.register_model_version(arch="yolact_tiny", checkpoint=project_dir / "b.pth", categories=[], parent=v1)
        assert p.active_model_version() == v2
        p.set_active_model_version(v1)
        assert p.active_model_version() == v1
    # a version-1 project (before the split table) opens and is migrated
    conn = sqlite3.connect(project_dir / "annotator.sqlite")
    conn.execute("DROP TABLE image_splits")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with Project.open(project_dir) as p:
        assert p.image_splits() == {}
        assert p._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == \
            str(schema.SCHEMA_VERSION)


@pytest.mark.slow
def test_loop_train_prelabel_keeps_reviewed_work(project_dir):
    """accept GT on 20 images, train v1, corrections on predictions, train v2 (own process),
    pre-label unreviewed with v2: every accepted / edited / rejected row is byte-identical."""
    p = Project.open(project_dir)
    try:
        res1 = run_train_job(p, iterations=4, eval_every=4, log=lambda m: None, **TINY)
        assert res1.model_version == 1 and res1.init_source == "random" and res1.parent is None
        assert set(res1.metrics) >= {"segm", "bbox"} and res1.metrics["val_images"] >= 1
        splits = p.image_splits()
        rest = [im.id for im in p.images() if im.state == "unlabeled"]
        assert len(rest) == N_REST
        # predictions of version 1 on the rest (fixed masks: the test must not depend on an untrained model)
        cat = p.categories()[0].id
        for k, image_id in enumerate(rest):
            im = p.image(image_id)
            preds = []
            for j in range(3):
                m = np.zeros((im.height, im.width), bool)
                m[10 + 20 * j: 30 + 20 * j, 10: 40 + k] = True
                preds.append({"category_id": cat, "rle": masks.encode_mask(m), "score": 0.5 + 0.1 * j})
            p.replace_predictions(image_id, preds, 1)
        a0, a1, a2 = (p.annotations(rest[0]), p.annotations(rest[1]), p.annotations(rest[2]))
        p.set_review_state([a0[0].id], "accepted")
        edited = np.zeros((p.image(rest[1]).height, p.image(rest[1]).width), bool)
        edited[5:50, 5:60] = True
        p.update_mask(a1[0].id, rle=masks.encode_mask(edited))
        p.set_review_state([a2[0].id], "rejected")
        p.set_review_state([a.id for a in p.annotations(rest[3])], "accepted")  # image 4 fully reviewed
        before = _rows(p)
        predicted_before = {a.id for a in p.annotations(review_states=["predicted"])}
        assert len(predicted_before) == 6
    finally:
        p.close()

    # version 2, trained in its own process, from version 1
    run = TrainProcess(project_dir, iterations=4, eval_every=2, num_threads=1, **TINY)
    run.start()
    assert run.wait(300) == "finished", run.error
    assert run.result["model_version"] == 2 and run.result["init_source"] == "version"
    assert any(m.get("val") for m in run.history)
    p = Project.open(project_dir)
    try:
        v2 = p.model_version(2)
        assert v2.parent == 1 and v2.arch == "yolact_tiny" and v2.checkpoint.is_file()
        assert set(v2.metrics) >= {"segm", "bbox", "iteration"}
        # the registered checkpoint is the best evaluation's, and its stored AP is what it scores
        assert v2.metrics["segm"]["AP"] == max(h["segm_AP"] for h in v2.metrics["history"])
        from segcore.evaluation import evaluate_predictions
        from segcore.predictor import Predictor

        records, cats = p.training_records()
        val = [r for r in records if p.image_splits().get(r["image_id"]) == "val"]  # new images: unassigned, train
        assert len(val) == v2.metrics["val_images"] >= 1
        again = evaluate_predictions(Predictor.from_checkpoint(v2.checkpoint, device="cpu"), val, cats)
        assert again["segm"]["AP"] == pytest.approx(v2.metrics["segm"]["AP"], abs=1e-6)
        assert again["bbox"]["AP"] == pytest.approx(v2.metrics["bbox"]["AP"], abs=1e-6)
        trained = set(v2.data_snapshot["annotation_ids"])
        assert {a0[0].id, a1[0].id} <= trained and a2[0].id not in trained and not trained & predicted_before
        assert p.image_splits().items() >= splits.items()  # same split as round 1
        from annotator.jobs.train import ACTIVATION_FLOOR_AP

        # v1 (4 iterations) was not made active (AP at the floor); v2 continued it and is active
        # only if its validation AP is above the floor (annotator.jobs.train.should_activate)
        assert p.active_model_version() == (2 if v2.metrics["segm"]["AP"] > ACTIVATION_FLOOR_AP else None)

        from segcore.predictor import Predictor

        predictor = Predictor.from_checkpoint(v2.checkpoint, device="cpu")
        summary = prelabel(p, predictor, score_threshold=0.3, only_unreviewed=True, model_version=2)
        assert summary.skipped == N_GT + 1  # the 20 GT images and the fully reviewed one
        after = _rows(p)
        assert after == before  # byte-identical: every column of every reviewed annotation
        assert not {a.id for a in p.annotations(review_states=["predicted"])} & predicted_before
        assert all(a.model_version == 2 for a in p.annotations(review_states=["predicted"]))
        assert p._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        p.close()


@pytest.mark.slow
def test_cancel_registers_best_then_resume_finishes(project_dir):
    run = TrainProcess(project_dir, iterations=10, eval_every=2, patience=0, num_threads=1, **TINY)
    run.start()
    while run.running():
        msgs = run.poll(0.5)
        if any(m["type"] == "progress" and m["iteration"] >= 3 for m in msgs):
            run.cancel()
    assert run.wait(120) == "cancelled", run.error
    res = run.result
    assert res["stopped"] and res["iterations_done"] < 10
    assert Path(res["checkpoint"]).name == "model_best.pth" and res["metrics"]["iteration"] >= 2
    run_dir = Path(res["checkpoint"]).parent
    with Project.open(project_dir) as p:
        assert [v.id for v in p.model_versions()] == [1]
        assert p.model_version(1).metrics["stopped"] is True
        logs = []
        res2 = run_train_job(p, arch=None, resume=run_dir, log=logs.append)
        assert res2.init_source == "resume" and any("resuming" in m for m in logs)
        assert res2.iterations_done == 10 and res2.model_version == 2
        hist = res2.metrics["history"]
        assert hist[0]["iteration"] == 2 and hist[-1]["iteration"] == 10


@pytest.mark.slow
def test_killed_training_leaves_project_intact(project_dir):
    with Project.open(project_dir) as p:
        v1 = p.register_model_version(arch="yolact_tiny", checkpoint=project_dir / "old.pth", categories=[],
                                      metrics={"segm": {"AP": 0.1}})
        before_versions = [(v.id, v.checkpoint, v.metrics) for v in p.model_versions()]
        before_rows = _rows(p)
    run = TrainProcess(project_dir, iterations=500, eval_every=2, init=None, num_threads=1, **TINY)
    run.start()
    deadline = time.monotonic() + 240
    while run.running() and time.monotonic() < deadline:
        if any(m["type"] == "progress" and m["iteration"] >= 3 for m in run.poll(0.5)):
            run.kill()
    assert run.wait(30) == "failed"
    assert "SIGKILL" in run.error and "unchanged" in run.error
    with Project.open(project_dir) as p:
        assert p._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert [(v.id, v.checkpoint, v.metrics) for v in p.model_versions()] == before_versions
        assert _rows(p) == before_rows and p.active_model_version() == v1
        runs = sorted((project_dir / "models").glob("yolact_tiny-*"))
        assert (runs[-1] / "model_latest.pth").is_file()  # resumable
        spec = prepare_train_job(p, arch=None, resume=runs[-1], log=lambda m: None)
        assert spec.init_source == "resume" and spec.iterations == 500


def test_errors_in_the_child_are_reported(project_dir):
    run = TrainProcess(project_dir, arch="no_such_arch", num_threads=1)
    run.start()
    assert run.wait(120) == "failed"
    assert "unknown architecture" in run.error
    with Project.open(project_dir) as p:
        assert p.model_versions() == []


def test_nonfinite_storm_is_an_error(project_dir, monkeypatch):
    """A run whose loss stays non-finite stops (the engine's DivergenceHook) and raises; nothing is
    registered."""
    import segcore.modeling.yolact.loss as yolact_loss_module

    real = yolact_loss_module.yolact_loss
    calls = []

    def nan_loss(outputs, targets, **kw):
        calls.append(1)
        return {k: v * float("nan") for k, v in real(outputs, targets, **kw).items()}

    monkeypatch.setattr(yolact_loss_module, "yolact_loss", nan_loss)  # the family's make_loss reads it here
    with Project.open(project_dir) as p:
        with pytest.raises(TrainDivergedError, match="not finite for 20 iterations"):
            run_train_job(p, iterations=100, log=lambda m: None, **TINY)
        assert p.model_versions() == []
    assert len(calls) == 20  # stopped at the 20th non-finite step, not at 100


def test_train_spec_is_validated_on_load(project_dir, tmp_path):
    """OUT/train_spec.json round-trips; a missing, unknown or mistyped field is one AnnotatorError
    naming the field (pydantic), not a TypeError deep in the run."""
    from annotator.errors import AnnotatorError
    from annotator.jobs.train import TrainSpec

    with Project.open(project_dir) as p:
        spec = prepare_train_job(p, out_dir=tmp_path / "run", log=lambda m: None, **{
            k: v for k, v in TINY.items() if k != "batch_size"})
    path = Path(spec.out_dir) / "train_spec.json"
    assert TrainSpec.load(path) == spec
    good = json.loads(path.read_text())
    for change, field in ((lambda d: d.pop("iterations"), "iterations"),
                          (lambda d: d.update(bogus=1), "bogus"),
                          (lambda d: d.update(batch_size="many"), "batch_size"),
                          (lambda d: d.update(categories={"not": "a list"}), "categories")):
        bad = dict(good)
        change(bad)
        path.write_text(json.dumps(bad))
        with pytest.raises(AnnotatorError, match=rf"train_spec\.json: {field}"):
            TrainSpec.load(path)
    path.write_text("{not json")
    with pytest.raises(AnnotatorError, match="cannot read the training plan"):
        TrainSpec.load(path)
