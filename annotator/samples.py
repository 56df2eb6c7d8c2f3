"""The bundled sample project (``resources/samples``, the package data ``annotator.resources``):
five COCO val2017 photos whose licences allow redistribution, with their original COCO
annotations (see ``resources/samples/LICENSES.md``).

The files are package data read through ``importlib.resources`` (:func:`samples_dir`), never
through a path relative to the repository. :func:`ensure_sample_project` copies them into the
user's data folder (``$XDG_DATA_HOME/annotator/sample-project``, default
``~/.local/share/annotator/sample-project``) and turns them into a project with the annotations
imported as human / accepted, once.
"""

from __future__ import annotations

import os
import shutil
from importlib.resources import as_file
from pathlib import Path

from annotator import resources

IMAGE_SUFFIXES = {".jpg", ".png"}


def samples_dir():
    """The bundled sample folder (an ``importlib.resources`` Traversable, read-only)."""
    return resources() / "samples"


def user_data_dir() -> Path:
    """``$XDG_DATA_HOME/annotator`` (default ``~/.local/share/annotator``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "annotator"


def ensure_sample_project(dest: Path | None = None) -> Path:
    """Create the sample project at ``dest`` (default: the user data folder) if missing.

    Args:
        dest: project folder to create; ``None`` = ``user_data_dir() / "sample-project"``.

    Returns:
        The project folder (unchanged if it already holds a project).

    Raises:
        AnnotatorError: the bundled samples are missing or the destination is not writable.
    """
    from annotator.errors import AnnotatorError
    from annotator.io.coco import import_coco
    from annotator.project import Project

    dest = Path(dest) if dest else user_data_dir() / "sample-project"
    if (dest / "annotator.sqlite").is_file():
        return dest
    bundle = samples_dir()
    annotations = bundle / "annotations.json"
    if not annotations.is_file():
        raise AnnotatorError(f"{annotations}: sample bundle not found (annotator.resources samples missing "
                             "from the installation)")
    if dest.exists() and any(dest.iterdir()):
        raise AnnotatorError(f"{dest}: exists and is not a sample project; remove it or choose another folder")
    # Build beside the destination, then rename: an interrupted first start leaves no half project.
    tmp = dest.with_name(dest.name + ".partial")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for entry in bundle.iterdir():
            if entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
                (tmp / entry.name).write_bytes(entry.read_bytes())
    except OSError as exc:
        raise AnnotatorError(f"{dest}: cannot create the sample project: {exc.strerror}") from None
    project = Project.create(tmp, images_dir=tmp)
    try:
        with as_file(annotations) as ann_path:
            import_coco(project, Path(ann_path), image_root=tmp)
    finally:
        project.close()
    if dest.is_dir():
        dest.rmdir()  # empty (checked above)
    os.replace(tmp, dest)
    return dest
