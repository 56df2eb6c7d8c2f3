"""Export and pre-label stream over the project: their peak Python memory (``tracemalloc``)
follows one image's annotations, not the whole project's."""

from __future__ import annotations

import gc
import json
import tracemalloc

import cv2
import numpy as np
import pytest

from annotator import masks
from annotator.io.coco import export_coco, export_results
from annotator.jobs.prelabel import prelabel
from annotator.project import Project

H = W = 64


def _noisy_rle(rng) -> dict:
    """A speckled mask: its compressed RLE is ~1.5 KB, so annotations dominate the project size."""
    return masks.encode_mask(rng.random((H, W)) < 0.5)


def _project(tmp_path, n_images: int, per_image: int):
    folder = tmp_path / f"images{n_images}"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((H, W, 3), np.uint8))
    for k in range(1, n_images):
        (folder / f"{k:05d}.png").symlink_to(folder / "a.png")
    p = Project.create(tmp_path / f"proj{n_images}", images_dir=folder)
    cat = p.add_category("thing").id
    rng = np.random.default_rng(0)
    with p.transaction():
        for image_id in p.image_ids():
            p.replace_predictions(image_id, [{"category_id": cat, "score": 0.5, "rle": _noisy_rle(rng)}
                                             for _ in range(per_image)], None)
    return p


def _peak(fn) -> int:
    """Peak traced memory of ``fn()`` above what was allocated before it. The callers run every
    measured call once before (warm), so process-wide tables (e.g. the interned strings that
    pathlib makes of each file name) have their final size and do not count."""
    gc.collect()  # garbage of earlier work must not be collected (and finalised) inside the window
    was_tracing = tracemalloc.is_tracing()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        if not was_tracing:
            tracemalloc.stop()


@pytest.mark.slow
def test_export_memory_does_not_grow_with_the_annotations(tmp_path):
    small, big = _project(tmp_path, 50, 20), _project(tmp_path, 400, 20)
    rle_bytes = sum(len(a.rle["counts"]) for a in big.annotations())
    assert rle_bytes > 10_000_000
    calls = {}
    for name, p in (("small", small), ("big", big)):
        calls[name] = lambda p=p, name=name: export_coco(p, tmp_path / f"{name}.json", include="all")
        calls[name + "_results"] = lambda p=p, name=name: export_results(p, tmp_path / f"{name}_res.json")
    for fn in calls.values():
        fn()
    keep = [p.image_path(i) for p in (small, big) for i in p.image_ids()]  # see the pre-label test
    peaks = {name: _peak(fn) for name, fn in calls.items()}
    exported = json.loads((tmp_path / "big.json").read_text())
    assert len(exported["annotations"]) == 8000 and len(exported["images"]) == 400
    assert len(json.loads((tmp_path / "big_res.json").read_text())) == 8000
    # the peak grows with the image list (~1.5 KB of records per image), not with the masks
    assert peaks["big"] < rle_bytes / 10 and peaks["big_results"] < rle_bytes / 10
    assert peaks["big"] < 10 * peaks["small"] + 500_000
    del keep
    small.close()
    big.close()


class _Fake:
    categories = [{"id": 1, "name": "thing"}]

    def __init__(self):
        self.rng = np.random.default_rng(1)

    def predict(self, image, *, score_threshold=0.05):
        from tests.annotator.test_prelabel import FakePrediction

        m = self.rng.random((6, *image.shape[:2])) < 0.5
        return FakePrediction(boxes=np.zeros((6, 4), np.float32), scores=np.full(6, 0.9, np.float32),
                              category_ids=np.ones(6, np.int64), masks=m)


@pytest.mark.slow
def test_prelabel_memory_does_not_grow_with_the_images(tmp_path):
    small, big = _project(tmp_path, 30, 0), _project(tmp_path, 180, 0)
    prelabel(small, _Fake())
    prelabel(big, _Fake())
    # pathlib interns every part of every path it makes; Python 3.11 drops an interned string with
    # its last reference, and re-interning it later can resize the interpreter's whole intern
    # table (a 1.8 MB allocation here, unrelated to the work measured): keep the parts alive
    keep = [p.image_path(i) for p in (small, big) for i in p.image_ids()]
    peak_small = _peak(lambda: prelabel(small, _Fake()))
    peak_big = _peak(lambda: prelabel(big, _Fake()))
    assert len(big.annotations()) == 1080
    assert peak_big < 2 * peak_small + 300_000
    del keep
    small.close()
    big.close()
