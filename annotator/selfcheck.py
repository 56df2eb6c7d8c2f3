"""``annotator --self-check``: a headless check that an installation (source tree, wheel or the
PyInstaller bundle) works.

Checks, in order (one line each: ``ok   <check>: <detail>``):

1. ``version``   the version and where the package was imported from;
2. ``resources`` the bundled sample annotations, licences and icon are readable
   (``importlib.resources``);
3. ``models``    ``segcore.modeling`` imports and registers every architecture;
4. ``forward``   one tiny CPU forward of each family (its ``Family.tiny_arch``: ``yolact_tiny``, ``blendmask_tiny``,
   ``centermask_tiny``, random init, 64 px input) through :class:`segcore.predictor.Predictor`;
5. ``sample``    the sample project is created from the bundled data in a temporary folder;
6. ``qt``        the Qt binding does not drop references to ``None`` on void calls (the
   PySide6 6.12.0 fault that aborts the app on Python < 3.12; see pyproject.toml);
7. ``desktop``   with a display set (``DISPLAY`` / ``WAYLAND_DISPLAY``): the platform plugin the
   user will get (xcb / wayland) starts in a child process, or the missing system libraries and
   their Debian packages are named (:mod:`annotator.desktop`); skipped without a display;
8. ``gui``       the main window opens on that project and closes again, offscreen
   (``QT_QPA_PLATFORM=offscreen`` is set when no display is available).

The first failing check prints ``FAILED <check>: <error>`` (one line, no traceback) and the run
stops with exit status 1; otherwise the last line is ``self-check passed`` and the status is 0.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Callable

TINY_INPUT = 64


def tiny_models() -> list[str]:
    """One small architecture per registered family (``Family.tiny_arch``)."""
    from segcore.modeling import FAMILIES

    return [fam.tiny_arch for fam in FAMILIES.values()]


def check_version(state: dict) -> str:
    """Version and location of the imported ``annotator`` package."""
    import annotator

    return f"annotator {annotator.version()} from {Path(annotator.__file__).parent}"


def check_resources(state: dict) -> str:
    """The bundled sample annotations (valid JSON with images), LICENSES.md and the icon.

    Raises:
        FileNotFoundError: a bundled file is missing.
        ValueError: the sample annotations are not a COCO file with images.
    """
    import json

    from annotator import resources

    root = resources()
    coco = json.loads((root / "samples" / "annotations.json").read_text(encoding="utf-8"))
    images = [e for e in (root / "samples").iterdir() if e.name.endswith(".jpg")]
    if not coco.get("images") or len(images) != len(coco["images"]):
        raise ValueError(f"samples/annotations.json lists {len(coco.get('images', []))} images, "
                         f"the bundle holds {len(images)}")
    (root / "samples" / "LICENSES.md").read_text(encoding="utf-8")
    icon = (root / "icons" / "annotator-256.png").read_bytes()
    return f"{len(images)} sample images, {len(coco.get('annotations', []))} annotations, icon {len(icon)} bytes"


def check_models(state: dict) -> str:
    """``segcore.modeling`` imports and registers the tiny models; torch build in use."""
    import torch

    from segcore.modeling import list_architectures

    names = list_architectures()
    missing = [n for n in tiny_models() if n not in names]
    if missing:
        raise LookupError(f"architectures not registered: {', '.join(missing)}")
    return f"{len(names)} architectures; torch {torch.__version__} (CUDA build {torch.version.cuda or 'none'})"


def check_forward(state: dict) -> str:
    """One CPU forward of each tiny model on a 48 x 64 RGB image through the Predictor."""
    import numpy as np
    import torch

    from segcore.modeling import build_model
    from segcore.predictor import Predictor

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    categories = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    parts = []
    for name in tiny_models():
        torch.manual_seed(0)
        t0 = time.perf_counter()
        model = build_model(name, num_classes=len(categories), input_size=TINY_INPUT)
        pred = Predictor(model, categories, device="cpu").predict(image, score_threshold=0.05)
        if pred.masks.shape[1:] != image.shape[:2]:
            raise ValueError(f"{name}: masks of shape {pred.masks.shape[1:]}, expected {image.shape[:2]}")
        parts.append(f"{name} {len(pred)} det {1000 * (time.perf_counter() - t0):.0f} ms")
    return ", ".join(parts)


def check_sample(state: dict) -> str:
    """The sample project is created from the bundled data (in a temporary folder)."""
    from annotator.project import Project
    from annotator.samples import ensure_sample_project

    folder = ensure_sample_project(Path(state["tmp"]) / "sample-project")
    project = Project.open(folder, create_if_folder=False)
    try:
        n_images, n_anns = len(project.images()), len(project.annotations())
    finally:
        project.close()
    if not n_images or not n_anns:
        raise ValueError(f"{folder}: sample project has {n_images} images and {n_anns} annotations")
    state["sample"] = folder
    return f"{n_images} images, {n_anns} annotations"


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def check_qt_binding(state: dict) -> str:
    """The Qt binding keeps its references to None (:func:`annotator.ui.selfcheck_qt.check_binding`).

    Raises:
        RuntimeError: the binding drops references to None (an excluded PySide6 release).
    """
    if not _has_display():
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from annotator.ui.selfcheck_qt import check_binding

    return check_binding()


def check_desktop(state: dict) -> str:
    """The user's Qt platform plugin starts (only with a display; the other checks run offscreen).

    Raises:
        RuntimeError: Qt cannot open a window (missing xcb libraries are named with their packages).
    """
    from annotator.desktop import display_set, probe_platform

    if not display_set():
        return "no display set: skipped (the window check below runs offscreen)"
    ok, message = probe_platform()
    if not ok:
        raise RuntimeError(message)
    return f"a window can open here (Qt platform {message})"


def check_gui(state: dict) -> str:
    """Open the main window on the sample project, process events, close it (offscreen without
    a display; :func:`annotator.ui.selfcheck_qt.open_main_window`)."""
    if not _has_display():
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from annotator.ui.selfcheck_qt import open_main_window

    return open_main_window(state.get("sample"))


CHECKS: tuple[tuple[str, Callable[[dict], str]], ...] = (
    ("version", check_version),
    ("resources", check_resources),
    ("models", check_models),
    ("forward", check_forward),
    ("sample", check_sample),
    ("qt", check_qt_binding),
    ("desktop", check_desktop),
    ("gui", check_gui),
)


def run_self_check(print_fn: Callable[[str], None] = print) -> int:
    """Run :data:`CHECKS` in order, printing one line per check.

    Args:
        print_fn: where the lines go (``print`` by default).

    Returns:
        0 when every check passed (last line ``self-check passed``), 1 at the first failure
        (line ``FAILED <check>: <ExceptionType>: <message>``; later checks are not run). No
        exception escapes and no traceback is printed.
    """
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="annotator-selfcheck-") as tmp:
        state: dict = {"tmp": tmp}
        for name, check in CHECKS:
            try:
                detail = check(state)
            except BaseException as exc:  # noqa: BLE001 - report any failure as one line
                if isinstance(exc, KeyboardInterrupt):
                    raise
                message = " ".join(str(exc).split()) or "(no message)"
                print_fn(f"FAILED {name}: {type(exc).__name__}: {message}")
                return 1
            print_fn(f"ok   {name}: {detail}")
    print_fn(f"self-check passed ({time.perf_counter() - t_start:.1f} s)")
    return 0
