"""Canvas measurement (not a test): ``python -m annotator.ui.bench_canvas [--size 8000] [--instances 500]``.

Builds a temporary project with one ``size`` x ``size`` JPEG and ``instances`` masks (half
model predictions with scores, so score labels are drawn too), then prints:

- open: with the window shown and idle (its start-up work -- the device label's torch import
  on the thread pool -- finished), ``MainWindow.set_project`` (image decode -- a reduced preview for big images --,
  pyramid, mask decode, overlay boxes, instance list) plus the first forced viewport repaint;
  then the time until the full-resolution decode (thread pool) has arrived and until the
  canvas's idle prefetch (zoomed-out images of the instances, made in slices of a few ms while
  the GUI is idle) is done -- the paints below start after both;
- paint: median and 95th percentile of ``viewport().repaint()`` over scripted view changes
  (zoom levels from fit to 4x, random centres), each timed with ``time.perf_counter``, overall
  and per zoom level (which views are slow);
- CPU time (``time.process_time``, all threads of the process) next to each wall time: the
  machine may be shared, so wall times alone can mislead;
- MET / NOT MET against the targets (open < 1 s, paint median and p95 < 16 ms).

``--profile PREFIX`` writes cProfiles of the open and of the paints to ``PREFIX.open`` and
``PREFIX.paint`` (read them with ``python -m pstats``).

Runs offscreen (``QT_QPA_PLATFORM=offscreen`` unless set).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from segcore.ops.rle import box_mask_to_rle

OPEN_TARGET_S, PAINT_TARGET_MS = 1.0, 16.0


def make_project(root: Path, size: int, n: int, seed: int = 0) -> Path:
    """A project at ``root`` with one ``size`` x ``size`` image and ``n`` elliptic instances."""
    from annotator.project import Project

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (size // 64 + 1, size // 64 + 1, 3), dtype=np.uint8)
    img = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    images = root / "images"
    images.mkdir(parents=True)
    cv2.imwrite(str(images / "big.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    del img
    project = Project.create(root, images_dir=images)
    try:
        image_id = project.images()[0].id
        cats = [project.add_category(name).id for name in ("cell", "nucleus", "debris")]
        with project.transaction():
            for i in range(n):
                a, b = (int(v) for v in rng.integers(20, 200, 2))
                crop = np.zeros((2 * b + 1, 2 * a + 1), np.uint8)
                cv2.ellipse(crop, (a, b), (a, b), 0, 0, 360, 1, -1)
                x0, y0 = (int(v) for v in rng.integers(0, size - 2 * max(a, b) - 2, 2))
                scored = i % 2 == 0
                project.add_annotation(image_id, cats[i % 3], rle=box_mask_to_rle(crop > 0, x0, y0, size, size),
                                       source="model" if scored else "human",
                                       score=float(rng.uniform(0.3, 1.0)) if scored else None,
                                       review_state="predicted" if scored else "accepted")
    finally:
        project.close()
    return root


ZOOM_NAMES = ("fit", "fit*2", "0.25", "0.5", "1", "2", "4")


def view_script(n: int, size: int, fit: float, seed: int = 1) -> list[tuple[float, float, float]]:
    """``n`` (zoom, centre x, centre y): zoom cycles from fit to 4x (:data:`ZOOM_NAMES`), centres wander."""
    rng = np.random.default_rng(seed)
    zooms = [fit, fit * 2, 0.25, 0.5, 1.0, 2.0, 4.0]
    return [(zooms[i % len(zooms)], *(float(v) for v in rng.uniform(0, size, 2))) for i in range(n)]


def _met(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8000)
    ap.add_argument("--instances", type=int, default=500)
    ap.add_argument("--views", type=int, default=100)
    ap.add_argument("--profile", metavar="PREFIX", help="write cProfiles to PREFIX.open, PREFIX.paint")
    args = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from annotator.project import Project
    from annotator.ui import dialogs
    from annotator.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    dialogs.show_info = lambda *a, **k: None
    with tempfile.TemporaryDirectory(prefix="bench-canvas-") as tmp:
        t = time.perf_counter()
        root = make_project(Path(tmp) / "project", args.size, args.instances)
        print(f"setup: {args.size} x {args.size} JPEG, {args.instances} instances "
              f"({time.perf_counter() - t:.1f} s, not timed below)")
        win = MainWindow(score_threshold=0.0)
        win.resize(1280, 800)
        win.show()
        t = time.perf_counter()
        while win.device_label.text().endswith("...") and time.perf_counter() - t < 60:
            app.processEvents()     # app start-up (torch import for the device label) settles first
            time.sleep(0.01)
        app.processEvents()
        prof = None
        if args.profile:
            import cProfile
            prof = cProfile.Profile()
            prof.enable()
        t0, c0 = time.perf_counter(), time.process_time()
        win.set_project(Project.open(root))
        win.canvas.viewport().repaint()
        open_s, open_cpu = time.perf_counter() - t0, time.process_time() - c0
        if prof is not None:
            prof.disable()
            prof.dump_stats(args.profile + ".open")
        while win.canvas_image is None and time.perf_counter() - t0 < 60:   # big image: full decode
            app.processEvents()
            time.sleep(0.002)
        full_s = time.perf_counter() - t0
        canvas = win.canvas
        while canvas.prefetch_pending() and time.perf_counter() - t0 < 60:     # idle work: zoomed-out images
            app.processEvents()
            time.sleep(0.002)
        idle_s = time.perf_counter() - t0
        shown = len(win.layer().ann_ids) if win.layer() is not None else 0
        if prof is not None:
            prof = cProfile.Profile()
            prof.enable()
        times, cpu, by_zoom = [], [], {}
        for i, (zoom, cx, cy) in enumerate(view_script(args.views, args.size, canvas.zoom_factor())):
            canvas.set_zoom(zoom)
            canvas.centerOn(cx, cy)
            t, c = time.perf_counter(), time.process_time()
            canvas.viewport().repaint()
            times.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
            by_zoom.setdefault(ZOOM_NAMES[i % len(ZOOM_NAMES)], []).append((times[-1], cpu[-1], zoom))
        t = time.perf_counter()
        win.select_at(*_some_pixel(win))
        canvas.viewport().repaint()
        select_ms = (time.perf_counter() - t) * 1000
        if prof is not None:
            prof.disable()
            prof.dump_stats(args.profile + ".paint")
        win.close()
    med, p95 = statistics.median(times), float(np.percentile(times, 95))
    print(f"viewport: {canvas.viewport().width()} x {canvas.viewport().height()}, instances shown: {shown}")
    print(f"open (project open + first paint): {open_s:.3f} s wall, {open_cpu:.3f} s CPU")
    print(f"full resolution ready (decoded off the GUI thread): {full_s:.3f} s after open started; "
          f"idle prefetch done: {idle_s:.3f} s")
    print(f"paint over {len(times)} view changes: median {med:.1f} ms, p95 {p95:.1f} ms, max {max(times):.1f} ms "
          f"wall; CPU median {statistics.median(cpu):.1f} ms, p95 {float(np.percentile(cpu, 95)):.1f} ms")
    for name in ZOOM_NAMES:
        got = by_zoom.get(name)
        if got:
            ms, cms = [g[0] for g in got], [g[1] for g in got]
            print(f"  zoom {name:>5} ({got[0][2]:.3f}): n {len(ms):3d}, median {statistics.median(ms):6.1f} ms, "
                  f"p95 {float(np.percentile(ms, 95)):6.1f} ms, max {max(ms):6.1f} ms wall; "
                  f"CPU median {statistics.median(cms):5.1f} ms, max {max(cms):6.1f} ms")
    print(f"select by click + repaint: {select_ms:.1f} ms")
    print(f"open < {OPEN_TARGET_S:.0f} s: {_met(open_s < OPEN_TARGET_S)}")
    print(f"paint median < {PAINT_TARGET_MS:.0f} ms: {_met(med < PAINT_TARGET_MS)}")
    print(f"paint p95 < {PAINT_TARGET_MS:.0f} ms: {_met(p95 < PAINT_TARGET_MS)}")
    return 0


def _some_pixel(win) -> tuple[float, float]:
    layer = win.layer()
    if layer is None or not len(layer.masks):
        return 0.0, 0.0
    crops = getattr(layer.masks, "crops", None)
    if crops is not None:                         # box masks: the first box's first pixel
        c = next(c for c in crops if c is not None)
        ys, xs = np.nonzero(c.mask)
        return c.x0 + xs[0] + 0.5, c.y0 + ys[0] + 0.5
    ys, xs = np.nonzero(layer.masks[0])
    return xs[0] + 0.5, ys[0] + 0.5


if __name__ == "__main__":
    sys.exit(main())
