"""Downloadable official weights: a small registry and a verified download into the user's cache.

Nothing here runs unless the user asks (``annotator download-weights NAME``): the app works
offline and never fetches anything by itself. Training uses what was downloaded (it looks, it
never fetches): see :func:`find_downloaded` and ``annotator.jobs.train``.

Registry (:data:`WEIGHTS`, name -> :class:`WeightsEntry` =
:class:`segcore.modeling.registry.OfficialWeights`): every model family's ``official_weights``
(the family packages own them and cite their sources in ``entry.source``). Two kinds:

* ``kind="coco"``: whole models trained on COCO, stored in the annotator's cache
  (``store="cache"``): the official YOLACT / YOLACT++ checkpoints of dbolya/yolact (the author's
  Hugging Face mirrors ``https://huggingface.co/dbolya/<repo>/resolve/main/<file>``), AdelaiDet's
  BlendMask checkpoints (Hugging Face ``ZjuCv/AdelaiDet``) and centermask2's CenterMask /
  CenterMask-Lite checkpoints (Dropbox links of its README); ``/work/shared/reference/model_refs.md``
  sections 1.5, 3.3 and 4.3. Only ``yolact_resnet50_54_800000.pth`` has a published size and
  sha256 (127,300,392 bytes, ``c12bb7a7...d6d7``, from openvinotoolkit/open_model_zoo
  ``models/public/yolact-resnet50-fpn-pytorch/model.yml``); for the others the sha256 is not
  published, so it is printed after the download for you to compare with a source you trust, and
  remembered in a ``<file>.sha256`` side file so that a later run can tell the file is unchanged.
* ``kind="imagenet"``: torchvision's ImageNet ResNet-18 / 50 / 101 (``IMAGENET1K_V1``; URL and
  file name from torchvision's weights API), stored where torchvision and the YOLACT family's
  backbone lookup find them (``store="torch_hub"``: ``torch.hub.get_dir()/checkpoints``, i.e.
  ``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``) and checked as
  torch.hub checks them: the file's sha256 must start with the hex part of its name
  (``resnet18-f37072fd.pth``, ``torch.hub.HASH_REGEX``).

None of these URLs could be tried from the development machine (no network).

Download (:func:`download_weights`): ``urllib.request`` streams into ``<folder>/<file>.part``
with a tqdm progress bar (on a terminal), the size and sha256 (``hashlib``) are checked, and
only a verified file is renamed (``os.replace``, atomic) to ``<folder>/<file>``. Any failure
removes the ``.part`` file. A file already there that verifies is not downloaded again.
Cache folder of ``store="cache"``: ``$XDG_CACHE_HOME/annotator/weights`` (default
``~/.cache/annotator/weights``).

The downloaded ``.pth`` files are plain state_dicts; they are only ever read with
``torch.load(weights_only=True)`` (``segcore.importers``, torchvision ResNet loading), never executed.
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
           "ChecksumError", "default_cache_dir", "folder_of", "lookup", "download_weights", "sha256_of", "list_lines",
           "find_downloaded", "import_weights", "KIND_TITLES"]

_CHUNK = 1 << 20  # bytes read per step
NOT_PUBLISHED = "sha256 not published; printed after download for you to check"
#: ``--list`` headings by :attr:`WeightsEntry.kind`.
KIND_TITLES = {"coco": "COCO checkpoints (import with --import-to PROJECT; training starts from one of its "
                       "architecture when downloaded)",
               "imagenet": "ImageNet backbones (training uses them when no trained model is there; not importable)"}


#: name -> entry: every model family's ``official_weights`` (the family packages own them).
WEIGHTS: dict[str, WeightsEntry] = {e.name: e for fam in FAMILIES.values() for e in fam.official_weights}


class WeightsDownloadError(AnnotatorError):
    """A download could not be completed (HTTP error, connection lost, unwritable cache); exit 2."""

    exit_code = 2


class OfflineError(WeightsDownloadError):
    """No connection to the host: DNS failure, refused connection, timeout; exit 2."""


class ChecksumError(WeightsDownloadError):
    """The downloaded bytes do not have the published size / sha256 (or, for a torch hub file,
    the sha256 prefix in its name); nothing is kept; exit 1."""

    exit_code = 1


@dataclass
class DownloadResult:
    """``path`` of the verified file in the cache, its ``sha256`` (hex) and ``size`` (bytes),
    ``downloaded`` (False when the cached file was reused) and ``verified`` ("published" when
    checked against the registry's sha256, "name" against the sha256 prefix in the file name
    (torch.hub's convention), "remembered" against the side file of an earlier download, "none"
    for a first download without a published hash)."""

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


def folder_of(entry: WeightsEntry, cache_dir: str | Path | None = None) -> Path:
    """Where ``entry``'s file goes: ``cache_dir`` (default :func:`default_cache_dir`) for
    ``store="cache"``; ``torch.hub.get_dir()/checkpoints`` for ``store="torch_hub"`` (``cache_dir``
    does not apply: that is where torchvision and the backbone lookups look; ``TORCH_HOME`` moves it)."""
    if entry.store == "torch_hub":
        import torch.hub

        return Path(torch.hub.get_dir()) / "checkpoints"
    return Path(cache_dir) if cache_dir is not None else default_cache_dir()


def lookup(name: str, registry: dict[str, WeightsEntry] | None = None) -> WeightsEntry:
    """The entry for ``name``: a registry name (with or without ``.pth``) or an entry's file name
    (``resnet50-0676ba61.pth``, ``blendmask_R_50_3x.pth``).

    Raises:
        AnnotatorError: unknown name (the message lists the known ones).
    """
    registry = WEIGHTS if registry is None else registry
    key = name[:-4] if name.endswith(".pth") else name
    if key in registry:
        return registry[key]
    by_file = [e for e in registry.values() if e.filename == name]
    if len(by_file) == 1:
        return by_file[0]
    raise AnnotatorError(f"NAME: unknown weights {name!r}; known: {', '.join(sorted(registry))} "
                         f"(annotator download-weights --list)")


def sha256_of(path: Path) -> str:
    """Lowercase hex sha256 of a file (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _expected(entry: WeightsEntry, path: Path) -> tuple[str, str] | None:
    """``(expected sha256 or its prefix, how)`` for a file at ``path``, or None when nothing
    says what it should be (no published hash, no side file)."""
    if entry.sha256 is not None:
        return entry.sha256.lower(), "published"
    if entry.store == "torch_hub":
        return entry.name_hash_prefix(), "name"
    side = _sidecar(path)
    if not side.is_file():
        return None
    words = side.read_text(encoding="ascii", errors="replace").split()
    return (words[0].lower() if words else ""), "remembered"


def _matches(digest: str, expected: str, how: str) -> bool:
    # torch.hub's check: the name carries a prefix of the hash (download_url_to_file, check_hash)
    return bool(expected) and (digest.startswith(expected) if how == "name" else digest == expected)


def _cached(entry: WeightsEntry, path: Path, *, verify: bool = True) -> tuple[str, str] | None:
    """``(sha256, how)`` when ``path`` exists and verifies, else None. ``verify=False`` only checks
    that the file is there with its size and something to verify it against (sha256 ``""``)."""
    if not path.is_file() or (entry.size is not None and path.stat().st_size != entry.size):
        return None
    want = _expected(entry, path)
    if want is None:
        return None
    if not verify:
        return "", want[1]
    digest = sha256_of(path)
    return (digest, want[1]) if _matches(digest, *want) else None


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
        cache_dir: folder for a ``store="cache"`` file (default :func:`default_cache_dir`);
            created if missing. A ``store="torch_hub"`` file (ImageNet backbones) always goes to
            ``torch.hub.get_dir()/checkpoints`` (:func:`folder_of`).
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
        ChecksumError: size or sha256 differs from the published value, or a torch hub file's
            sha256 does not start with the prefix in its name (the ``.part`` file is deleted;
            nothing lands in the folder).
    """
    entry = lookup(name, registry)
    cache = folder_of(entry, cache_dir)
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
        prefix = entry.name_hash_prefix() if entry.store == "torch_hub" else None
        if prefix is not None and not got.startswith(prefix):
            raise ChecksumError(f"{final}: sha256 mismatch: the file name says it starts with {prefix}, got {got}; "
                                "file deleted")
        os.replace(part, final)
    finally:
        part.unlink(missing_ok=True)
    if entry.sha256 is not None:
        verified = "published"
    elif prefix is not None:
        verified = "name"
    else:
        verified = "none"
        _sidecar(final).write_text(f"{got}  {entry.filename}\n", encoding="ascii")
    return DownloadResult(entry, final, got, received, downloaded=True, verified=verified)


def list_lines(registry: dict[str, WeightsEntry] | None = None, cache_dir: str | Path | None = None) -> list[str]:
    """Human-readable registry listing (``--list``): a heading per kind (:data:`KIND_TITLES`), then
    a block of lines per entry: name, whether it is downloaded, architecture, size, URL, hash and
    the folder it goes to."""
    registry = WEIGHTS if registry is None else registry
    lines = []
    for kind, title in KIND_TITLES.items():
        entries = [e for e in registry.values() if e.kind == kind]
        if not entries:
            continue
        lines.append(f"{title}:")
        for entry in entries:
            folder = folder_of(entry, cache_dir)
            cached = " (downloaded)" if (folder / entry.filename).is_file() else ""
            size = f"{entry.size:,} bytes" if entry.size is not None else "size not published"
            arch = (f"--arch {entry.arch}" if entry.kind == "coco"
                    else f"backbone of {entry.arch} and every architecture with it")
            lines.append(f"  {entry.name}{cached}  {arch}  {size}")
            lines.append(f"      {entry.url}")
            if entry.sha256:
                lines.append(f"      sha256 {entry.sha256}")
            elif entry.store == "torch_hub":
                lines.append(f"      sha256 starts with {entry.name_hash_prefix()} (torch.hub file-name convention); "
                             f"saved in {folder}")
            else:
                lines.append(f"      {NOT_PUBLISHED}")
    return lines


def find_downloaded(arch: str, *, kind: str = "coco", cache_dir: str | Path | None = None,
                    registry: dict[str, WeightsEntry] | None = None, verify: bool = True,
                    log: Callable[[str], None] | None = None) -> tuple[WeightsEntry, Path] | None:
    """The first registry entry of ``kind`` for ``arch`` whose file is downloaded and verifies, and
    its path; None when there is none. Never downloads.

    Args:
        arch: a registered architecture (``entry.arch`` must equal it).
        kind: ``"coco"`` (default) or ``"imagenet"``.
        cache_dir: the annotator cache (default :func:`default_cache_dir`).
        registry: default :data:`WEIGHTS`.
        verify: hash the file against its published / remembered / file-name sha256 (a file
            that does not verify is passed over); False only checks that it is there with its
            size and a hash to check it against (quick, for the GUI's description).
        log: told about each file that is there but passed over (changed since the download,
            or no hash to check it against).
    """
    if kind not in KIND_TITLES:
        raise ValueError(f"kind must be one of {', '.join(KIND_TITLES)}, got {kind!r}")
    registry = WEIGHTS if registry is None else registry
    for entry in registry.values():
        if entry.kind != kind or entry.arch != arch:
            continue
        path = folder_of(entry, cache_dir) / entry.filename
        if _cached(entry, path, verify=verify) is not None:
            return entry, path
        if path.is_file() and log is not None:
            log(f"{path}: downloaded {entry.name} does not verify (size / sha256 changed, or no hash to check "
                f"it against); passed over (annotator download-weights {entry.name} --force fetches it again)")
    return None


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
