"""The student edition of the notebooks, generated with nbgrader: ``make student``.

Each exercise in a teacher notebook is a solution cell, whose answer sits between
``### BEGIN SOLUTION`` and ``### END SOLUTION``, followed by the code cell that checks
it. ``mark`` gives those cells nbgrader's metadata (an answer cell, and a graded,
read-only check cell worth one point) and writes ``dham_lib.course.colab``'s first code
cell and "Open in Colab" address into the notebook, so that a fork of the course changes
``REPOSITORY`` there and runs ``make student``; ``generate`` runs ``nbgrader
generate_assignment`` on the teacher notebooks in a scratch course folder and writes
the result to ``notebooks/student/``: answers replaced by a stub that raises
``NotImplementedError``, no outputs, and the Colab badge pointing at the student copy.

    python scripts/student_edition.py mark notebooks/*.ipynb
    python scripts/student_edition.py generate notebooks/*.ipynb --out notebooks/student
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
ASSIGNMENT = "course"  # nbgrader's assignment name for the whole series
STUDENT_NOTE = (
    "\n\n*Student edition: the exercises are yours to solve, and each check cell tells "
    "you whether your answer is right.*"
)
COLAB_ADDRESS = re.compile(r"\(https://colab\.research\.google\.com/github/[^)]*\)")


def exercises(nb) -> list[tuple[int, int]]:
    """``(solution cell index, check cell index)`` for each exercise, in order.

    The check is the first code cell after the solution cell.
    """
    pairs = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and BEGIN in cell.source:
            check = next(j for j in range(i + 1, len(nb.cells)) if nb.cells[j].cell_type == "code")
            pairs.append((i, check))
    return pairs


def grade_id(path: Path, number: int, role: str) -> str:
    """``01-ex2-answer``: unique over the course, readable in the gradebook."""
    return f"{path.name[:2]}-ex{number}-{role}"


def mark(path: Path) -> bool:
    """Give the exercise cells of the teacher notebook nbgrader metadata, and its first
    cells the course's Colab badge and install cell; True if the notebook changed."""
    from dham_lib.course.colab import COLAB_CELL, colab_url

    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    nb.cells[0].source = COLAB_ADDRESS.sub(f"({colab_url(path.name)})", nb.cells[0].source)
    next(cell for cell in nb.cells if cell.cell_type == "code").source = COLAB_CELL
    for number, (solution, check) in enumerate(exercises(nb), start=1):
        nb.cells[solution].metadata["nbgrader"] = {
            "grade": False,
            "grade_id": grade_id(path, number, "answer"),
            "locked": False,
            "schema_version": 3,
            "solution": True,
            "task": False,
        }
        nb.cells[check].metadata["nbgrader"] = {
            "grade": True,
            "grade_id": grade_id(path, number, "check"),
            "locked": True,
            "points": 1,
            "schema_version": 3,
            "solution": False,
            "task": False,
        }
    if nbformat.writes(nb) == before:
        return False
    nbformat.write(nb, path)
    return True


def nbgrader(*args: str, root: Path) -> None:
    """Run ``nbgrader`` of this Python with its ``bin`` first on PATH (alembic lives there)."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    command = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={root}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=root)
    if done.returncode != 0:
        raise RuntimeError(f"nbgrader {args[0]} failed:\n{done.stdout}{done.stderr}")


def point_badge_at_student_copy(nb, name: str) -> None:
    """The first cell's Colab badge opens the student copy (and links to no solutions)."""
    from dham_lib.course.colab import colab_url

    first = nb.cells[0]
    teacher_url, student_url = colab_url(name), colab_url(name, student=True)
    first.source = first.source.replace(f"({teacher_url})", f"({student_url})")
    first.source += STUDENT_NOTE


def relink_one_folder_deeper(nb) -> None:
    """The student copy lies one folder below the teacher's (notebooks/student/), so a
    markdown link into the repository, ``](../docs/...)``, climbs one folder more."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = cell.source.replace("](../", "](../../")


def release(notebooks: list[Path], root: Path) -> Path:
    """Lay out an nbgrader course folder in ``root`` with ``notebooks`` as its source and run
    ``nbgrader generate_assignment`` there; returns ``root``, whose gradebook an ``nbgrader
    autograde`` there then uses."""
    source = root / "source" / ASSIGNMENT
    source.mkdir(parents=True)
    for path in notebooks:
        shutil.copy(path, source / path.name)
    nbgrader("generate_assignment", ASSIGNMENT, "--force", root=root)
    return root


def student_copies(notebooks: list[Path], root: Path, out: Path) -> list[Path]:
    """Write the student edition of ``notebooks``, released in the course folder ``root``,
    into ``out``, each badge opening its own copy; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        nb = nbformat.read(root / "release" / ASSIGNMENT / path.name, as_version=4)
        point_badge_at_student_copy(nb, path.name)
        relink_one_folder_deeper(nb)
        target = out / path.name
        nbformat.write(nb, target)
        written.append(target)
    return written


def generate(notebooks: list[Path], out: Path) -> list[Path]:
    """Write the student edition of ``notebooks`` into ``out``; returns the files written."""
    with tempfile.TemporaryDirectory(prefix="dham-nbgrader-") as scratch:
        return student_copies(notebooks, release(notebooks, Path(scratch)), out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("mark", "generate"))
    parser.add_argument("notebooks", nargs="+", type=Path, help="teacher notebooks")
    parser.add_argument("--out", type=Path, default=Path("notebooks/student"))
    args = parser.parse_args(argv)
    if args.action == "mark":
        for path in args.notebooks:
            print(f"{'marked' if mark(path) else 'unchanged'}: {path}")
    else:
        for path in generate(args.notebooks, args.out):
            print(f"student edition: {path}")


if __name__ == "__main__":
    main()
