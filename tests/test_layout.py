"""The library's layout: docstrings free of control characters, every module with an ``__all__``,
the old flat import paths still working (with a warning naming the new home)."""
from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parent.parent / "ctd_lib"
MODULES = sorted(p for p in LIB.rglob("*.py") if p.name != "__init__.py")
SHIMS = {
    "coupled": "task_distance.coupled", "baselines": "task_distance.finetune", "matrices": "task_distance.matrices",
    "stats": "task_distance.stats", "rademacher": "task_distance.rademacher", "training": "geometry.sgd",
    "interpolation": "transport.interpolation", "iso_classification": "free_energy.iso_classification",
    "iso_transfer": "free_energy.iso_transfer",
}


def _docstrings(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                yield getattr(node, "name", "<module>"), doc


@pytest.mark.parametrize("path", MODULES + sorted(LIB.rglob("__init__.py")), ids=lambda p: str(p.relative_to(LIB)))
def test_docstrings_have_no_control_characters(path):
    """A non-raw docstring turns \\theta into TAB+'heta' and \\big into BACKSPACE+'ig': the math renders as garbage."""
    for name, doc in _docstrings(ast.parse(path.read_text())):
        bad = sorted({hex(ord(c)) for c in doc if ord(c) < 32 and c != "\n"})
        assert not bad, f"{path.relative_to(LIB)}:{name} docstring holds control characters {bad}"


def test_the_control_character_check_can_fail():
    tree = ast.parse('def f():\n    """a \\theta b"""\n')
    assert any("\t" in doc for _, doc in _docstrings(tree))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(LIB)))
def test_every_module_declares_all(path):
    tree = ast.parse(path.read_text())
    assert any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in n.targets)
               for n in tree.body), f"{path.relative_to(LIB)} has no __all__"


@pytest.mark.parametrize("old", sorted(SHIMS))
def test_old_flat_modules_re_export_with_a_warning(old):
    new = importlib.import_module(f"ctd_lib.{SHIMS[old]}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shim = importlib.reload(importlib.import_module(f"ctd_lib.{old}"))
    assert any(issubclass(w.category, DeprecationWarning) and SHIMS[old] in str(w.message) for w in caught)
    for name in new.__all__:
        assert getattr(shim, name) is getattr(new, name)


def test_old_top_level_names_resolve_with_a_warning():
    import ctd_lib
    from ctd_lib.transport.blocks import block_plan

    with pytest.warns(DeprecationWarning, match="transport.blocks"):
        assert ctd_lib.block_plan is block_plan
    with pytest.raises(AttributeError, match="no_such_name"):
        ctd_lib.no_such_name  # noqa: B018
    assert 15 <= len(ctd_lib.__all__) <= 30 and all(hasattr(ctd_lib, n) for n in ctd_lib.__all__)
