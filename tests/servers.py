"""Jupyter servers on a loopback port, for the browser tests (``test_browser.py``)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 180  # seconds: a cold start imports torch, which is slow on a loaded machine


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return  # it answered, if only to refuse: the server is up
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise TimeoutError(f"no answer from {url} in {START_TIMEOUT} s:\n{log.read_text()}")


@contextlib.contextmanager
def serve(args: list[str], probe_url: str, log: Path, extra_env: dict | None = None):
    """Run ``python -m <args>`` until the block ends, once ``probe_url`` answers.

    It runs in the repository root with ``extra_env`` added to the environment; its
    output goes to ``log``, which the error shows if it never comes up.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    env.pop("DHAM_QUICK", None)  # the pages show the committed models, not quick ones
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_until_up(probe_url, process, log)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def jupyter_env(tmp: Path) -> dict[str, str]:
    """Environment keeping Jupyter's config, runtime and workspace files inside ``tmp``."""
    return {
        "JUPYTER_CONFIG_DIR": str(tmp / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
    }
