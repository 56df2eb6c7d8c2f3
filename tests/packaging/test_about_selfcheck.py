"""``annotator --version``, ``annotator --self-check`` (annotator.selfcheck) and the About
information (annotator.about), in-process on the source tree."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

import annotator  # noqa: E402
from annotator import about, cli, selfcheck  # noqa: E402


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"annotator {annotator.version()}"
    assert annotator.version() == annotator.__version__   # metadata of the editable install agrees


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2 and "COMMAND is required" in capsys.readouterr().err


def test_runtime_info_and_markdown():
    info = about.runtime_info()
    for key in ("annotator", "python", "torch", "torchvision", "cuda_build", "cuda_available", "cuda_devices",
                "pyside6"):
        assert key in info, key
    import torch

    assert info["torch"] == torch.__version__ and info["cuda_build"] == torch.version.cuda
    text = about.about_markdown(info, qt_version="6.x")
    assert f"# annotator {annotator.version()}" in text and "Qt 6.x" in text
    for lic in about.model_licences():
        assert lic.licence in text and f"https://github.com/{lic.upstream}" in text
    assert "CC BY 4.0" in text and "000000311303.jpg" in text      # sample data LICENSES.md


def test_about_without_cuda_says_cpu():
    info = {**about.runtime_info(), "cuda_build": None, "cuda_available": False, "cuda_devices": [], "cudnn": None}
    text = about.about_markdown(info)
    assert "CUDA build: none (CPU-only build)" in text and "CUDA device: not available (CPU)" in text


def test_self_check_failure_is_one_line(monkeypatch):
    def broken(state):
        raise RuntimeError("model zoo\nexploded")

    monkeypatch.setattr(selfcheck, "CHECKS", (("version", selfcheck.check_version), ("forward", broken),
                                              ("gui", lambda s: pytest.fail("ran after a failure"))))
    lines: list[str] = []
    assert selfcheck.run_self_check(lines.append) == 1
    assert lines[0].startswith("ok   version: annotator ")
    assert lines[1:] == ["FAILED forward: RuntimeError: model zoo exploded"]


@pytest.mark.gui
def test_self_check_passes_in_process(qapp):
    lines: list[str] = []
    assert selfcheck.run_self_check(lines.append) == 0, lines
    assert [ln.split(":")[0] for ln in lines[:-1]] == [f"ok   {name}" for name, _ in selfcheck.CHECKS]
    assert lines[-1].startswith("self-check passed")


def test_resources_come_from_the_top_level_folder_in_a_checkout():
    """A checkout reads resources/ beside the code (the wheel test covers the installed case)."""
    from pathlib import Path

    res = annotator.resources()
    assert Path(str(res)) == Path(annotator.__file__).resolve().parents[1] / "resources"
    assert (res / "samples" / "annotations.json").is_file() and (res / "icons" / "annotator.svg").is_file()
    assert callable(annotator.resources)  # never shadowed by a subpackage of the same name
