"""Folders are layers (README: How the code is laid out): each layer imports only itself and the
layers below it, imports inside functions included, and the core loads neither Ray nor torch."""

import ast
import subprocess
import sys

import pytest
from conftest import REPO

# Each folder and what it may import of this project (besides itself).
# study.core.storage (files, local or URI) is the bottom: the data set readers read through it.
CORE = {"study.core", "study.core.datasets", "study.core.storage"}
ALLOWED = {
    "study.core.storage": set(),
    "study.core.datasets": {"study.core.storage"},
    "study.core": {"study.core.datasets", "study.core.storage"},
    "study.teachers": CORE,
    "trainables": CORE,
    "analysis": CORE,
    "study.run": CORE | {"study.teachers", "trainables", "analysis"},
}
TOPS = ("study", "trainables", "analysis")


def _folder(module: str) -> str:
    """The deepest folder of ALLOWED that holds a module."""
    return max((f for f in ALLOWED if module == f or module.startswith(f + ".")), key=len, default=module)


def _imports(path) -> set[str]:
    """The project modules a file imports, wherever in the file the import stands."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
        found.update(name for name in names if name.split(".")[0] in TOPS)
    return found


def _project_files():
    for top in TOPS:
        for path in sorted((REPO / top).rglob("*.py")):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            if module not in ("study", "study.__main__"):  # the package root and `python -m study`
                yield module, path


@pytest.mark.parametrize("module,path", list(_project_files()), ids=lambda value: str(value).rsplit("/", 1)[-1])
def test_a_module_imports_only_its_own_layer_and_those_below(module, path):
    folder = _folder(module)
    assert folder in ALLOWED, f"{module} lies in no known layer; add its folder to ALLOWED"
    above = sorted(name for name in _imports(path) if _folder(name) not in ALLOWED[folder] | {folder})
    assert not above, f"{module} ({folder}) imports {above}"


def test_the_core_loads_neither_ray_nor_torch():
    modules = [m for m, _ in _project_files() if _folder(m).startswith("study.core")]
    code = f"import sys; import {', '.join(modules)}; print(sorted(m for m in ('ray', 'torch') if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"
