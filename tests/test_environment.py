"""environment.yml (conda, which cannot run here) asks for what pyproject.toml asks for."""

import re
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")

ROOT = Path(__file__).resolve().parent.parent
# conda-forge's name for a PyPI package, where they differ.
CONDA_NAMES = {"torch": "pytorch", "ray": "ray-core"}
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$")


def parse(requirement: str) -> tuple[str, str]:
    """'torch>=2.2' → ('torch', '>=2.2'), names lower-cased with '_' as '-'."""
    name, spec = REQUIREMENT.match(requirement).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in ("lab", "teach", "test", "cluster"):
        wanted += project["optional-dependencies"][extra]
    return dict(parse(r) for r in wanted)


def conda_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    return dict(parse(d) for d in env["dependencies"] if isinstance(d, str))


def test_same_packages_and_lower_bounds():
    conda = conda_requirements()
    for name, spec in pyproject_requirements().items():
        conda_name = CONDA_NAMES.get(name, name)
        assert conda_name in conda, f"environment.yml lacks {conda_name} ({name}{spec})"
        assert conda[conda_name] == spec, f"{conda_name}: conda {conda[conda_name]}, pip {spec}"


def test_python_floor_matches():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert conda_requirements()["python"] == project["requires-python"]


def test_no_upper_bounds_and_torch_never_pinned():
    # Colab brings its own torch: a pin or an upper bound would replace it.
    for name, spec in pyproject_requirements().items():
        assert "==" not in spec and "<" not in spec, f"{name}{spec} is pinned or capped"


def test_the_course_itself_is_installed_by_pip():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert pip_lists and any("--editable ." in line for line in pip_lists[0])


def test_make_installs_every_extra():
    # `make test` needs the cluster extra (the Ray sweep's test) as much as the test one.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    install = re.search(r"--editable '\.\[([^\]]*)\]'", (ROOT / "Makefile").read_text())
    assert install, "the Makefile installs no extras"
    assert set(install.group(1).split(",")) == set(project["optional-dependencies"])
