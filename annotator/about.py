"""What Help > About shows, collected without Qt (so tests and ``annotator --self-check`` style
tools can use it): version, the licences of the models and of the bundled sample data, and the
torch / CUDA build in use. :mod:`annotator.ui.about` only displays :func:`about_markdown`.

Model licences are stated only where the upstream LICENSE file was read (repository, commit and
file given in each family's ``Family.licence``, :func:`model_licences`).
"""

from __future__ import annotations

import platform


def model_licences() -> list:
    """The licence of each registered model family's official code / weights
    (:class:`segcore.modeling.registry.Licence`: ``family``, ``paper``, ``upstream``, ``licence``,
    ``source``), from the family packages (``Family.licence``)."""
    from segcore.modeling import FAMILIES

    return [fam.licence for fam in FAMILIES.values()]


MODELS_NOTE = (
    "segcore's models are re-implementations written for this project (Apache-2.0, like annotator); "
    "no model weights are bundled, and models start from random init unless weights are given. "
    "Official weights imported with `annotator import-weights` remain under their upstream licence:"
)


def runtime_info() -> dict:
    """Versions and devices of the running installation.

    Returns:
        ``{"annotator", "python", "platform", "torch", "torchvision", "cuda_build", "cudnn",
        "cuda_available", "cuda_devices", "pyside6"}``; ``cuda_build`` is ``torch.version.cuda``
        (``None`` for a CPU-only build), ``cuda_devices`` the device names (empty without CUDA).
        Packages that cannot be imported are reported as ``"not installed"``; never raises.
    """
    from importlib.metadata import PackageNotFoundError, version

    import annotator

    info: dict = {"annotator": annotator.version(), "python": platform.python_version(),
                  "platform": platform.platform(terse=True)}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda_build"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        info["cuda_available"] = bool(torch.cuda.is_available())
        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
            if info["cuda_available"] else []
    except Exception as exc:  # noqa: BLE001 - a broken torch is shown, not raised
        info.update(torch=f"not usable ({type(exc).__name__}: {exc})", cuda_build=None, cudnn=None,
                    cuda_available=False, cuda_devices=[])
    for key, dist in (("torchvision", "torchvision"), ("pyside6", "PySide6-Essentials")):
        try:
            info[key] = version(dist)
        except PackageNotFoundError:
            try:  # PySide6 may be installed as the full "PySide6" distribution
                info[key] = version("PySide6") if key == "pyside6" else "not installed"
            except PackageNotFoundError:
                info[key] = "not installed"
    return info


def sample_data_licences() -> str:
    """The bundled sample data's ``LICENSES.md`` (markdown), or a one-line note if missing."""
    from annotator import resources

    try:
        return (resources() / "samples" / "LICENSES.md").read_text(encoding="utf-8")
    except OSError as exc:
        return f"samples/LICENSES.md not readable: {exc}"


def about_markdown(info: dict | None = None, *, qt_version: str | None = None) -> str:
    """The About text as markdown.

    Args:
        info: :func:`runtime_info` output (collected when ``None``).
        qt_version: the Qt runtime version, added by the GUI (``PySide6.QtCore.qVersion()``).

    Returns:
        Markdown with the version, runtime (torch, CUDA build, devices, PySide6 / Qt), the
        model licences with their sources and the sample data licences.
    """
    info = runtime_info() if info is None else info
    if info.get("cuda_available"):
        cuda = f"available: {', '.join(info.get('cuda_devices') or ['?'])}"
    else:
        cuda = "not available (CPU)"
    lines = [
        f"# annotator {info['annotator']}",
        "",
        "Desktop annotation assistant for instance segmentation ("
        + ", ".join(lic.family.split(" (")[0] for lic in model_licences()) + " via segcore). Licence: Apache-2.0.",
        "",
        "## Runtime",
        "",
        f"- Python {info['python']} on {info['platform']}",
        f"- torch {info['torch']}, torchvision {info['torchvision']}",
        f"- CUDA build: {info['cuda_build'] or 'none (CPU-only build)'}"
        + (f", cuDNN {info['cudnn']}" if info.get("cudnn") else ""),
        f"- CUDA device: {cuda}",
        f"- PySide6 {info['pyside6']}" + (f", Qt {qt_version}" if qt_version else ""),
        "",
        "## Models",
        "",
        MODELS_NOTE,
        "",
    ]
    for m in model_licences():
        lines.append(f"- **{m.family}** ({m.paper}): {m.licence}. Source: "
                     f"https://github.com/{m.upstream} {m.source}.")
    lines += ["", "## Sample data", "", sample_data_licences().replace("# Sample images", "").strip(), ""]
    return "\n".join(lines)
