"""Hygiene of the committed notebooks (notebooks/*.ipynb; notebooks/student/ is generated).

Students read the committed notebooks on GitHub, so each must carry the outputs of one
clean top-to-bottom run and nothing machine-specific. The rules checked here:

- valid nbformat JSON, named ``NN_topic.ipynb``, under 2 MB;
- the first cell is Markdown with the "Open in Colab" badge of this very notebook, and the
  first code cell is ``dham_lib.interactive.COLAB_CELL`` word for word;
- every code cell is non-empty and was executed, with execution counts 1, 2, … n in order
  (one fresh kernel, top to bottom);
- no error outputs; cells marked ``# NBVAL_CHECK_OUTPUT``, cells that print or show a
  figure, and exercise check cells have outputs (check cells end in "Correct");
- no widget state (``metadata.widgets``) and no volatile cell metadata (timings);
- no absolute paths (home folders, /tmp) in any output;
- nothing left for nbstripout (keeping outputs) to strip, so diffs stay clean;
- ``### BEGIN SOLUTION`` / ``### END SOLUTION`` come in pairs within a cell.

Run as a script, this file also executes notebooks and strips what the rules forbid::

    .venv/bin/python tests/test_notebooks.py --execute notebooks/01_pmf_math.ipynb
    .venv/bin/python tests/test_notebooks.py --strip notebooks/*.ipynb
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from dham_lib.course.colab import COLAB_CELL, colab_url

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
# Top level only: notebooks/student/ holds generated copies without outputs.
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
MAX_BYTES = 2 * 1024 * 1024
NAME = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")
ABSOLUTE_PATH = re.compile(r"/home/|/root/|/tmp/|/Users/|[A-Za-z]:\\Users", re.IGNORECASE)
VOLATILE_CELL_METADATA = ("execution", "ExecuteTime")
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"


def _load(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code_cells(nb) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def _output_text(output) -> str:
    """All the text of one output: streams, text data and error messages."""
    if output.output_type == "stream":
        return output.text
    if output.output_type == "error":
        return "\n".join([output.ename, output.evalue, *output.traceback])
    data = output.get("data", {})
    return "\n".join(
        v for k, v in data.items() if isinstance(v, str) and not k.startswith("image/")
    )


def notebook_title(nb) -> str:
    """The text of the notebook's first ``# `` heading."""
    lines = (line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines())
    return next(line[2:].strip() for line in lines if line.startswith("# "))


def figure_outputs(nb) -> list:
    """Every output of the notebook that holds a PNG figure."""
    return [o for c in _code_cells(nb) for o in c.outputs if "image/png" in o.get("data", {})]


def _printed(cell) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream")


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"


@pytest.fixture(params=NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def notebook(request):
    path = request.param
    return path, _load(path)


def test_valid_json_name_and_size(notebook):
    path, nb = notebook
    json.loads(path.read_text(encoding="utf-8"))
    nbformat.validate(nb)
    assert NAME.match(path.name), f"{path.name}: expected NN_topic.ipynb"
    size = path.stat().st_size
    assert size < MAX_BYTES, f"{path.name} is {size / 1e6:.2f} MB; save figures at a lower dpi"


def test_colab_badge_and_install_cell(notebook):
    path, nb = notebook
    first = nb.cells[0]
    assert first.cell_type == "markdown", f"{path.name}: the first cell must be Markdown"
    assert "Open In Colab" in first.source and f"({colab_url(path.name)})" in first.source, (
        f"{path.name}: the first cell lacks the Colab badge for {colab_url(path.name)}"
    )
    assert _code_cells(nb)[0].source == COLAB_CELL, (
        f"{path.name}: the first code cell must be dham_lib.interactive.COLAB_CELL word for word"
    )


def test_executed_once_top_to_bottom(notebook):
    path, nb = notebook
    cells = _code_cells(nb)
    for i, cell in enumerate(cells):
        assert cell.source.strip(), f"{path.name}: code cell {i + 1} is empty"
    counts = [cell.execution_count for cell in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{path.name}: execution counts {counts}; run it top to bottom in a fresh kernel"
    )


def test_outputs_present_and_no_errors(notebook):
    path, nb = notebook
    for i, cell in enumerate(_code_cells(nb), start=1):
        where = f"{path.name}, code cell {i}"
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{where} has an error output: {errors[0].ename}: {errors[0].evalue}"
        wants_output = (
            CHECK_MARK in cell.source
            or "plt.show()" in cell.source
            or re.search(r"^\s*print\(", cell.source, re.MULTILINE)
        )
        if wants_output:
            assert cell.outputs, f"{where} should have an output and has none"
        if "check_answers(" in cell.source or "check_function(" in cell.source:
            assert "Correct" in _printed(cell), f"{where}: the check cell does not say Correct"
    assert figure_outputs(nb), f"{path.name} shows no figure"


def test_no_widget_state_or_volatile_metadata(notebook):
    path, nb = notebook
    assert "widgets" not in nb.metadata, f"{path.name}: strip metadata.widgets (see --strip)"
    for i, cell in enumerate(nb.cells, start=1):
        volatile = [key for key in VOLATILE_CELL_METADATA if key in cell.metadata]
        assert not volatile, f"{path.name}, cell {i}: volatile metadata {volatile}"


def test_no_absolute_paths_in_outputs(notebook):
    path, nb = notebook
    for i, cell in enumerate(_code_cells(nb), start=1):
        for output in cell.outputs:
            found = ABSOLUTE_PATH.search(_output_text(output))
            assert not found, f"{path.name}, code cell {i}: absolute path {found.group()!r}"


MAX_PROSE_WORDS = 2300


def test_a_lesson_has_at_most_2300_words_of_prose(notebook):
    # A lesson a teacher reads aloud; provenance lives in docs/provenance.md instead.
    path, nb = notebook
    words = sum(len(cell.source.split()) for cell in nb.cells if cell.cell_type == "markdown")
    assert words <= MAX_PROSE_WORDS, (
        f"{path.name}: {words} words of prose, at most {MAX_PROSE_WORDS}"
    )


def test_no_quick_mode_outputs(notebook):
    # Quick mode (DHAM_QUICK=1) shrinks every training run to seconds for CI; a committed
    # teacher notebook must show what the real run prints, or its prose describes a model
    # that its outputs do not show.
    path, nb = notebook
    for i, cell in enumerate(_code_cells(nb), start=1):
        for output in cell.outputs:
            text = _output_text(output)
            assert "DHAM_QUICK" not in text and "quick mode" not in text.lower(), (
                f"{path.name}, code cell {i} shows a quick-mode output; execute the notebook "
                "without DHAM_QUICK=1 before committing it"
            )


def test_solution_markers_pair_up(notebook):
    path, nb = notebook
    for i, cell in enumerate(_code_cells(nb), start=1):
        lines = [line.strip() for line in cell.source.splitlines()]
        marks = [line for line in lines if line in ("### BEGIN SOLUTION", "### END SOLUTION")]
        pairs = ["### BEGIN SOLUTION", "### END SOLUTION"] * (len(marks) // 2)
        assert marks == pairs, f"{path.name}, code cell {i}: unpaired solution markers {marks}"


NBSTRIPOUT = ("--keep-output", "--keep-count", "--keep-id")  # as `make format` runs it


def test_nbstripout_would_change_nothing():
    """Clean diffs: nbstripout (keeping outputs) finds nothing volatile left to strip."""
    command = [sys.executable, "-m", "nbstripout", "--verify", *NBSTRIPOUT, *map(str, NOTEBOOKS)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, f"run `make format`:\n{done.stdout}{done.stderr}"


# --------------------------------------------------------------------------- the script


def strip(path: Path) -> None:
    """Strip widget state and volatile metadata from ``path`` with nbstripout, keeping outputs."""
    subprocess.run([sys.executable, "-m", "nbstripout", *NBSTRIPOUT, str(path)], check=True)


CELL_TIMEOUT = 1800  # seconds a cell may go without output before the run fails
OUTPUT_TYPES = ("stream", "display_data", "execute_result", "error", "clear_output")


def execute(path: Path) -> None:
    """Run the notebook top to bottom in a fresh kernel, in place, then strip it.

    A small jupyter_client loop rather than nbconvert: nbconvert's nbclient sometimes
    waited forever (kernel idle, no timeout firing) after a cell that displays a slider
    explorer. Outputs that an ``Output`` widget captures (a slider's first drawing)
    belong to the widget, whose state is not committed, so they are dropped as
    nbclient drops them.
    """
    from jupyter_client.manager import start_new_kernel

    nb = _load(path)
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(path.parent))
    try:
        count = 0
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            count += 1
            cell.outputs = _run_cell(client, cell.source, f"{path.name}, code cell {count}")
            cell.execution_count = count
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    nbformat.write(nb, path)
    strip(path)


def _run_cell(client, source: str, where: str) -> list:
    """Execute ``source``; return its outputs as nbformat nodes. Raises on an error."""
    msg_id = client.execute(source, store_history=True)
    outputs, captured, clear_pending, error = [], {}, False, None
    while True:
        msg = client.get_iopub_msg(timeout=CELL_TIMEOUT)
        kind, content = msg["msg_type"], msg["content"]
        if kind in ("comm_open", "comm_msg"):
            state = content.get("data", {}).get("state", {})
            if "msg_id" in state:  # an Output widget starts or stops capturing
                captured[content["comm_id"]] = state["msg_id"]
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if kind == "status" and content["execution_state"] == "idle":
            # Raise only now: the kernel aborts requests sent before it is idle again.
            if error is not None:
                raise RuntimeError(f"{where} failed: {error.ename}: {error.evalue}")
            break
        if kind not in OUTPUT_TYPES or msg_id in captured.values():
            continue
        if kind == "clear_output":
            if content.get("wait"):
                clear_pending = True
            else:
                outputs = []
            continue
        if clear_pending:
            outputs, clear_pending = [], False
        output = nbformat.v4.output_from_msg(msg)
        if kind == "error":
            error = output
            continue
        last = outputs[-1] if outputs else None
        if kind == "stream" and last is not None and last.get("name") == output.name:
            last.text += output.text  # one output per stream run, as Jupyter stores it
        else:
            outputs.append(output)
    return outputs


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("--strip", "--execute"):
        sys.exit("usage: test_notebooks.py --strip|--execute NOTEBOOK.ipynb ...")
    action = strip if sys.argv[1] == "--strip" else execute
    for name in sys.argv[2:]:
        action(Path(name))
        print(f"{sys.argv[1][2:]}: {name}")
