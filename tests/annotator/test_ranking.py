"""Active-learning order (annotator.tools.ranking): uncertainty, disagreement, empty images."""

from __future__ import annotations

import numpy as np
import pytest

from annotator import masks
from annotator.tools.ranking import disagreement, image_uncertainty, rank_images


def _rle(y0, y1, x0, x1, h=20, w=20):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return masks.encode_mask(m)


def _p(score, cat=1, box=(0, 10, 0, 10)):
    return {"score": score, "category_id": cat, "rle": _rle(*box)}


def test_uncertainty_is_mean_of_one_minus_score():
    assert image_uncertainty([0.9, 0.5]) == pytest.approx(0.3)
    assert image_uncertainty([]) == 1.0
    assert image_uncertainty([], empty_uncertainty=0.0) == 0.0


def test_rank_by_uncertainty_empty_first_or_last():
    preds = {1: [_p(0.95)], 2: [_p(0.4), _p(0.6)], 3: [], 4: [_p(0.7)]}
    assert [i for i, _ in rank_images(preds)] == [3, 2, 4, 1]
    assert [i for i, _ in rank_images(preds, empty="last")] == [2, 4, 1, 3]
    values = dict(rank_images(preds))
    assert values[2] == pytest.approx(0.5) and values[1] == pytest.approx(0.05)
    with pytest.raises(ValueError):
        rank_images(preds, empty="middle")


def test_disagreement_between_versions():
    same = [_p(0.9)]
    assert disagreement(same, same) == pytest.approx(0.0)
    assert disagreement([], []) == 0.0
    assert disagreement(same, []) == pytest.approx(1.0)
    assert disagreement(same, [_p(0.9, cat=2)]) == pytest.approx(1.0)  # other category: no partner
    half = [_p(0.9, box=(0, 10, 0, 5))]
    assert disagreement(same, half) == pytest.approx(0.5)
    # equal uncertainty, the image where the two versions disagree comes first
    cur = {1: [_p(0.8)], 2: [_p(0.8)]}
    prev = {1: [_p(0.8)], 2: [_p(0.8, box=(10, 20, 10, 20))]}
    assert [i for i, _ in rank_images(cur, previous=prev)] == [2, 1]


def test_rank_project_images(tmp_path):
    import cv2

    from annotator.project import Project
    from annotator.tools.ranking import rank_project_images

    (tmp_path / "im").mkdir()
    for k in range(3):
        cv2.imwrite(str(tmp_path / "im" / f"{k}.png"), np.zeros((20, 20, 3), np.uint8))
    with Project.create(tmp_path / "p", images_dir=tmp_path / "im") as p:
        p.add_category("a", id=1)
        a, b, c = [im.id for im in p.images()]
        p.replace_predictions(a, [{"category_id": 1, "rle": _rle(0, 5, 0, 5), "score": 0.9}], None)
        p.replace_predictions(b, [{"category_id": 1, "rle": _rle(0, 5, 0, 5), "score": 0.2}], None)
        p.add_annotation(c, 1, rle=_rle(0, 5, 0, 5))  # reviewed: not ranked
        assert [i for i, _ in rank_project_images(p)] == [b, a]
