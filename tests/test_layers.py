"""The library's three layers: the idea (top level), ``study``, ``course``; a lower layer
never imports a higher one, anywhere in a module (inside functions too)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dham_lib"
RANK = {"dham_lib": 0, "dham_lib.study": 1, "dham_lib.course": 2}


def layer(module: str) -> str:
    """The layer of a ``dham_lib`` module name: its package for study/course, else the top."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and parts[1] in ("study", "course") else "dham_lib"


def imported(path: Path) -> set[str]:
    """Every ``dham_lib`` module that ``path`` imports, at any depth of its code."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from dham_lib.study import results` imports dham_lib.study.results.
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] == "dham_lib"}


MODULES = sorted(PACKAGE.rglob("*.py"))
# `python -m dham_lib` runs dham_lib/__main__.py as a program: it hands over to the command
# line (dham_lib.study.cli) and is never imported by the library itself.
LIBRARY = [path for path in MODULES if path.name != "__main__.py"]


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_higher_layer(path):
    module = ".".join(("dham_lib", *path.relative_to(PACKAGE).with_suffix("").parts))
    own = RANK[layer(module)]
    higher = sorted(name for name in imported(path) if RANK[layer(name)] > own)
    assert not higher, f"{module} (layer {layer(module)}) imports {higher}"


def test_the_layout_is_the_documented_one():
    found = {str(p.relative_to(PACKAGE).with_suffix("")) for p in MODULES}
    top = {"pmf", "sampling", "dham", "metrics", "models", "train", "checkpoints", "settings"}
    data = {"data/__init__", "data/mnist", "data/canvas"}  # loading digits, drawing canvases
    study = {f"study/{m}" for m in ("runs", "executors", "results", "pretrained", "figures", "cli")}
    course = {
        f"course/{m}" for m in ("widgets", "answers", "colab", "figures", "inspect", "explorers")
    }
    private = {"__init__", "__main__", "_checks", "study/__init__", "course/__init__"}
    assert found == top | data | study | course | private


def test_the_top_level_reexports_the_first_names():
    import dham_lib

    for name in ("DHAM", "spatial_softmax", "expected_position", "expected_norm", "glimpse"):
        assert callable(getattr(dham_lib, name))
    for name in ("TranslatedMNIST", "load_mnist", "build_model", "fit", "evaluate"):
        assert callable(getattr(dham_lib, name))
