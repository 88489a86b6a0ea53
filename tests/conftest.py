"""Shared fixtures: the system Chromium for the browser tests (pytest-playwright)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_HOWTO = (
    "Chromium not found, so the browser tests are skipped. Install it with "
    "`sudo apt-get install chromium` (Debian; `.ci/run` does this), or point "
    "DHAM_CHROMIUM at a Chromium or Chrome binary."
)
# Headless as root in a container, on a machine whose network is closed: without the
# background-networking flags Chromium keeps dialling Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """``$DHAM_CHROMIUM`` if set, else the first Chromium on ``PATH``, else None."""
    if os.environ.get("DHAM_CHROMIUM"):
        return os.environ["DHAM_CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch options, pointed at the system Chromium.

    Playwright's own browser download is blocked here, and a system browser is what
    a teacher's machine has anyway.
    """
    path = chromium_path()
    if path is None:
        pytest.skip(CHROMIUM_HOWTO)
    return {**browser_type_launch_args, "executable_path": path, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """Where the browser tests save screenshots to look at: ``runs/screenshots``."""
    folder = Path(os.environ.get("DHAM_SCREENSHOT_DIR", ROOT / "runs" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
