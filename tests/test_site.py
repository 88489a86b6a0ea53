"""The course website (``make site``): built with ``-W`` from the committed notebooks,
then every notebook page opened in Chromium, as in ``test_browser.py``.

Each page must show its notebook's title and code, every figure the notebook holds
(decoded, not broken), and a "launch on Colab" link to that notebook. Screenshots go
to ``runs/screenshots/site_*.png``.
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import sys
import threading

import nbformat
import pytest

from dham_lib.course.colab import colab_url
from tests.servers import ROOT
from tests.test_data import QuietHandler
from tests.test_notebooks import NOTEBOOKS, figure_outputs, notebook_title

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site_url(tmp_path_factory):
    """Build the site as ``make site`` does, into a scratch folder, and serve it."""
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-c", "docs", ".", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, f"the site build warned or failed:\n{build.stderr}"
    handler = functools.partial(QuietHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_the_landing_page_is_the_readme_and_links_every_notebook(page, site_url, screenshot_dir):
    page.goto(f"{site_url}/index.html")  # forwards to docs/index.html
    page.wait_for_url("**/docs/index.html")
    assert "DHAM course" in page.locator("h1").first.inner_text()
    links = page.eval_on_selector_all("nav a", "anchors => anchors.map(a => a.href)")
    for path in NOTEBOOKS:
        assert any(link.endswith(f"notebooks/{path.stem}.html") for link in links), path.name
    page.screenshot(path=screenshot_dir / "site_index.png")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_each_notebook_page_has_its_title_code_figures_and_colab_button(
    page, site_url, screenshot_dir, path
):
    nb = nbformat.read(path, as_version=4)
    page.goto(f"{site_url}/notebooks/{path.stem}.html")
    assert notebook_title(nb) in page.locator("h1").first.inner_text()
    code_cells = sum(cell.cell_type == "code" for cell in nb.cells)
    assert page.locator("div.cell_input").count() == code_cells
    images = page.locator("div.cell_output img")
    images.last.scroll_into_view_if_needed()
    page.wait_for_load_state("load")
    widths = images.evaluate_all("imgs => imgs.map(img => img.complete ? img.naturalWidth : 0)")
    assert len(widths) == len(figure_outputs(nb)) and all(w > 0 for w in widths), widths
    assert page.locator(f"a[href='{colab_url(path.name)}']").count() >= 1
    page.screenshot(path=screenshot_dir / f"site_{path.stem}.png")


def test_the_api_reference_documents_the_library(page, site_url):
    page.goto(f"{site_url}/docs/api.html")
    for name in ("dham_lib.pmf.spatial_softmax", "dham_lib.dham.DHAM", "dham_lib.data.load_mnist"):
        assert page.locator(f"[id='{name}']").count() == 1, name


def test_the_conventions_page_is_on_the_site_and_the_project_cites_nothing_outside_it(
    page, site_url
):
    page.goto(f"{site_url}/docs/conventions.html")
    assert any("Coordinates" in text for text in page.locator("h2").all_inner_texts())
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    outside = "DESIGN" + ".md"  # spelt in two parts so that this file does not cite it
    citing = [
        name
        for name in tracked
        if name.endswith((".py", ".md", ".ipynb")) and outside in (ROOT / name).read_text()
    ]
    assert citing == [], f"cite docs/conventions.md, not a file outside the project: {citing}"
