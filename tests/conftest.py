"""Shared fixtures. GUI tests run offscreen: the env var is set here, before any Qt import."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
COCO_TINY = REPO.parent / "shared" / "datasets" / "coco-tiny"


@pytest.fixture(autouse=True)
def _user_config(tmp_path_factory, monkeypatch):
    """Each test gets its own user config folder (the app's per-user settings, e.g. where a
    project was left), so tests neither read nor write the developer's ~/.config."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))


@pytest.fixture(scope="session", autouse=True)
def _fp32_predictor_default():
    """In-process predictors default to fp32 on every CPU, so results do not depend on the test
    machine: without this a CPU with native bf16 would run bf16 (``segcore.predictor.default_precision``)
    and the parity / exactness tests, written for the fp32 reference path, would compare bf16
    outputs. Session scope, so that predictors built by module / session fixtures get it too.
    Tests about the default itself or about bf16 ask for it: ``precision="bf16"``, or the
    ``real_precision_default`` marker (:func:`_real_precision_default`). Subprocesses (the CLI
    tests) are not affected."""
    import segcore.predictor

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(segcore.predictor, "native_bf16", lambda: False)
        yield


@pytest.fixture(autouse=True)
def _real_precision_default(request, monkeypatch):
    """Tests marked ``real_precision_default`` see the machine's real predictor default."""
    if request.node.get_closest_marker("real_precision_default") is not None:
        import segcore.predictor
        from segcore.device import native_bf16

        monkeypatch.setattr(segcore.predictor, "native_bf16", native_bf16)


@pytest.fixture(scope="session")
def coco_tiny() -> Path:
    """Path of ``../shared/datasets/coco-tiny`` (80 train2017 + 80 val2017 COCO images).

    It sits beside every checkout and CI clone; without it the data-driven tests cannot run.
    """
    if not (COCO_TINY / "annotations" / "instances_val2017.json").is_file():
        pytest.fail(f"coco-tiny not found at {COCO_TINY}: these tests need ../shared beside the repo")
    return COCO_TINY


@pytest.fixture(scope="session")
def overfit_set(coco_tiny: Path) -> tuple[list[dict], list[dict]]:
    """The 4 coco-tiny train2017 images every overfit test uses, and their categories.

    Rule: 1-3 annotations, no crowd, every instance at least 5 % of the image, lowest image ids
    first (24577, 114694, 188416, 286720: 5 categories).
    """
    from segcore.data import load_coco_records

    records, categories = load_coco_records(coco_tiny / "annotations" / "instances_train2017.json",
                                            coco_tiny / "train2017")

    def ok(r: dict) -> bool:
        anns = r["annotations"]
        return (1 <= len(anns) <= 3 and not any(a["iscrowd"] for a in anns)
                and min(a["area"] for a in anns) >= 0.05 * r["height"] * r["width"])

    chosen = sorted((r for r in records if ok(r)), key=lambda r: r["image_id"])[:4]
    assert [r["image_id"] for r in chosen] == [24577, 114694, 188416, 286720]
    cat_ids = {a["category_id"] for r in chosen for a in r["annotations"]}
    return chosen, [c for c in categories if c["id"] in cat_ids]
