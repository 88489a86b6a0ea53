"""Colab as a student meets it, simulated offline.

A fresh virtual environment plays Colab's runtime: Colab's own ipykernel 6.17, IPython
7.34 and ipywidgets 7.7.1 (installed by pip), and torch, torchvision, numpy,
matplotlib and tqdm already there, as on Colab; those are the packages of this
course's ``.venv``, linked in through a ``.pth`` file rather than installed again.
A kernel of that environment then runs notebook 01 as Colab would: its first cell,
with Colab detection forced on (``DHAM_FORCE_COLAB=1``), clones the course from a
local URL (this repository's committed ``HEAD``) and installs it with ``%pip``; the
rest of the notebook must then run to the end in quick mode, and a slider and a
dropdown must redraw an explorer under ipywidgets 7.7.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import subprocess
import venv
from pathlib import Path

import nbformat
import pytest
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from packaging.requirements import Requirement

from dham_lib.course.colab import COLAB_CELL
from tests.test_notebooks import NOTEBOOK_DIR, _run_cell

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = NOTEBOOK_DIR / "01_pmf_math.ipynb"
# What Colab has before the course arrives (its runtime of 2025-2026).
COLAB_PREINSTALLED = ["torch", "torchvision", "numpy", "matplotlib", "tqdm"]
COLAB_PINNED = ["ipykernel==6.17.1", "ipython==7.34.0", "ipywidgets==7.7.1"]
# Run in the Colab kernel after the notebook: what a student's later notebooks need.
AFTER_CHECK = """\
import ipywidgets, torch, dham_lib
from dham_lib.data import load_mnist
from dham_lib.study.pretrained import load_committed
images, labels = load_mnist("test", source="bundled", verbose=False)
model, meta = load_committed("dham-clean-w16")
print("ipywidgets", ipywidgets.__version__)
print("torch", torch.__file__)
print("dham_lib", dham_lib.__file__)
print("digits", len(labels), "checkpoint", meta["model_config"]["width"])
from dham_lib.course.explorers import pmf_explorer
from dham_lib.course.widgets import build_explorer, make_slider
box = build_explorer(
    lambda peak_x, spread: pmf_explorer(peak_x, 0.0, spread, 1.0),
    peak_x=make_slider("peak x", 0.0, -1, 1, 0.1),
    spread=ipywidgets.Dropdown(options=[0.1, 0.3], value=0.3),
)
drawn = [box.children[1].outputs]
for control, value in zip(box.children[0].children, (0.5, 0.1)):
    control.value = value
    drawn.append(box.children[1].outputs)
print("redrawn", len({str(outputs) for outputs in drawn}))
"""


def _dependency_closure(names: list[str]) -> list[metadata.Distribution]:
    """The installed distributions ``names`` need, themselves included."""
    found, todo = {}, list(names)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in found:
            continue
        dist = metadata.distribution(name)
        found[name] = dist
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return list(found.values())


def _link_preinstalled(names: list[str], folder: Path) -> None:
    """Symlink the top-level files of ``names`` and their dependencies into ``folder``."""
    folder.mkdir()
    for dist in _dependency_closure(names):
        site = Path(dist.locate_file(""))
        tops = {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            if (site / top).exists() and not (folder / top).exists() and top != "__pycache__":
                (folder / top).symlink_to(site / top)


def _site_packages(env: Path) -> Path:
    return next((env / "lib").glob("python3*/site-packages"))


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """(python of the fake Colab runtime, its preinstalled folder, the course's clone URL)."""
    tmp = tmp_path_factory.mktemp("colab")
    env = tmp / "runtime"
    venv.create(env, with_pip=True)
    preinstalled = tmp / "preinstalled"
    _link_preinstalled(COLAB_PREINSTALLED, preinstalled)
    (_site_packages(env) / "colab_preinstalled.pth").write_text(f"{preinstalled}\n")
    python = env / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *COLAB_PINNED],
        check=True,
    )
    return python, preinstalled, ROOT.as_uri()


def _start_kernel(python: Path, cwd: Path, extra_env: dict) -> KernelManager:
    kernels = cwd.parent / "kernels"
    spec = kernels / "colab"
    spec.mkdir(parents=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "Colab", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    manager = KernelManager(
        kernel_name="colab", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)])
    )
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "MPLBACKEND")}
    manager.start_kernel(cwd=str(cwd), env={**env, **extra_env})
    return manager


def _torch_record(preinstalled: Path) -> tuple[str, int]:
    record = next(preinstalled.glob("torch-*.dist-info")) / "RECORD"
    return record.resolve().as_posix(), record.stat().st_mtime_ns


def test_notebook_01_installs_the_course_and_runs_to_the_end_on_colab(colab, tmp_path):
    python, preinstalled, url = colab
    torch_before = _torch_record(preinstalled)
    content = tmp_path / "content"  # Colab's working folder
    content.mkdir()
    env = {"DHAM_FORCE_COLAB": "1", "DHAM_REPO_URL": url, "DHAM_QUICK": "1"}
    manager = _start_kernel(python, content, env)
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=120)
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        code = [cell.source for cell in nb.cells if cell.cell_type == "code"]
        outputs = [_run_cell(client, source, f"cell {i + 1}") for i, source in enumerate(code)]
        check = _run_cell(client, AFTER_CHECK, "the check after the notebook")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)

    install = "".join(o.get("text", "") for o in outputs[0])
    assert "torch" not in install.lower(), f"the install cell touched torch:\n{install}"
    printed = dict(line.split(" ", 1) for line in "".join(o.text for o in check).splitlines())
    clone = content / "dham-course"
    assert printed["ipywidgets"] == "7.7.1"
    assert Path(printed["torch"]).is_relative_to(preinstalled), printed["torch"]
    assert Path(printed["dham_lib"]).is_relative_to(clone), printed["dham_lib"]
    assert printed["digits"] == "1000 checkpoint 16"
    assert printed["redrawn"] == "3"  # a slider and a dropdown each redraw, on ipywidgets 7.7
    # torch is still the preinstalled one: not reinstalled into the runtime, not replaced.
    assert _torch_record(preinstalled) == torch_before
    assert not list(_site_packages(python.parent.parent).glob("torch*"))
    pip_list = subprocess.run(
        [python, "-m", "pip", "list", "--editable", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "dham-lib" in pip_list or "dham_lib" in pip_list, pip_list
    assert (clone / "data" / "mnist5k.npz").is_file()


def test_a_failed_clone_stops_the_first_cell_with_one_clear_message(colab, tmp_path):
    python, _, _ = colab
    content = tmp_path / "content"
    (content / "dham-course").mkdir(parents=True)  # what a clone that broke off leaves
    missing = (tmp_path / "no-such-course").as_uri()
    manager = _start_kernel(python, content, {"DHAM_FORCE_COLAB": "1", "DHAM_REPO_URL": missing})
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=120)
    try:
        with pytest.raises(RuntimeError) as error:
            _run_cell(client, COLAB_CELL, "the first cell")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert f"Could not fetch the course from {missing}" in str(error.value)
    assert not (content / "dham-course").exists()  # the broken clone was removed, not trusted
