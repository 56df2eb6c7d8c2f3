"""Image file helpers: scanning folders, size from the header, content hash, loading pixels as RGB.

Sizes come from the file header via Pillow (no decode, ~30 us a file), with OpenCV as the
fallback; the EXIF orientation is honoured the way OpenCV's decoder honours it, so the stored
width/height always match the pixels :func:`load_rgb` (``segcore.data.read_image_rgb``, the one
image reader) returns. The sha256 of the bytes is
optional at registration (:func:`read_image_info` ``with_hash=False``): a 100,000-image folder is
registered from headers alone and hashed later (``Project.hash_images``).

Folders as they are: :func:`read_image_infos` registers what it can read and returns the rest as
:class:`SkippedFile` (path and reason) instead of failing the whole folder.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from typing import Iterable, Optional
from pathlib import Path

import cv2
import numpy as np

from annotator.errors import AnnotatorError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

try:  # Pillow reads the size from the header without decoding; optional.
    from PIL import Image as _PILImage
except ImportError:  # pragma: no cover - depends on the environment
    _PILImage = None


@dataclass(frozen=True)
class ImageInfo:
    """Width and height in pixels (after EXIF orientation); ``sha256`` hex of the file bytes
    (``None`` when not hashed yet); ``file_size`` (bytes) and ``mtime_ns`` from ``os.stat``."""

    path: Path
    width: int
    height: int
    sha256: Optional[str] = None
    file_size: Optional[int] = None
    mtime_ns: Optional[int] = None


@dataclass(frozen=True)
class SkippedFile:
    """A file left out of a batch: its path and the one-line reason."""

    path: Path
    reason: str

    def line(self) -> str:
        return f"{self.path}: {self.reason}"


def scan_images(folder: Path, *, recursive: bool = False) -> list[Path]:
    """Sorted absolute paths of the jpg/jpeg/png/bmp/tif/tiff files in ``folder``.

    Raises:
        AnnotatorError: ``folder`` is not a readable folder.
    """
    folder = Path(folder).absolute()
    if not folder.is_dir():
        raise AnnotatorError(f"{folder}: not a folder")
    try:
        if recursive:
            paths = [p for p in folder.rglob("*")
                     if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith(".")]
        else:  # os.scandir: the file type comes with the listing (no stat per file but for symlinks)
            with os.scandir(folder) as entries:
                names = sorted(e.name for e in entries
                               if os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
                               and not e.name.startswith(".") and e.is_file())
            return [folder / name for name in names]  # sorted as strings: Path comparisons cost ~2 us each
    except OSError as exc:
        raise AnnotatorError(f"{folder}: cannot list folder: {exc.strerror or exc}") from exc
    return sorted(paths)


def _size_pil(source) -> tuple[int, int] | None:
    """``(width, height)`` after EXIF orientation from the header of a path or bytes, or None."""
    if _PILImage is None:
        return None
    try:
        with _PILImage.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            width, height = im.size
            orientation = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - any decoder failure means "let OpenCV try"
        return None
    if orientation in (5, 6, 7, 8):  # rotated by 90 degrees: cv2.imread swaps the sides
        width, height = height, width
    return width, height


def _decode_cv2(data: bytes) -> np.ndarray | None:
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        return None
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def file_sha256(path: Path) -> tuple[str, int, int]:
    """``(sha256 hex, file size in bytes, mtime_ns)`` of a file, read in 1 MiB blocks.

    Raises:
        AnnotatorError: ``<path>: cannot read image: ...`` when the file cannot be read.
    """
    path = Path(path)
    digest = hashlib.sha256()
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    except OSError as exc:
        raise AnnotatorError(f"{path}: cannot read image: {exc.strerror or exc}") from exc
    return digest.hexdigest(), int(st.st_size), int(st.st_mtime_ns)


def read_image_info(path: Path, *, with_hash: bool = True) -> ImageInfo:
    """Size (from the header), file size / mtime and, with ``with_hash``, the sha256 of one image.

    Without the hash only the header is read (Pillow), unless Pillow cannot parse it and OpenCV
    has to decode the whole file.

    Raises:
        AnnotatorError: ``<path>: cannot read image: ...`` when missing, empty, unreadable or not
            an image.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise AnnotatorError(f"{path}: cannot read image: {exc.strerror or exc}") from exc
    if st.st_size == 0:
        raise AnnotatorError(f"{path}: cannot read image: empty file (0 bytes)")
    size = _size_pil(path)
    if size is None:
        try:
            img = _decode_cv2(path.read_bytes())
        except OSError as exc:
            raise AnnotatorError(f"{path}: cannot read image: {exc.strerror or exc}") from exc
        if img is None:
            raise AnnotatorError(f"{path}: cannot read image: not a valid image file (corrupt or unsupported)")
        size = (int(img.shape[1]), int(img.shape[0]))
    if size[0] <= 0 or size[1] <= 0:
        raise AnnotatorError(f"{path}: cannot read image: empty image")
    sha, file_size, mtime_ns = file_sha256(path) if with_hash else (None, int(st.st_size), int(st.st_mtime_ns))
    return ImageInfo(path=path, width=int(size[0]), height=int(size[1]), sha256=sha, file_size=file_size,
                     mtime_ns=mtime_ns)


def read_image_infos(paths: Iterable[Path], *, with_hash: bool = False) -> tuple[list[ImageInfo], list[SkippedFile]]:
    """:func:`read_image_info` of each path; unreadable files are returned as skipped, never raised."""
    infos, skipped = [], []
    for path in paths:
        try:
            infos.append(read_image_info(path, with_hash=with_hash))
        except AnnotatorError as exc:
            skipped.append(SkippedFile(Path(path), str(exc).split(": cannot read image: ", 1)[-1]))
    return infos, skipped


def load_rgb(path: Path) -> np.ndarray:
    """``[H, W, 3]`` uint8 **RGB** pixels of an image file, EXIF orientation applied: the project's
    one image reader, :func:`segcore.data.read_image_rgb`, with its errors as ``AnnotatorError``.

    Raises:
        AnnotatorError: the file is missing, unreadable or not a decodable image.
    """
    from segcore.data import read_image_rgb

    try:
        return read_image_rgb(Path(path))
    except (OSError, ValueError) as exc:
        raise AnnotatorError(str(exc)) from None
