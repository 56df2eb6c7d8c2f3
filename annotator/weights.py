"""Downloadable official weights: a small registry and a verified download into the user's cache.

Nothing here runs unless the user asks (``annotator download-weights NAME``): the app works
offline and never fetches anything by itself.

Registry (:data:`WEIGHTS`, name -> :class:`WeightsEntry` =
:class:`segcore.modeling.registry.OfficialWeights`): every model family's ``official_weights``
(the family packages own them). Today these are the official YOLACT / YOLACT++ checkpoints of
dbolya/yolact, served from the author's Hugging Face mirrors
``https://huggingface.co/dbolya/<repo>/resolve/main/<file>`` (README of dbolya/yolact;
``/work/shared/reference/model_refs.md`` section 1.5). Only
``yolact_resnet50_54_800000.pth`` has a published size and sha256 (127,300,392 bytes,
``c12bb7a7...d6d7``, from openvinotoolkit/open_model_zoo
``models/public/yolact-resnet50-fpn-pytorch/model.yml``); for the others the sha256 is not
published, so it is printed after the download for you to compare with a source you trust, and
remembered in a ``<file>.sha256`` side file so that a later run can tell the file is unchanged.
None of these URLs could be tried from the development machine (no network).

Download (:func:`download_weights`): ``urllib.request`` streams into ``<cache>/<file>.part``
with a tqdm progress bar (on a terminal), the size and sha256 (``hashlib``) are checked, and
only a verified file is renamed (``os.replace``, atomic) to ``<cache>/<file>``. Any failure
removes the ``.part`` file. A file already in the cache that verifies is not downloaded again.
Cache folder: ``$XDG_CACHE_HOME/annotator/weights`` (default ``~/.cache/annotator/weights``).

The downloaded ``.pth`` files are plain state_dicts; they are only ever read with
``torch.load(weights_only=True)`` (``segcore.importers``), never executed.
"""

from __future__ import annotations

import hashlib
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from annotator.errors import AnnotatorError
from segcore.modeling import FAMILIES
from segcore.modeling.registry import OfficialWeights as WeightsEntry

__all__ = ["WeightsEntry", "WEIGHTS", "DownloadResult", "WeightsDownloadError", "OfflineError",
           "ChecksumError", "default_cache_dir", "lookup", "download_weights", "sha256_of", "list_lines",
           "import_weights"]

_CHUNK = 1 << 20  # bytes read per step
NOT_PUBLISHED = "sha256 not published; printed after download for you to check"


#: name -> entry: every model family's ``official_weights`` (the family packages own them).
WEIGHTS: dict[str, WeightsEntry] = {e.name: e for fam in FAMILIES.values() for e in fam.official_weights}


class WeightsDownloadError(AnnotatorError):
    """A download could not be completed (HTTP error, connection lost, unwritable cache); exit 2."""

    exit_code = 2


class OfflineError(WeightsDownloadError):
    """No connection to the host: DNS failure, refused connection, timeout; exit 2."""


class ChecksumError(WeightsDownloadError):
    """The downloaded bytes do not have the published size / sha256; nothing is kept; exit 1."""

    exit_code = 1


@dataclass
class DownloadResult:
    """``path`` of the verified file in the cache, its ``sha256`` (hex) and ``size`` (bytes),
    ``downloaded`` (False when the cached file was reused) and ``verified`` ("published" when
    checked against the registry's sha256, "remembered" against the side file of an earlier
    download, "none" for a first download without a published hash)."""

    entry: WeightsEntry
    path: Path
    sha256: str
    size: int
    downloaded: bool
    verified: str


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/annotator/weights`` (default ``~/.cache/annotator/weights``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "annotator" / "weights"


def lookup(name: str, registry: dict[str, WeightsEntry] | None = None) -> WeightsEntry:
    """The entry for ``name`` (with or without ``.pth``).

    Raises:
        AnnotatorError: unknown name (the message lists the known ones).
    """
    registry = WEIGHTS if registry is None else registry
    key = name[:-4] if name.endswith(".pth") else name
    if key not in registry:
        raise AnnotatorError(f"NAME: unknown weights {name!r}; known: {', '.join(sorted(registry))} "
                             f"(annotator download-weights --list)")
    return registry[key]


def sha256_of(path: Path) -> str:
    """Lowercase hex sha256 of a file (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _cached(entry: WeightsEntry, path: Path) -> tuple[str, str] | None:
    """``(sha256, how)`` when ``path`` exists and verifies, else None."""
    if not path.is_file() or (entry.size is not None and path.stat().st_size != entry.size):
        return None
    expected, how = entry.sha256, "published"
    if expected is None:
        side = _sidecar(path)
        if not side.is_file():
            return None
        words = side.read_text(encoding="ascii", errors="replace").split()
        expected, how = (words[0] if words else ""), "remembered"
    digest = sha256_of(path)
    return (digest, how) if digest == expected.lower() else None


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason).strip() or type(reason).__name__
    return text.splitlines()[0]


def _progress(total: int | None, desc: str):
    from tqdm import tqdm

    # disable=None: shown on a terminal, silent when stderr is piped
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=None,
                dynamic_ncols=True, leave=False)


def download_weights(name: str, *, cache_dir: str | Path | None = None,
                     registry: dict[str, WeightsEntry] | None = None, timeout: float = 30.0,
                     progress: bool = True, force: bool = False,
                     log: Callable[[str], None] | None = None) -> DownloadResult:
    """Download the registry entry ``name`` into the cache and verify it.

    Args:
        name: registry name (see :data:`WEIGHTS`; ``.pth`` suffix accepted).
        cache_dir: folder for the file (default :func:`default_cache_dir`); created if missing.
        registry: the registry to use (default :data:`WEIGHTS`; tests pass their own).
        timeout: seconds for the connection and for each read.
        progress: show a tqdm progress bar (only on a terminal).
        force: download again even if a verified file is in the cache.
        log: receives one-line notes (e.g. a cached file that no longer verifies).

    Returns:
        :class:`DownloadResult`.

    Raises:
        AnnotatorError: unknown ``name``.
        OfflineError: the host cannot be reached (no network, DNS failure, refused, timeout).
        WeightsDownloadError: HTTP error, connection lost mid-way, cache not writable.
        ChecksumError: size or sha256 differs from the published value (the ``.part`` file is
            deleted; nothing lands in the cache).
    """
    entry = lookup(name, registry)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache / entry.filename
    part = cache / (entry.filename + ".part")
    if not force:
        hit = _cached(entry, final)
        if hit is not None:
            return DownloadResult(entry, final, hit[0], final.stat().st_size, downloaded=False, verified=hit[1])
        if final.exists() and log is not None:
            log(f"{final}: in the cache but does not verify; downloading it again")
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsDownloadError(f"{cache}: cannot create the cache folder: {exc.strerror}") from None

    from annotator import __version__

    request = urllib.request.Request(entry.url, headers={"User-Agent": f"annotator/{__version__}"})
    digest = hashlib.sha256()
    received = 0
    try:
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            raise WeightsDownloadError(f"cannot download {entry.name}: HTTP {exc.code} {exc.reason} "
                                       f"from {entry.url}") from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as exc:
            raise OfflineError(f"cannot download {entry.name}: offline or host unreachable ({_reason(exc)})") from None
        with response:
            length = response.headers.get("Content-Length")
            total = entry.size or (int(length) if length and length.isdigit() else None)
            bar = _progress(total, entry.filename) if progress else None
            try:
                with open(part, "wb") as out:
                    while True:
                        try:
                            chunk = response.read(_CHUNK)
                        except (socket.timeout, TimeoutError, ConnectionError, OSError) as exc:
                            raise WeightsDownloadError(
                                f"cannot download {entry.name}: connection lost after {received} bytes "
                                f"({_reason(exc)})") from None
                        if not chunk:
                            break
                        received += len(chunk)
                        if entry.size is not None and received > entry.size:
                            break  # more than published: stop reading, the size check below fails
                        digest.update(chunk)
                        out.write(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                    out.flush()
                    os.fsync(out.fileno())
            except OSError as exc:
                raise WeightsDownloadError(f"{part}: cannot write: {exc.strerror}") from None
            finally:
                if bar is not None:
                    bar.close()
        got = digest.hexdigest()
        if entry.size is not None and received != entry.size:
            raise ChecksumError(f"{final}: size mismatch: expected {entry.size} bytes, got "
                                f"{received}{'+' if received > entry.size else ''}; file deleted")
        if entry.sha256 is not None and got != entry.sha256.lower():
            raise ChecksumError(f"{final}: sha256 mismatch: expected {entry.sha256}, got {got}; file deleted")
        os.replace(part, final)
    finally:
        part.unlink(missing_ok=True)
    if entry.sha256 is None:
        _sidecar(final).write_text(f"{got}  {entry.filename}\n", encoding="ascii")
    return DownloadResult(entry, final, got, received, downloaded=True,
                          verified="published" if entry.sha256 else "none")


def list_lines(registry: dict[str, WeightsEntry] | None = None, cache_dir: str | Path | None = None) -> list[str]:
    """Human-readable registry listing, one block of lines per entry (``--list``)."""
    registry = WEIGHTS if registry is None else registry
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    lines = []
    for entry in registry.values():
        cached = " (in cache)" if (cache / entry.filename).is_file() else ""
        size = f"{entry.size:,} bytes" if entry.size is not None else "size not published"
        lines.append(f"{entry.name}{cached}  --arch {entry.arch}  {size}")
        lines.append(f"    {entry.url}")
        lines.append(f"    sha256 {entry.sha256}" if entry.sha256 else f"    {NOT_PUBLISHED}")
    return lines


def import_weights(path: str | Path, arch: str, *, out: str | Path | None = None, project: str | Path | None = None,
                   log: Callable[[str], None] = print) -> Path:
    """Import an official checkpoint into a segcore checkpoint (and optionally register it in a
    project): the one function behind ``annotator import-weights`` and ``download-weights
    --import-to``.

    Args:
        path: the official file (``.pth`` read with ``torch.load(weights_only=True)``, detectron2
            ``.pkl`` read as numpy arrays; never executed): ``segcore.importers.import_official_weights``.
        arch: the registered architecture the weights belong to.
        out: the segcore checkpoint to write (default ``<user data>/models/<stem>.<arch>.pth``).
        project: a project folder to register the checkpoint in as a model version.
        log: receives the import summary and what was written.

    Returns:
        The written checkpoint's path.

    Raises:
        AnnotatorError: missing file, refused weights (keys listed), unwritable ``out``, or a
            missing project.
    """
    from segcore.checkpoints import save_checkpoint
    from segcore.importers import WeightImportError, import_official_weights

    from annotator.samples import user_data_dir

    src = Path(path)
    if not src.is_file():
        raise AnnotatorError(f"FILE: file not found: {src}")
    if project is not None and not Path(project).exists():
        raise AnnotatorError(f"{project}: project not found (create it with 'annotator new {project} --images DIR')")
    try:
        model, report, categories = import_official_weights(src, arch)
    except WeightImportError as exc:
        raise AnnotatorError(str(exc)) from None
    dest = Path(out) if out else user_data_dir() / "models" / f"{src.stem}.{arch}.pth"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(dest, model, categories=categories,
                        meta={"imported_from": str(src), "import_report": report.summary()})
    except OSError as exc:
        raise AnnotatorError(f"--out: cannot write {dest}: {exc.strerror}") from None
    log(report.summary())
    log(f"wrote segcore checkpoint {dest}")
    if project is not None:
        from annotator.project import Project

        with Project.open(Path(project), create_if_folder=False) as proj:
            version = proj.register_model_version(arch=arch, checkpoint=dest, categories=categories,
                                                  data_snapshot={"imported_from": str(src)})
        log(f"registered model version {version} in {project}")
    return dest
