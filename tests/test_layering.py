"""The import rules of README "Architecture", read from the source (AST, nothing imported):
``segcore`` never imports ``annotator`` or Qt; only ``annotator/ui`` imports PySide6."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """Top-level package names a file imports (anywhere in it, function bodies included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_segcore_imports_neither_annotator_nor_qt():
    bad = {str(p.relative_to(ROOT)): sorted(_imports(p) & {"annotator", "PySide6", "PyQt5", "PyQt6"})
           for p in (ROOT / "segcore").rglob("*.py")}
    assert not {k: v for k, v in bad.items() if v}


def test_only_annotator_ui_imports_pyside6():
    files = [p for p in (ROOT / "annotator").rglob("*.py") if "PySide6" in _imports(p)]
    assert files, "no module imports PySide6: the scan is broken"
    outside = [str(p.relative_to(ROOT)) for p in files if (ROOT / "annotator" / "ui") not in p.parents]
    assert not outside, outside
