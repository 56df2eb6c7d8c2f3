"""Image file helpers: scanning folders, size + content hash, loading pixels as RGB.

Sizes come from the file header via Pillow when it is installed (fast, no decode), with
OpenCV as the fallback; the EXIF orientation is honoured the way OpenCV's decoder honours it, so
the stored width/height always match the pixels :func:`load_rgb` (``segcore.data.read_image_rgb``)
returns.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
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
    """Width and height in pixels (after EXIF orientation) and the sha256 hex of the file bytes."""

    path: Path
    width: int
    height: int
    sha256: str


def scan_images(folder: Path, *, recursive: bool = False) -> list[Path]:
    """Sorted absolute paths of the jpg/jpeg/png/bmp/tif/tiff files in ``folder``.

    Raises:
        AnnotatorError: ``folder`` is not a readable folder.
    """
    folder = Path(folder).absolute()
    if not folder.is_dir():
        raise AnnotatorError(f"{folder}: not a folder")
    try:
        found = folder.rglob("*") if recursive else folder.iterdir()
        paths = [
            p for p in found
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith(".")
        ]
    except OSError as exc:
        raise AnnotatorError(f"{folder}: cannot list folder: {exc.strerror or exc}") from exc
    return sorted(paths)


def _size_pil(data: bytes) -> tuple[int, int] | None:
    if _PILImage is None:
        return None
    try:
        with _PILImage.open(io.BytesIO(data)) as im:
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


def read_image_info(path: Path) -> ImageInfo:
    """Size and sha256 of one image file.

    Raises:
        AnnotatorError: ``<path>: cannot read image: ...`` when missing, unreadable or corrupt.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AnnotatorError(f"{path}: cannot read image: {exc.strerror or exc}") from exc
    size = _size_pil(data)
    if size is None:
        img = _decode_cv2(data)
        if img is None:
            raise AnnotatorError(f"{path}: cannot read image: not a valid image file (corrupt or unsupported)")
        size = (int(img.shape[1]), int(img.shape[0]))
    if size[0] <= 0 or size[1] <= 0:
        raise AnnotatorError(f"{path}: cannot read image: empty image")
    return ImageInfo(path=path, width=int(size[0]), height=int(size[1]), sha256=hashlib.sha256(data).hexdigest())


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
