"""Sphinx configuration of the course website: ``make site`` builds it into build/site.

The source folder is the repository root (``sphinx-build -c docs . build/site``) so the
committed notebooks are read where they are, outputs and all, and never executed.
"""

import dham_lib
from dham_lib.course.colab import BRANCH, REPOSITORY

project = "DHAM course"
author = "The DHAM course authors"
copyright = "2026, the DHAM course authors"  # noqa: A001 (Sphinx's name)
release = dham_lib.__version__

root_doc = "docs/index"
include_patterns = ["docs/*.md", "notebooks/[0-9][0-9]_*.ipynb"]
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]

# The notebooks' outputs are the figures: show them as committed.
nb_execution_mode = "off"
# Slider widgets have no state in the committed notebooks: show their text fallback.
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"

html_theme = "sphinx_book_theme"
html_title = "DHAM: differentiable hard attention"
html_theme_options = {
    "repository_url": REPOSITORY,
    "repository_branch": BRANCH,
    "path_to_docs": "",
    "use_repository_button": True,
    # A "launch on Colab" button on each notebook page, opening notebooks/<name>.ipynb.
    "launch_buttons": {"colab_url": "https://colab.research.google.com"},
}
# The site's root index.html forwards to the landing page (docs/index.html).
html_extra_path = ["_extra"]
