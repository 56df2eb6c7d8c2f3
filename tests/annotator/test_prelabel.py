"""Pre-label job: fake predictor (interface of segcore.predictor) and, when present, real yolact_tiny."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from annotator import masks
from annotator.errors import AnnotatorError
from annotator.jobs.prelabel import prelabel
from annotator.project import Project


@dataclass
class FakePrediction:
    boxes: np.ndarray
    scores: np.ndarray
    category_ids: np.ndarray
    masks: np.ndarray

    def to_rle(self) -> list[dict]:
        return [masks.encode_mask(m) for m in self.masks]


class FakePredictor:
    """Two instances per image: a square of category ids[0] and one of ids[1]; records inputs."""

    def __init__(self, categories):
        self.categories = categories
        self.seen = []

    def predict(self, image: np.ndarray, *, score_threshold: float = 0.05) -> FakePrediction:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        self.seen.append((image.shape, tuple(int(v) for v in image[0, 0]), score_threshold))
        h, w = image.shape[:2]
        m = np.zeros((2, h, w), bool)
        m[0, 2:8, 2:8] = True
        m[1, 10:15, 3:9] = True
        ids = [c["id"] for c in self.categories[:2]]
        return FakePrediction(boxes=np.array([[2, 2, 8, 8], [3, 10, 9, 15]], np.float32),
                              scores=np.array([0.9, 0.4], np.float32), category_ids=np.array(ids, np.int64),
                              masks=m)


CATS = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]


@pytest.fixture
def project(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for k in range(3):
        img = np.zeros((20, 24 + k, 3), np.uint8)
        img[:, :] = (255, 0, 0)  # BGR blue: the predictor must see RGB (0, 0, 255)
        cv2.imwrite(str(folder / f"im{k}.png"), img)
    p = Project.create(tmp_path / "proj", images_dir=folder)
    yield p
    p.close()


def test_prelabel_stores_predictions(project):
    fake = FakePredictor(CATS)
    calls = []
    summary = prelabel(project, fake, score_threshold=0.2, progress=lambda d, t: calls.append((d, t)))
    assert (summary.images, summary.instances, summary.skipped) == (3, 6, 0)
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert fake.seen[0] == ((20, 24, 3), (0, 0, 255), 0.2)
    assert [(c.id, c.name) for c in project.categories()] == [(1, "person"), (3, "car")]  # created
    assert {im.state for im in project.images()} == {"predicted"}
    anns = project.annotations(project.images()[0].id)
    assert [(a.category_id, a.source, a.review_state) for a in anns] == [(1, "model", "predicted"),
                                                                         (3, "model", "predicted")]
    assert anns[0].score == pytest.approx(0.9) and anns[0].bbox == [2.0, 2.0, 6.0, 6.0] and anns[0].area == 36


def test_rerun_replaces_only_predictions(project):
    fake = FakePredictor(CATS)
    img = project.images()[0].id
    prelabel(project, fake)
    first = project.annotations(img)
    project.set_review_state([first[0].id], "accepted")
    human = project.add_annotation(img, 1, polygon=[[0, 0, 5, 0, 5, 5]])
    v = project.register_model_version(arch="fake", checkpoint=project.root / "m.pt", categories=CATS)
    summary = prelabel(project, fake, only_unreviewed=False, model_version=v)
    assert summary.skipped == 0
    anns = {a.id: a for a in project.annotations(img)}
    assert first[0].id in anns and anns[first[0].id].review_state == "accepted"  # kept
    assert human in anns and first[1].id not in anns  # the old prediction was replaced
    preds = [a for a in anns.values() if a.review_state == "predicted"]
    assert len(preds) == 2 and all(a.model_version == v for a in preds)
    assert len(project.annotations()) == 3 * 2 + 2  # never duplicated


def test_only_unreviewed_and_stop(project):
    fake = FakePredictor(CATS)
    project.set_done([project.images()[1].id])
    summary = prelabel(project, fake, should_stop=lambda: len(fake.seen) >= 1)
    assert (summary.images, summary.skipped, summary.stopped) == (1, 1, True)
    summary = prelabel(project, fake, image_ids=[project.images()[2].id])
    assert (summary.images, summary.skipped) == (1, 0)
    assert project.image_state(project.images()[1].id) == "done"
    assert project.annotations(project.images()[1].id) == []


def test_category_mapping(project):
    project.add_category("vehicle", id=3)          # same id, other name...
    project.add_category("car", id=8)              # ...but the name exists: matched by name
    project.add_category("person", id=1)           # same id and name
    prelabel(project, FakePredictor(CATS))
    assert {a.category_id for a in project.annotations()} == {1, 8}
    clash = [{"id": 1, "name": "person"}, {"id": 8, "name": "truck"}]  # id 8 is 'car', no 'truck'
    before = len(project.annotations())
    with pytest.raises(AnnotatorError, match="'truck'.*'car'"):
        prelabel(project, FakePredictor(clash), only_unreviewed=False)
    assert len(project.annotations()) == before


def test_prelabel_with_real_yolact_tiny(project):
    import torch

    from segcore.modeling.registry import build_model
    from segcore.predictor import Predictor

    torch.manual_seed(0)
    model = build_model("yolact_tiny", num_classes=2)
    predictor = Predictor(model, categories=CATS)
    summary = prelabel(project, predictor, score_threshold=0.0)
    assert summary.images == 3 and summary.instances > 0
    anns = project.annotations()
    assert len(anns) == summary.instances
    for a in anns:
        img = project.image(a.image_id)
        assert a.rle["size"] == [img.height, img.width] and a.category_id in (1, 3)
        assert a.source == "model" and 0.0 <= a.score <= 1.0 and a.area > 0


def test_results_export_against_reference_coco(tmp_path, coco_tiny):
    """Predictions on a plain image folder get the reference file's image ids (matched by name)."""
    import contextlib
    import io
    import json

    from pycocotools.coco import COCO

    from annotator.io import export_results

    gt_path = coco_tiny / "annotations" / "instances_val2017.json"
    with Project.create(tmp_path / "proj", images_dir=coco_tiny / "val2017") as project:
        chosen = [im.id for im in project.images()[:3]]
        prelabel(project, FakePredictor(CATS), image_ids=chosen)
        out = tmp_path / "results.json"
        assert export_results(project, out, gt_json=gt_path) == 6
        names = {project.image(i).file_name.rsplit("/", 1)[-1] for i in chosen}
        with pytest.raises(AnnotatorError, match="results.json: .*top level"):  # not an instances file
            export_results(project, tmp_path / "r2.json", gt_json=out)
        other = tmp_path / "other.json"
        other.write_text(json.dumps({"images": [{"id": 1, "file_name": "x.jpg", "width": 2, "height": 2}],
                                     "annotations": [], "categories": []}))
        with pytest.raises(AnnotatorError, match="other.json: images: no file_name matches"):
            export_results(project, tmp_path / "r2.json", gt_json=other)
    gt_images = {im["file_name"]: im["id"] for im in json.loads(gt_path.read_text())["images"]}
    results = json.loads(out.read_text())
    assert {r["image_id"] for r in results} == {gt_images[n] for n in names}
    with contextlib.redirect_stdout(io.StringIO()):
        COCO(str(gt_path)).loadRes(str(out))


class FakeBatchPredictor(FakePredictor):
    """FakePredictor with ``predict_batch`` (records each batch's size) and a ``device``."""

    def __init__(self, categories, device="cpu"):
        super().__init__(categories)
        self.device = type("Device", (), {"type": device})()
        self.batches = []

    def predict_batch(self, images, *, score_threshold: float = 0.05):
        self.batches.append(len(images))
        return [self.predict(im, score_threshold=score_threshold) for im in images]


def test_batched_prelabel_semantics(project):
    fake = FakeBatchPredictor(CATS)
    calls = []
    summary = prelabel(project, fake, batch_size=2, progress=lambda d, t: calls.append((d, t)))
    assert (summary.images, summary.instances, summary.stopped) == (3, 6, False)
    assert fake.batches == [2]  # the last batch of one image goes through predict
    assert [s[0] for s in fake.seen] == [(20, 24, 3), (20, 25, 3), (20, 26, 3)]  # in order
    assert calls == [(1, 3), (2, 3), (3, 3)]  # progress after every image
    fake = FakeBatchPredictor(CATS)
    summary = prelabel(project, fake, batch_size=2, only_unreviewed=False, should_stop=lambda: len(fake.batches) >= 1)
    assert (summary.images, summary.stopped) == (2, True)  # checked before each batch
    with pytest.raises(ValueError, match="batch_size"):
        prelabel(project, fake, batch_size=0)


def test_batches_respect_the_pixel_budget(project, monkeypatch):
    import annotator.jobs.prelabel as job

    monkeypatch.setattr(job, "MAX_BATCH_PIXELS", 20 * 24 + 20 * 25)  # the first two images fit
    fake = FakeBatchPredictor(CATS)
    assert prelabel(project, fake, batch_size=8).images == 3
    assert fake.batches == [2]


def test_default_batch_size():
    from annotator.jobs.prelabel import CUDA_BATCH_SIZE, default_batch_size

    assert default_batch_size(FakePredictor(CATS)) == 1  # no predict_batch, no device
    assert default_batch_size(FakeBatchPredictor(CATS, "cpu")) == 1
    assert default_batch_size(FakeBatchPredictor(CATS, "cuda")) == CUDA_BATCH_SIZE == 8


@pytest.mark.parametrize("batch_size,num_workers", [(1, 0), (3, 0), (1, 1), (2, 2)])
def test_unreadable_image_is_skipped_and_marked(project, batch_size, num_workers):
    """A bad file in the middle is skipped, marked unreadable and named; the images after it are
    pre-labelled; once the file is readable again the next run clears the mark."""
    images = project.images()
    path = project.image_path(images[1].id)
    good = path.read_bytes()
    path.write_bytes(b"not an image")
    project.image_path(images[2].id).rename(project.image_path(images[2].id).with_suffix(".gone"))
    fake = FakeBatchPredictor(CATS)
    summary = prelabel(project, fake, batch_size=batch_size, num_workers=num_workers)
    assert summary.images == 1 and summary.instances == 2
    assert [u.split(":")[0] for u in summary.unreadable] == [images[1].file_name, images[2].file_name]
    assert "not a valid image" in summary.unreadable[0] and "No such file" in summary.unreadable[1]
    assert [project.image_state(i.id) for i in images] == ["predicted", "unreadable", "unreadable"]
    assert project.image(images[1].id).error.startswith("not a valid image")
    path.write_bytes(good)
    summary = prelabel(project, fake, image_ids=[images[1].id], batch_size=batch_size, num_workers=num_workers)
    assert summary.unreadable == () and project.image_state(images[1].id) == "predicted"


def test_image_changed_to_another_size_is_skipped(project):
    images = project.images()
    cv2.imwrite(str(project.image_path(images[0].id)), np.zeros((7, 9, 3), np.uint8))
    summary = prelabel(project, FakePredictor(CATS))
    assert summary.images == 2 and len(summary.unreadable) == 1
    assert "now 9 x 7 px, the project has 24 x 20" in summary.unreadable[0]
    assert project.annotations(images[0].id) == []


def test_batched_prelabel_matches_single_with_real_yolact_tiny(tmp_path, coco_tiny):
    """batch_size=3 stores the same rows as batch_size=1 (real model, 4 coco-tiny images of 3 sizes)."""
    import json
    import shutil

    import torch

    from segcore.modeling.registry import build_model
    from segcore.predictor import Predictor

    data = json.loads((coco_tiny / "annotations" / "instances_val2017.json").read_text())
    by_size = {}
    for im in sorted(data["images"], key=lambda i: i["id"]):
        by_size.setdefault((im["height"], im["width"]), []).append(im["file_name"])
    names = by_size[(480, 640)][:2] + by_size[(427, 640)][:1] + by_size[(640, 480)][:1]
    folder = tmp_path / "images"
    folder.mkdir()
    for n in names:
        shutil.copy(coco_tiny / "val2017" / n, folder / n)
    torch.manual_seed(0)
    predictor = Predictor(build_model("yolact_tiny", num_classes=2, input_size=192), categories=CATS)
    rows = {}
    for bs in (1, 3):
        with Project.create(tmp_path / f"proj{bs}", images_dir=folder) as p:
            summary = prelabel(p, predictor, score_threshold=0.05, batch_size=bs)
            assert summary.images == 4 and summary.instances > 0
            rows[bs] = {p.image(i.id).file_name: [(a.category_id, a.score, a.rle, a.bbox) for a in p.annotations(i.id)]
                        for i in p.images()}
    assert rows[1].keys() == rows[3].keys()
    for name in rows[1]:
        single, batched = rows[1][name], rows[3][name]
        assert len(single) == len(batched) > 0
        for (c1, s1, r1, b1), (c3, s3, r3, b3) in zip(single, batched):
            assert c1 == c3 and s1 == pytest.approx(s3, abs=1e-4)
            assert masks.rle_iou(r1, r3) >= 0.99 and np.allclose(b1, b3, atol=1.0)


class CountingProject:
    """A ``Project`` that counts its outermost (committed) transactions."""

    def __init__(self, project):
        self._p, self.commits, self._depth = project, 0, 0

    def __getattr__(self, name):
        return getattr(self._p, name)

    @contextlib.contextmanager
    def transaction(self):
        self._depth += 1
        try:
            with self._p.transaction():
                yield self
        finally:
            self._depth -= 1
        if self._depth == 0:
            self.commits += 1


def _rows(p) -> dict:
    """Every stored annotation by image file name: all columns except ids and timestamps."""
    return {p.image(i).file_name: [(a.category_id, a.rle, a.bbox, a.area, a.score, a.source, a.review_state,
                                    a.model_version) for a in p.annotations(i)] for i in p.image_ids()}


def _folder(tmp_path, coco_tiny, n: int):
    """``n`` coco-tiny val images at a quarter of their size, as ``images/00.png``, ..."""
    folder = tmp_path / "images"
    folder.mkdir()
    for k, src in enumerate(sorted((coco_tiny / "val2017").glob("*.jpg"))[:n]):
        img = cv2.imread(str(src))
        cv2.imwrite(str(folder / f"{k:02d}.png"), cv2.resize(img, (img.shape[1] // 4, img.shape[0] // 4)))
    return folder


def test_batched_writes_store_the_same_rows_as_per_image_writes(tmp_path, coco_tiny):
    """The pipeline (reader process, one transaction for the run) stores exactly the rows of the
    per-image loop (no reader process, one transaction per image), for a real model."""
    import torch

    from segcore.modeling.registry import build_model
    from segcore.predictor import Predictor

    folder = _folder(tmp_path, coco_tiny, 6)
    torch.manual_seed(0)
    predictor = Predictor(build_model("yolact_tiny", num_classes=2, input_size=128), categories=CATS)
    rows, commits = {}, {}
    for name, kw in (("per_image", {"num_workers": 0, "write_images": 1}),
                     ("batched", {"num_workers": 1, "write_images": 64, "write_seconds": 1e9})):
        with Project.create(tmp_path / name, images_dir=folder) as p:
            counted = CountingProject(p)
            summary = prelabel(counted, predictor, score_threshold=0.05, model_version=None, **kw)
            assert summary.images == 6 and summary.instances > 0
            rows[name], commits[name] = _rows(p), counted.commits
    assert rows["batched"] == rows["per_image"]
    assert commits == {"per_image": 1 + 6, "batched": 1 + 1}  # + the category mapping's transaction


def test_unreadable_images_in_a_batched_transaction(tmp_path, coco_tiny):
    """Bad files between good ones, all in one write transaction: skipped, marked and named."""
    folder = _folder(tmp_path, coco_tiny, 6)
    with Project.create(tmp_path / "proj", images_dir=folder) as p:
        cv2.imwrite(str(folder / "02.png"), np.zeros((9, 7, 3), np.uint8))   # changed to another size
        (folder / "04.png").write_bytes(b"not an image")
        counted = CountingProject(p)
        summary = prelabel(counted, FakeBatchPredictor(CATS), batch_size=2, num_workers=1, write_seconds=1e9)
        assert counted.commits == 1 + 1
        assert summary.images == 4 and summary.instances == 8 and len(summary.unreadable) == 2
        assert summary.unreadable[0].startswith("../images/02.png: changed on disk: now 7 x 9 px")
        assert summary.unreadable[1].startswith("../images/04.png: not a valid image")
        assert [p.image_state(i) for i in p.image_ids()] == ["predicted", "predicted", "unreadable", "predicted",
                                                             "unreadable", "predicted"]


def test_cancel_stops_within_one_batch_and_keeps_what_was_reported(tmp_path, coco_tiny):
    folder = _folder(tmp_path, coco_tiny, 9)
    with Project.create(tmp_path / "proj9", images_dir=folder) as p:
        fake = FakeBatchPredictor(CATS)
        asked = []

        def progress(done, total):
            if not asked:
                asked.append(len(fake.batches))   # forward passes begun when the stop was asked

        summary = prelabel(p, fake, batch_size=2, num_workers=1, write_seconds=1e9, progress=progress,
                           should_stop=lambda: bool(asked))
        assert summary.stopped and len(fake.batches) == asked[0] < 5   # no forward pass after the stop
        predicted = 2 * len(fake.batches)
        assert summary.images == predicted and summary.instances == 2 * predicted
        states = [p.image_state(i) for i in p.image_ids()]
        assert states == ["predicted"] * predicted + ["unlabeled"] * (9 - predicted)  # committed at the stop


def test_readers_resize_in_worker_processes(project):
    """With a Predictor, the DataLoader workers return the resized network input (not the
    decoded image), and the network input equals the predictor's own preprocessing."""
    import torch

    from annotator.jobs.prelabel import PrelabelImages, plan_prelabel
    from segcore.modeling.registry import build_model
    from segcore.predictor import Predictor

    predictor = Predictor(build_model("yolact_tiny", num_classes=2, input_size=64), categories=CATS)
    items, _ = plan_prelabel(project)
    loader = torch.utils.data.DataLoader(PrelabelImages(items, predictor.input_transform()), batch_size=1,
                                         collate_fn=list, num_workers=1, multiprocessing_context="spawn")
    loaded = [it for batch in loader for it in batch]
    assert [it.image_id for it in loaded] == [i.image_id for i in items]
    for it, item in zip(loaded, items):
        assert it.error is None and it.size == (item.height, item.width)
        # YOLACT's official input path resizes the float image (FastBaseTransform): float32
        assert it.data.dtype == torch.float32 and tuple(it.data.shape) == (3, 64, 64)
        x, hw = predictor.batch_inputs([it.data])
        ref, ref_hw = predictor.preprocess_batch([cv2.cvtColor(cv2.imread(item.path), cv2.COLOR_BGR2RGB)])
        assert hw == ref_hw and torch.equal(x, ref)


def test_cpu_runs_read_in_process_below_four_cores(monkeypatch):
    """The default readers: none on a CPU of 2 logical cores (the reader slowed the model there),
    one from 4 cores, several on CUDA, none for a handful of images."""
    import types

    from annotator.jobs import prelabel as pl

    cpu = types.SimpleNamespace(device=types.SimpleNamespace(type="cpu"))
    cuda = types.SimpleNamespace(device=types.SimpleNamespace(type="cuda"), predict_batch=None)
    monkeypatch.setattr(pl.os, "cpu_count", lambda: 2)
    assert pl.default_num_workers(cpu, 80) == 0
    assert pl.default_num_workers(cuda, 80) == 1
    monkeypatch.setattr(pl.os, "cpu_count", lambda: 8)
    assert pl.default_num_workers(cpu, 80) == 1
    assert pl.default_num_workers(cpu, pl.MIN_IMAGES_FOR_WORKERS - 1) == 0
    assert pl.default_num_workers(cuda, 80) == 4
    started = []
    monkeypatch.setattr(pl, "_worker_context", lambda: started.append(1) or types.SimpleNamespace(
        get_start_method=lambda: "spawn"))
    monkeypatch.setattr(pl.os, "cpu_count", lambda: 2)
    pl.prepare_workers(80, "cpu")
    assert started == []  # no reader server on a 2-core CPU run
    pl.prepare_workers(80, "cuda")
    assert started == [1]
