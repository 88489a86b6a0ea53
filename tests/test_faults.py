"""Faults a user meets: each is detected, reported in one clear message, and loses no
finished result.

- a download that arrives truncated, or whose connection drops mid-file;
- a read-only cache, checkpoint or results folder (real permissions: when the tests
  run as root, who may write anywhere, the code runs as the unprivileged user
  ``nobody``);
- a sweep killed with SIGKILL in the middle of a run, then resumed.

A corrupt checkpoint and one of another configuration are tested beside their code,
in ``test_checkpoints.py`` (truncated, flipped byte, pickled code, wrong config) and
``test_pretrained.py`` (reported, retrained, the old file kept as ``<name>.pt.old``).
"""

from __future__ import annotations

import csv
import functools
import http.server
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from torchvision.datasets import MNIST

from dham_lib.checkpoints import load_checkpoint
from dham_lib.data import load_mnist
from tests.test_data import QuietHandler, assert_same, closed_port_url, fake_mnist  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534


# --------------------------------------------------------------------------- truncated downloads


def _truncating_handler(honest_length: bool):
    """Serves the first half of each file: with that half's length (the file is simply
    short), or with the whole file's length and then a dropped connection."""

    class Truncating(QuietHandler):
        def do_GET(self):
            data = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
            half = data[: len(data) // 2]
            self.send_response(200)
            self.send_header("Content-Length", str(len(half) if honest_length else len(data)))
            self.end_headers()
            self.wfile.write(half)
            self.close_connection = True

    return Truncating


@pytest.fixture
def serve_mirror(fake_mnist, monkeypatch):  # noqa: F811 (the fixture imported above)
    """Start a loopback mirror with a given handler class; torchvision's only mirror."""
    folder, _, resources = fake_mnist
    servers = []

    def start(handler_class):
        handler = functools.partial(handler_class, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        monkeypatch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{server.server_port}/"])
        monkeypatch.setattr(MNIST, "resources", resources)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("honest_length", [True, False], ids=["short-file", "dropped-connection"])
def test_a_truncated_download_is_refused_then_replaced(
    fake_mnist,  # noqa: F811
    serve_mirror,
    tmp_path,
    capsys,
    honest_length,
):
    serve_mirror(_truncating_handler(honest_length))
    with pytest.raises(RuntimeError, match="Could not download the full MNIST") as error:
        load_mnist("test", source="full", cache_dir=tmp_path, timeout=5.0)
    assert "\n" not in str(error.value) and "check the network" in str(error.value)

    serve_mirror(QuietHandler)  # the network is back
    assert_same(load_mnist("test", source="full", cache_dir=tmp_path), fake_mnist[1]["test"])
    raw = tmp_path / "MNIST" / "raw"
    for name, _ in fake_mnist[2]:
        archive = raw / name
        if archive.exists():  # every archive on disk is the whole file, none a truncated one
            assert archive.read_bytes() == (fake_mnist[0] / name).read_bytes()


# --------------------------------------------------------------------------- read-only folders


@pytest.fixture
def shared_tmp():
    """A folder the unprivileged user can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="dham-faults-"))
    folder.chmod(0o755)
    home = folder / "home"
    home.mkdir()
    home.chmod(0o777)  # torch and matplotlib write caches under HOME
    yield folder
    for path in folder.rglob("*"):
        if path.is_dir():
            path.chmod(0o755)
    shutil.rmtree(folder)


def _read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)


@functools.cache
def _unprivileged_prefix() -> tuple[str, ...]:
    """``setpriv`` to the user nobody when running as root (else nothing), once checked
    that nobody can run this Python and import the course; skips the test otherwise."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("root cannot be stopped by permissions, and setpriv is missing")
    prefix = (setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", "import dham_lib"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        pytest.skip(f"user nobody cannot run {sys.executable} with the course ({last})")
    return prefix


def _run_unprivileged(code: str, shared: Path, **env: str) -> subprocess.CompletedProcess:
    """Run ``python -c code`` as a user without write access to read-only folders."""
    command = [*_unprivileged_prefix(), sys.executable, "-c", code]
    environment = {
        **os.environ,
        "HOME": str(shared / "home"),
        "MPLCONFIGDIR": str(shared / "home"),
        "MPLBACKEND": "Agg",
        **env,
    }
    environment.pop("DHAM_QUICK", None)
    return subprocess.run(
        command, capture_output=True, text=True, env=environment, cwd=ROOT, timeout=600
    )


def _fake_mirror_code(fake) -> str:
    """Code that points torchvision at the fake archives' md5s and a dead mirror."""
    return (
        "from torchvision.datasets import MNIST\n"
        f"MNIST.resources = {fake[2]!r}\n"
        f"MNIST.mirrors = [{closed_port_url()!r}]\n"
        "from dham_lib.data import load_mnist\n"
    )


def test_an_empty_read_only_cache_is_reported_and_auto_falls_back(shared_tmp, fake_mnist):  # noqa: F811
    cache = shared_tmp / "cache"
    cache.mkdir()
    _read_only(cache)
    code = _fake_mirror_code(fake_mnist) + (
        "try:\n"
        f"    load_mnist('test', source='full', cache_dir={str(cache)!r})\n"
        "except RuntimeError as error:\n"
        "    print('ERROR', error)\n"
        f"images, labels = load_mnist('test', source='auto', cache_dir={str(cache)!r})\n"
        "print('AUTO', len(labels))\n"
    )
    done = _run_unprivileged(code, shared_tmp)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    error = next(line for line in lines if line.startswith("ERROR"))
    assert "the cache folder is not writable" in error and str(cache) in error
    assert "DHAM_CACHE_DIR" in error
    assert "falling back to the bundled" in done.stdout and "AUTO 1000" in lines
    assert list(cache.iterdir()) == []


def test_a_complete_read_only_cache_still_loads(shared_tmp, fake_mnist, monkeypatch):  # noqa: F811
    cache = shared_tmp / "cache"
    raw = cache / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, _ in fake_mnist[2]:
        shutil.copy(fake_mnist[0] / name, raw / name)
    monkeypatch.setattr(MNIST, "mirrors", [closed_port_url()])
    monkeypatch.setattr(MNIST, "resources", fake_mnist[2])
    load_mnist("test", source="full", cache_dir=cache, verbose=False)  # extracts, as root
    _read_only(cache)
    code = _fake_mirror_code(fake_mnist) + (
        f"images, labels = load_mnist('test', source='full', cache_dir={str(cache)!r})\n"
        "print('SUM', int(images.sum()), int(labels.sum()))\n"
    )
    done = _run_unprivileged(code, shared_tmp)
    assert done.returncode == 0, done.stderr
    images, labels = fake_mnist[1]["test"]
    assert f"SUM {int(images.astype(np.int64).sum())} {int(labels.sum())}" in done.stdout


TINY_RUN = "make_run('cnn', epochs=1, train_size=64, test_size=32)"


def test_a_read_only_checkpoint_folder_trains_unsaved_or_loads(shared_tmp):
    folder = shared_tmp / "checkpoints"
    folder.mkdir()
    code = (
        "from dham_lib.study.runs import make_run\n"
        "from dham_lib.study.pretrained import train_or_load\n"
        f"model, history, row = train_or_load('demo', {TINY_RUN}, progress=False)\n"
        "print('ACC', row['test_acc'])\n"
    )
    _read_only(folder)
    done = _run_unprivileged(code, shared_tmp, DHAM_CHECKPOINT_DIR=str(folder))
    assert done.returncode == 0, done.stderr
    assert f"the checkpoint folder {folder} is not writable" in done.stdout
    assert "it will not be saved" in done.stdout and "ACC" in done.stdout
    assert list(folder.iterdir()) == []

    # A folder of committed checkpoints that is read-only (a class server) still loads.
    folder.chmod(0o755)
    saved = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "DHAM_CHECKPOINT_DIR": str(folder), "DHAM_QUICK": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "saved it as demo.pt" in saved.stdout
    _read_only(folder)
    done = _run_unprivileged(code, shared_tmp, DHAM_CHECKPOINT_DIR=str(folder))
    assert done.returncode == 0, done.stderr
    assert "Loaded the committed checkpoint demo.pt" in done.stdout


@pytest.mark.parametrize(
    ("read_only", "refused"),
    [
        ("results", "results/sweep cannot be created"),
        ("checkpoints", "checkpoints is not writable"),
    ],
)
def test_a_sweep_into_a_read_only_folder_stops_before_training(shared_tmp, read_only, refused):
    for name in ("results", "checkpoints"):
        (shared_tmp / name).mkdir()
        (shared_tmp / name).chmod(0o777)  # writable by anyone, the unprivileged user included
    _read_only(shared_tmp / read_only)
    code = (
        "from dham_lib.study.runs import grid, sweep\n"
        "runs = grid(['cnn'], [16], [None], [0], epochs=1, train_size=64, test_size=32)\n"
        "try:\n"
        f"    sweep(runs, {str(shared_tmp / 'results' / 'sweep.csv')!r},\n"
        f"          checkpoints={str(shared_tmp / 'checkpoints')!r}, progress=False)\n"
        "except PermissionError as error:\n"
        "    print('ERROR', error)\n"
    )
    done = _run_unprivileged(code, shared_tmp)
    assert done.returncode == 0, done.stderr
    assert f"{shared_tmp}/{refused}" in done.stdout
    assert "sweep:" not in done.stdout  # it stopped before looking for work to do
    for name in ("results", "checkpoints"):
        assert [p for p in (shared_tmp / name).rglob("*") if p.is_file()] == []


# --------------------------------------------------------------------------- a killed sweep


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_a_sweep_killed_mid_run_resumes_and_keeps_every_finished_row(tmp_path):
    results, checkpoints = tmp_path / "sweep.csv", tmp_path / "checkpoints"
    command = [
        sys.executable, "-m", "dham_lib", "sweep", "--models", "cnn", "--snr-db", "clean",
        "--seeds", "0", "1", "2", "--epochs", "1", "--train-size", "512", "--test-size", "64",
        "--out", str(results), "--checkpoints", str(checkpoints), "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not _rows(results):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no row in 300 s"
        time.sleep(0.05)
    time.sleep(1.0)  # well into the second run, which takes seconds
    assert len(_rows(results)) == 1, "the second run finished before the kill"
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()

    first = _rows(results)
    assert len(first) == 1 and first[0]["seed"] == "0"
    saved = sorted(checkpoints.glob("*.pt"))
    assert len(saved) == 1
    load_checkpoint(saved[0])  # the finished run's model is whole (its sha256 checks)

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert "1 of 3 runs already in sweep/" in resumed.stdout
    rows = _rows(results)
    assert [row["seed"] for row in rows] == ["0", "1", "2"]
    assert rows[0] == first[0]  # the finished row was kept as it was, not rerun
    assert len(list(checkpoints.glob("*.pt"))) == 3
