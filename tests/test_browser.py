"""The course in a real browser: the Voilà slider page (``make app``) and JupyterLab.

Chromium is driven by Playwright (pytest-playwright's ``page`` fixture, pointed at the
system browser in ``conftest.py``); without Chromium these tests skip and say how to
get it. Screenshots land in ``runs/screenshots/``.
"""

from __future__ import annotations

import re
import secrets

import nbformat
import pytest

from tests.servers import ROOT, free_port, jupyter_env, serve
from tests.test_notebooks import figure_outputs, notebook_title

pytestmark = pytest.mark.slow

APP = "app/snr_explorer.ipynb"
LAB_NOTEBOOK = "01_pmf_math.ipynb"
PAGE_TIMEOUT = 240_000  # ms: the page waits for a kernel that imports torch and loads 3 models
REDRAW_TIMEOUT = 120_000  # ms: one redraw runs 3 models on 256 canvases
FIGURE = "img[src^='data:image/png']"
ERROR_TEXT = re.compile(r"Traceback|Error:|Exception", re.IGNORECASE)


@pytest.fixture(scope="module")
def voila_url(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("voila")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    args = ["voila", APP, "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1"]
    with serve(args, url + "api", tmp / "voila.log", jupyter_env(tmp)):
        yield url


@pytest.fixture(scope="module")
def lab_url(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lab")
    # Render every cell at once (JupyterLab 4 renders cells as they scroll into view),
    # and do not ask about Jupyter's news (a pop-up over the screenshot).
    for plugin, setting in [
        ("notebook-extension/tracker", '{"windowingMode": "none"}'),
        ("apputils-extension/notification", '{"fetchNews": "false"}'),
    ]:
        path = tmp / "settings" / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(setting)
    port, token = free_port(), secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}"
    args = [
        "jupyterlab",
        "--no-browser",
        f"--port={port}",
        "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        "--ServerApp.root_dir=notebooks",
        "--allow-root",
    ]
    with serve(args, f"{url}/api/status?token={token}", tmp / "lab.log", jupyter_env(tmp)):
        yield f"{url}/lab/tree/{LAB_NOTEBOOK}?token={token}"


def _figure_src(page) -> str:
    return page.locator(FIGURE).first.get_attribute("src")


def _wait_for_new_figure(page, before: str) -> str:
    page.wait_for_function(
        """before => {
            const img = document.querySelector("img[src^='data:image/png']");
            return img !== null && img.src !== before;
        }""",
        arg=before,
        timeout=REDRAW_TIMEOUT,
    )
    return _figure_src(page)


def _numbers(page) -> str:
    """The numbers the explorer prints under its figure."""
    return page.locator(".widget-output").first.inner_text()


def test_voila_snr_slider_and_width_redraw_the_figure(page, voila_url, screenshot_dir):
    page.goto(voila_url, timeout=PAGE_TIMEOUT)
    page.locator(FIGURE).first.wait_for(timeout=PAGE_TIMEOUT)
    start, numbers = _figure_src(page), [_numbers(page)]
    assert re.search(r"width\s*= 8\n", numbers[0]), numbers[0]

    # The SNR slider's readout is editable: type a value, as a teacher would.
    readout = page.locator(".widget-readout").first
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("-9")
    page.keyboard.press("Enter")
    noisy = _wait_for_new_figure(page, start)
    numbers.append(_numbers(page))

    page.locator("select").first.select_option(label="32")
    wide = _wait_for_new_figure(page, noisy)
    numbers.append(_numbers(page))
    assert re.search(r"width\s*= 32\n", numbers[2]), numbers[2]
    # A new figure and new accuracies at each step: the models really ran again.
    assert len({start, noisy, wide}) == 3 and len(set(numbers)) == 3, numbers

    body = page.locator("body").inner_text()
    assert not ERROR_TEXT.search(body), f"error text on the page: {body[:2000]}"
    page.screenshot(path=screenshot_dir / "voila_snr_explorer.png", full_page=True)


def test_jupyterlab_renders_a_notebook_with_its_outputs(page, lab_url, screenshot_dir):
    nb = nbformat.read(ROOT / "notebooks" / LAB_NOTEBOOK, as_version=4)
    title = notebook_title(nb)

    page.goto(lab_url, timeout=PAGE_TIMEOUT)
    heading = page.locator(".jp-RenderedMarkdown h1").first
    heading.wait_for(timeout=PAGE_TIMEOUT)
    assert title in heading.inner_text()
    page.locator(".jp-OutputArea-output img").first.wait_for(timeout=PAGE_TIMEOUT)

    # Every committed figure is drawn and decoded (a broken image has naturalWidth 0).
    committed = len(figure_outputs(nb))
    widths = page.eval_on_selector_all(
        ".jp-OutputArea-output img", "imgs => imgs.map(img => img.naturalWidth)"
    )
    assert len(widths) == committed and all(w > 0 for w in widths), (committed, widths)
    code = page.locator(".jp-CodeCell .jp-InputArea-editor").count()
    assert code == sum(cell.cell_type == "code" for cell in nb.cells)
    errors = page.locator("[data-mime-type='application/vnd.jupyter.error']").count()
    assert errors == 0
    page.screenshot(path=screenshot_dir / "jupyterlab_01_pmf_math.png")
