"""The course on Colab: the first code cell of every notebook and the "Open in Colab" links.

A fork changes ``REPOSITORY`` (and ``BRANCH``) and runs ``make student``, which writes every
notebook's first cell and badges from here. The cell names the address when the clone fails,
rather than let a ``ModuleNotFoundError`` surface two cells later.
"""

from __future__ import annotations

REPOSITORY = "https://github.com/dham-course/dham-course"
BRANCH = "main"

# The first code cell of every notebook, word for word (tests/test_notebooks.py checks it);
# DHAM_FORCE_COLAB=1 and DHAM_REPO_URL (another clone) try it offline.
COLAB_CELL = f"""\
# On Colab only: fetch the course and install it beside Colab's own PyTorch (never reinstalled).
import os
import sys

IN_COLAB = "google.colab" in sys.modules or os.environ.get("DHAM_FORCE_COLAB") == "1"
if IN_COLAB and not os.path.isdir("../dham_lib"):  # not yet inside the course's notebooks/
    REPO_URL = os.environ.get("DHAM_REPO_URL", "{REPOSITORY}")
    if not os.path.isdir("dham-course/dham_lib"):  # none yet, or a clone that broke off
        !rm -rf dham-course && git clone --quiet --depth 1 {{REPO_URL}} dham-course
    if not os.path.isdir("dham-course/dham_lib"):
        raise RuntimeError(
            f"Could not fetch the course from {{REPO_URL}} (git clone failed: see above). "
            "Check that this runtime reaches the internet, and that the address is right "
            "if you use a fork (REPOSITORY in dham_lib/course/colab.py), then run this cell again."
        )
    # Colab's torch already satisfies torch>=2.2, so pip leaves it as it is.
    %pip install --quiet --editable dham-course
    sys.path.insert(0, os.path.abspath("dham-course"))  # importable without a restart
    %cd dham-course/notebooks"""


def colab_url(notebook: str, student: bool = False) -> str:
    """The "Open in Colab" address of ``notebooks/<notebook>`` on the course's main branch,
    or of its student edition ``notebooks/student/<notebook>``."""
    if not isinstance(notebook, str) or not notebook.endswith(".ipynb") or "/" in notebook:
        raise ValueError(f"notebook must be a file name like '01_pmf_math.ipynb', got {notebook!r}")
    repo = REPOSITORY.removeprefix("https://github.com/")
    folder = "notebooks/student" if student else "notebooks"
    return f"https://colab.research.google.com/github/{repo}/blob/{BRANCH}/{folder}/{notebook}"


def colab_badge(notebook: str, student: bool = False) -> str:
    """The Markdown of the "Open in Colab" badge for the notebook (or its student edition)."""
    badge = "https://colab.research.google.com/assets/colab-badge.svg"
    return f"[![Open In Colab]({badge})]({colab_url(notebook, student)})"
