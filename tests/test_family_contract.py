"""Adding a model family needs no edit outside its package and the registry's family list.

Every module of ``segcore`` and ``annotator`` outside ``segcore/modeling/<family>/`` (for each
registered family) and the family list ``segcore/modeling/__init__.py`` is parsed, and none may
name a family or one of its architectures in code: string literals (docstrings excepted: they
may cite the papers), identifiers, attribute names, imports, function and class names. So there
is no ``arch.startswith("yolact")``, no ``from segcore.modeling.blendmask import ...``, no
``"centermask_tiny"`` default; what such code wanted to know comes from the family's
``Family`` object or the model's ``ModelInfo``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import segcore.modeling as modeling
from segcore.modeling.registry import ARCHITECTURES, FAMILIES, family_of_arch

REPO = Path(__file__).resolve().parents[1]
FAMILY_LIST = REPO / "segcore" / "modeling" / "__init__.py"


def _modules() -> list[Path]:
    own = [REPO / "segcore" / "modeling" / name for name in FAMILIES]
    files = sorted((REPO / "segcore").rglob("*.py")) + sorted((REPO / "annotator").rglob("*.py"))
    files += [REPO / "main.py"] + sorted((REPO / "packaging").glob("*.py"))
    return [f for f in files if f != FAMILY_LIST and not any(d in f.parents for d in own)]


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                ids.add(id(body[0].value))
    return ids


def _names_in_code(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string literal (not a docstring) and identifier in the module."""
    skip = _docstrings(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            out.append((node.lineno, node.value))
        elif isinstance(node, ast.Name):
            out.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute):
            out.append((node.lineno, node.attr))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.append((node.lineno, node.name))
        elif isinstance(node, ast.ImportFrom):
            out.append((node.lineno, node.module or ""))
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.arg):
            out.append((node.lineno, node.arg))
    return out


def test_no_module_outside_a_family_names_a_family_or_architecture():
    families = sorted(FAMILIES)
    assert families == sorted(modeling.FAMILY_PACKAGES)
    pattern = re.compile(r"(?<![A-Za-z])(" + "|".join(map(re.escape, families)) + r")", re.IGNORECASE)
    archs = set(ARCHITECTURES)
    leaks = []
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, text in _names_in_code(tree):
            if pattern.search(text) or text in archs:
                leaks.append(f"{path.relative_to(REPO)}:{line}: {text[:80]!r}")
    assert not leaks, "family knowledge outside the family packages:\n" + "\n".join(leaks)


def test_the_registry_imports_no_family_package():
    tree = ast.parse((REPO / "segcore" / "modeling" / "registry.py").read_text(encoding="utf-8"))
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if "modeling" in m or m.startswith(".")], imported


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_family_registers_itself_and_its_architectures(name):
    family = FAMILIES[name]
    own = [a for a in ARCHITECTURES if family_of_arch(a) is family]
    assert own and family.tiny_arch in own
    assert all(w.arch in own for w in family.official_weights)
    assert all(a in own for a in family.bench_archs)
    # its package registered everything: the module defining each builder lives there
    for arch in own:
        assert ARCHITECTURES[arch].__module__.startswith(f"segcore.modeling.{name}."), arch


def test_annotator_io_uses_the_project_public_api():
    """annotator/io writes through Project methods, never its private connection or helpers."""
    private = re.compile(r"\bproject\._[a-z]")
    hits = [f"{p.relative_to(REPO)}:{i}" for p in sorted((REPO / "annotator" / "io").glob("*.py"))
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if private.search(line)]
    assert not hits, hits
