"""Shared fixtures. GUI tests run offscreen: the env var is set here, before any Qt import."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
COCO_TINY = REPO.parent / "shared" / "datasets" / "coco-tiny"


@pytest.fixture(scope="session")
def coco_tiny() -> Path:
    """Path of ``../shared/datasets/coco-tiny`` (80 train2017 + 80 val2017 COCO images).

    It sits beside every checkout and CI clone; without it the data-driven tests cannot run.
    """
    if not (COCO_TINY / "annotations" / "instances_val2017.json").is_file():
        pytest.fail(f"coco-tiny not found at {COCO_TINY}: these tests need ../shared beside the repo")
    return COCO_TINY
