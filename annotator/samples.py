"""The bundled sample project (``resources/samples``): five COCO val2017 photos whose licences
allow redistribution, with their original COCO annotations (see ``resources/samples/LICENSES.md``).

The bundle is read-only; :func:`ensure_sample_project` copies it into the user's data folder
(``$XDG_DATA_HOME/annotator/sample-project``, default ``~/.local/share/annotator/sample-project``)
and turns it into a project with the annotations imported as human / accepted, once.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "resources" / "samples"


def user_data_dir() -> Path:
    """``$XDG_DATA_HOME/annotator`` (default ``~/.local/share/annotator``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "annotator"


def ensure_sample_project(dest: Path | None = None) -> Path:
    """Create the sample project at ``dest`` (default: the user data folder) if missing.

    Returns:
        The project folder.

    Raises:
        AnnotatorError: the bundle is missing or the destination is not writable.
    """
    from annotator.errors import AnnotatorError
    from annotator.io.coco import import_coco
    from annotator.project import Project

    dest = Path(dest) if dest else user_data_dir() / "sample-project"
    if (dest / "annotator.sqlite").is_file():
        return dest
    if not (SAMPLES_DIR / "annotations.json").is_file():
        raise AnnotatorError(f"{SAMPLES_DIR}: sample bundle not found")
    if dest.exists() and any(dest.iterdir()):
        raise AnnotatorError(f"{dest}: exists and is not a sample project; remove it or choose another folder")
    # Build beside the destination, then rename: an interrupted first start leaves no half project.
    tmp = dest.with_name(dest.name + ".partial")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for f in SAMPLES_DIR.iterdir():
            if f.suffix.lower() in {".jpg", ".png"}:
                shutil.copyfile(f, tmp / f.name)
    except OSError as exc:
        raise AnnotatorError(f"{dest}: cannot create the sample project: {exc.strerror}") from None
    project = Project.create(tmp, images_dir=tmp)
    try:
        import_coco(project, SAMPLES_DIR / "annotations.json", image_root=tmp)
    finally:
        project.close()
    if dest.is_dir():
        dest.rmdir()  # empty (checked above)
    os.replace(tmp, dest)
    return dest
