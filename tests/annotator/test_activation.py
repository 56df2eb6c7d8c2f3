"""A model that only helps: which new version becomes the active one (annotator.jobs.train.should_activate)."""

from __future__ import annotations

import cv2
import numpy as np

from annotator.jobs.train import ACTIVATION_FLOOR_AP, should_activate
from annotator.project import Project


def _ap(v: float) -> dict:
    return {"segm": {"AP": v}, "bbox": {"AP": v}}


def test_activation_rule(tmp_path):
    (tmp_path / "im").mkdir()
    cv2.imwrite(str(tmp_path / "im" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    with Project.create(tmp_path / "p", images_dir=tmp_path / "im") as p:
        # no version yet: without validation the first version is made active; with it, only above the floor
        assert should_activate(p, None, None)[0]
        ok, why = should_activate(p, _ap(0.0), None)
        assert not ok and "not above" in why
        assert should_activate(p, _ap(ACTIVATION_FLOOR_AP * 2), None)[0]
        v1 = p.register_model_version(arch="yolact_tiny", checkpoint=tmp_path / "a.pth", categories=[],
                                      metrics=_ap(0.30))
        p.set_active_model_version(v1)
        # an active version with AP 0.30: a new one must beat it
        ok, why = should_activate(p, _ap(0.25), v1)
        assert not ok and "does not beat the active version 1's 0.300" in why
        ok, why = should_activate(p, _ap(0.31), v1)
        assert ok and "beats" in why
        # no validation split: only a continuation of the active version takes over
        assert should_activate(p, None, v1)[0]
        ok, why = should_activate(p, None, None)
        assert not ok and "no validation data" in why
        # "none on purpose" is not "the newest"
        p.register_model_version(arch="yolact_tiny", checkpoint=tmp_path / "b.pth", categories=[])
        p.set_no_active_model_version()
        assert p.active_model_version() is None
        p.set_active_model_version(None)       # back to the legacy rule: the newest
        assert p.active_model_version() == 2
