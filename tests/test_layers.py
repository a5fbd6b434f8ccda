"""The code's map holds: each package imports only what its docstring's "May import:" line allows, the packages
form no circle, no module imports another that imports it back, and the command line imports only the API.

Imports are read from the source (every ``import`` at any depth: functions and ``TYPE_CHECKING`` blocks
too), so a circle held together by function-local imports is a circle here.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys

import pytest

from helpers import REPO

PACKAGES = sorted(p.parent for p in (REPO / "hpo").glob("*/__init__.py")) + [REPO / "data", REPO / "models"]
# The modules directly in hpo/, bottom to top: each may import the packages and the modules before it.
TOP = ["hpo.pipeline", "hpo.api", "hpo.arguments", "hpo.cli", "hpo.__main__"]
# What the command line may import: the API, its own argument parser, the neutral core, the standard library.
CLI_MAY_IMPORT = ("hpo", "hpo.api", "hpo.arguments", "hpo.core")


def module_name(path) -> str:
    """``data/`` and ``models/`` install as ``hpo.data`` and ``hpo.models`` (setup.cfg's package_dir)."""
    parts = path.relative_to(REPO).with_suffix("").parts
    parts = ("hpo", *parts) if parts[0] in ("data", "models") else parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(REPO.glob("hpo/**/*.py")) + sorted(REPO.glob("data/*.py"))
           + sorted(REPO.glob("models/*.py"))}


def imported(path) -> set[str]:
    """The project modules ``path`` imports, anywhere in the file (``from pkg import module`` counts the module)."""
    names = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    return {n for n in names if n.split(".")[0] == "hpo"}


def owner(module: str) -> str:
    """The package a module belongs to on the map: ``hpo.train.trainer`` -> ``hpo.train``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else "hpo"


def allowed(package_path) -> set[str]:
    """The packages a package's docstring says it may import."""
    doc = ast.get_docstring(ast.parse((package_path / "__init__.py").read_text())) or ""
    match = re.search(r"May import: (.*?)\.?$", doc, re.M)
    assert match, f"{package_path.relative_to(REPO)}/__init__.py: its docstring needs a 'May import:' line"
    said = match.group(1)
    return set() if said.startswith("nothing") else {name.strip() for name in said.split(",")}


def test_the_map_is_found():  # an empty glob would make the tests below pass vacuously
    names = {p.name for p in PACKAGES}
    assert {"core", "stores", "train", "study", "spec", "track", "search", "retrain", "serve", "report",
            "bench", "data", "models"} <= names
    assert set(TOP) <= set(MODULES) and len(MODULES) > 60


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_each_package_imports_only_what_its_docstring_allows(package):
    name = module_name(package / "__init__.py")
    may = allowed(package) | {name, "hpo"}  # itself, and the hpo package (its version)
    for path in sorted(package.glob("*.py")):
        outside = sorted(m for m in imported(path) if owner(m) not in may)
        assert not outside, f"{path.relative_to(REPO)} imports {', '.join(outside)}; {name} may import only " \
                            f"{', '.join(sorted(allowed(package))) or 'nothing of hpo'} (its __init__ says so)"


def test_the_packages_form_no_circle():
    graph = {module_name(p / "__init__.py"): allowed(p) for p in PACKAGES}
    order = []  # the packages bottom to top, or a circle
    while graph:
        ready = sorted(name for name, needs in graph.items() if not needs & set(graph))
        assert ready, f"the packages' 'May import:' lines form a circle among {', '.join(sorted(graph))}"
        order += ready
        for name in ready:
            del graph[name]
    assert order.index("hpo.core") == 0 and order.index("hpo.spec") < order.index("hpo.search")


def test_the_top_modules_import_only_what_is_below_them():
    packages = {module_name(p / "__init__.py") for p in PACKAGES} | {"hpo"}
    for index, name in enumerate(TOP):
        below = packages | set(TOP[:index + 1])
        outside = sorted(m for m in imported(MODULES[name]) if m not in below and owner(m) not in below)
        assert not outside, f"{name} imports {', '.join(outside)}, which is not below it"


def test_no_module_imports_itself_back():
    graph = {name: {m for m in imported(path) if m in MODULES and m != name} for name, path in MODULES.items()}
    # hpo/__init__.py is the top of the map for notebooks: hpo.run, hpo.load and hpo.promote call hpo.api
    # inside the functions. The other modules import hpo only for __version__, which that file defines first.
    graph["hpo"] -= {"hpo.api"}
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    # data/ and models/ fill their registries by importing their modules from __init__, which import the
    # decorator back from it (timm's pattern): a circle inside one such package, through its __init__, is that.
    circles = [c for c in circles if not (owner(c[0]) in ("hpo.data", "hpo.models") and all(owner(m) == owner(c[0]) for m in c))]
    assert not circles, f"import circles: {circles}"


@pytest.mark.parametrize("name", ["hpo.cli", "hpo.arguments"])
def test_the_command_line_imports_only_the_api(name):
    outside = sorted(m for m in imported(MODULES[name]) if m not in CLI_MAY_IMPORT and owner(m) != "hpo.core")
    assert not outside, f"{name} imports {', '.join(outside)}; the command line parses, calls hpo.api and prints"


def test_the_command_line_loads_no_store_or_training_library():
    """Also what the import statements cannot show: a module that imports one on the command line's behalf."""
    code = ("import sys, hpo.cli; heavy = {'torch', 'optuna', 'mlflow', 'sqlalchemy', 'torchvision', 'numpy'}; "
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy); assert not loaded, loaded")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_cli_is_short():
    assert len((REPO / "hpo" / "cli.py").read_text().splitlines()) < 350


def test_the_study_record_has_one_owner():
    """Every attribute hpo keeps on a study or trial is read and written in hpo/study/record.py alone."""
    pattern = re.compile(r"set_user_attr|set_trial_user_attr|user_attrs\s*(\[|\.get)|get_study_user_attrs")
    outside = [f"{path.relative_to(REPO)}:{number}" for name, path in MODULES.items() if name != "hpo.study.record"
               for number, line in enumerate(path.read_text().splitlines(), start=1) if pattern.search(line)]
    assert not outside, f"study or trial attributes touched outside hpo/study/record.py: {', '.join(outside)}"


def test_setup_cfg_installs_every_package_and_no_top_level_data_or_models():
    import configparser

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    assert listed == {module_name(p / "__init__.py") for p in PACKAGES} | {"hpo"}
    assert dict(line.split(" = ") for line in config["options"]["package_dir"].strip().splitlines()) == {
        "hpo.data": "data", "hpo.models": "models"}
