"""data/ is the lowest layer: models/ and hpo/ import from it, it imports nothing from hpo/."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from conftest import REPO

DATA_MODULES = sorted((REPO / "data").glob("*.py"))


def imported_modules(path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` names in the file, at any depth (functions too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_modules_checked_are_found():  # an empty glob would make the test below pass vacuously
    assert "registry.py" in {p.name for p in DATA_MODULES} and "errors.py" in {p.name for p in DATA_MODULES}


@pytest.mark.parametrize("path", DATA_MODULES, ids=lambda p: p.name)
def test_no_data_module_imports_hpo(path):
    upward = sorted(m for m in imported_modules(path) if m == "hpo" or m.startswith("hpo."))
    assert not upward, f"data/{path.name} imports {', '.join(upward)}; data/ must not depend on hpo/"


def test_importing_data_loads_no_hpo_module():
    """Also what the import statements above cannot show: a module that imports hpo on our behalf."""
    code = ("import data, data.splits, data.folder, data.cifar, data.streaming; import sys; "
            "loaded = [m for m in sys.modules if m == 'hpo' or m.startswith('hpo.')]; "
            "assert not loaded, loaded")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
