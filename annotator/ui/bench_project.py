"""Project-size measurement (not a test): ``python -m annotator.ui.bench_project [--sizes 10000,100000]
[--images DIR] [--steps 100]``.

For each size N it makes a folder of N symlinks to the images of ``--images`` (default: the
coco-tiny images beside the repository, ``../shared/datasets/coco-tiny``; any folder of images
works) in a temporary directory and prints:

- ``new``: ``annotator new`` on the folder (in this process: scan, header of every file, one
  transaction; no hashing), seconds;
- ``open``: in a fresh child process, after ``import`` and ``QApplication`` (reported apart as
  ``startup``), the time from ``MainWindow(Project.open(...))`` to a shown window with the image
  list filled and the first image on the canvas, seconds; resident memory of the child after
  the open (MB) and its growth from before the open;
- ``next``: median and 95th percentile of one "next image" step (key D: decode, canvas, instance
  list, list selection; no model), milliseconds, over ``--steps`` steps;
- MET / NOT MET against the targets: open < 1 s (10,000) and < 2 s (100,000); next < 50 ms.

Runs offscreen (``QT_QPA_PLATFORM=offscreen`` unless set). Wall times on a shared machine are
noisy; each line also gives the child's CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OPEN_TARGETS_S = {10_000: 1.0, 100_000: 2.0}
NEXT_TARGET_MS = 50.0
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _default_images() -> Path:
    return Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "coco-tiny"


def make_folder(folder: Path, sources: list[Path], n: int) -> None:
    """``n`` symlinks ``img_000000.jpg`` ... in ``folder``, cycling over ``sources``."""
    folder.mkdir(parents=True)
    for k in range(n):
        src = sources[k % len(sources)]
        os.symlink(src, folder / f"img_{k:06d}{src.suffix.lower()}")


def child(project: str, steps: int) -> None:
    """Runs in the child process: open the project, step ``steps`` images; prints one JSON line."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    t0, c0 = time.perf_counter(), time.process_time()
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from annotator.project import Project
    from annotator.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    startup = time.perf_counter() - t0
    rss0 = _rss_mb()
    t1, c1 = time.perf_counter(), time.process_time()
    win = MainWindow(Project.open(Path(project), create_if_folder=False))
    win.show()
    app.processEvents()
    opened, opened_cpu = time.perf_counter() - t1, time.process_time() - c1
    listed = win.image_list.count()
    shown = win.current_image_id is not None and win.canvas_image is not None
    rss1 = _rss_mb()
    win.activateWindow()
    app.processEvents()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        QTest.keyClick(win, Qt.Key_D)
        app.processEvents()
        times.append(1000 * (time.perf_counter() - t))
    print(json.dumps({"startup_s": startup, "open_s": opened, "open_cpu_s": opened_cpu, "listed": listed,
                      "shown": shown, "rss_mb": rss1, "rss_growth_mb": rss1 - rss0, "next_ms": times,
                      "cpu_s": time.process_time() - c0, "current": win.current_image_id}))
    win.close()


def run(sizes: list[int], images: Path, steps: int) -> int:
    from annotator.project import Project

    sources = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not sources:
        print(f"error: --images: no jpg/png files under {images}", file=sys.stderr)
        return 2
    print(f"images: {len(sources)} distinct files under {images}, linked cyclically")
    ok = True
    with tempfile.TemporaryDirectory(prefix="annotator-bench-project-") as tmp:
        for n in sizes:
            folder, proj = Path(tmp) / f"images-{n}", Path(tmp) / f"project-{n}"
            make_folder(folder, sources, n)
            t, c = time.perf_counter(), time.process_time()
            with Project.create(proj, images_dir=folder) as p:
                added = p.scan.added
            new_s, new_cpu = time.perf_counter() - t, time.process_time() - c
            out = subprocess.run([sys.executable, "-m", "annotator.ui.bench_project", "--child", str(proj),
                                  "--steps", str(steps)], capture_output=True, text=True)
            lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
            if out.returncode != 0 or not lines:
                print(f"N={n}: child failed (exit {out.returncode}): {out.stderr.strip()[-500:]}")
                return 1
            r = json.loads(lines[-1])
            nxt = sorted(r["next_ms"])
            med, p95 = statistics.median(nxt), nxt[min(len(nxt) - 1, int(0.95 * len(nxt)))]
            target = OPEN_TARGETS_S.get(n)
            open_ok = target is None or (r["open_s"] < target and r["listed"] == n and r["shown"])
            next_ok = med < NEXT_TARGET_MS
            ok &= open_ok and next_ok
            print(f"N={n:>7,}: new {new_s:6.2f} s (cpu {new_cpu:.2f} s, {added:,} registered) | startup "
                  f"{r['startup_s']:.2f} s | open {r['open_s']:.3f} s (cpu {r['open_cpu_s']:.3f} s, {r['listed']:,} "
                  f"listed, image shown: {r['shown']}) "
                  + (f"[{'MET' if open_ok else 'NOT MET'} < {target:g} s] " if target else "")
                  + f"| rss {r['rss_mb']:.0f} MB (+{r['rss_growth_mb']:.0f} MB for the open) | next image median "
                  f"{med:.1f} ms, p95 {p95:.1f} ms over {len(nxt)} steps [{'MET' if next_ok else 'NOT MET'} "
                  f"< {NEXT_TARGET_MS:g} ms]", flush=True)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m annotator.ui.bench_project", description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated project sizes (images)")
    ap.add_argument("--images", type=Path, default=None, help="folder of images to link (default: coco-tiny)")
    ap.add_argument("--steps", type=int, default=100, help="next-image steps timed per size")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.steps)
        return 0
    images = args.images or _default_images()
    if not images.is_dir():
        print(f"error: --images: folder not found: {images}", file=sys.stderr)
        return 2
    return run([int(s) for s in args.sizes.split(",") if s.strip()], images, args.steps)


if __name__ == "__main__":
    sys.exit(main())
