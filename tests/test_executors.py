"""Where a sweep's cells run, and the file each finished cell is kept in until the CSV has it.

- a cell file is whole or refused: a truncated or corrupt one is reported with its path
  and its cell runs again; one left by a sweep killed before merging is merged, not rerun;
- two processes writing cell files and merging into one CSV lose nothing, twice nothing;
- the rows of a committed CSV stay exactly as they were, and read the new device column
  as empty;
- without Ray the course imports, and ``--executor ray`` says which extra to install;
- a real local Ray cluster (2 CPUs) runs a tiny sweep; a worker killed mid-cell is
  retried, or, with no retries left, reported, and the rerun runs only that cell.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dham_lib.checkpoints import load_checkpoint
from dham_lib.study import executors, experiments
from dham_lib.study.executors import read_record, read_records, write_record
from dham_lib.study.experiments import (
    CELL_COLUMNS,
    Cell,
    cells_folder,
    checkpoint_name,
    grid,
    read_rows,
    sweep,
)
from tests.test_experiments import TINY, fake_train_cell

ROOT = Path(__file__).resolve().parent.parent


def key(row: dict) -> tuple[str, ...]:
    return tuple(row[name] for name in CELL_COLUMNS)


def cell_file(results: Path, cell: Cell) -> Path:
    return cells_folder(results) / Path(checkpoint_name(cell)).with_suffix(".json").name


# --------------------------------------------------------------------------- cell files


def test_a_record_is_whole_or_refused_by_name(tmp_path):
    path = write_record(tmp_path / "a.json", {"x": "1"})
    assert read_record(path) == {"x": "1"}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary file left
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match="a.json is not a whole record"):
        read_record(path)
    path.write_text(text.replace('"x": "1"', '"x": "2"'))
    with pytest.raises(ValueError, match="a.json fails its checksum"):
        read_record(path)
    (tmp_path / ".b.json.123.tmp").write_text("{")  # a write killed before its rename
    good, bad = read_records(tmp_path)
    assert good == [] and [p.name for p, _ in bad] == ["a.json"]


def test_a_broken_cell_file_is_reported_and_its_cell_runs_again(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(experiments, "train_cell", fake_train_cell)
    results = tmp_path / "sweep.csv"
    first, second, third = grid(["dham"], [2, 4, 8], [None], [0], **TINY)
    sweep([first], results, progress=False)
    # A sweep killed after writing a cell's file but before merging it: the file stays.
    monkeypatch.setattr(experiments, "_merge_cells", lambda *a, **k: [])
    _, _, row = fake_train_cell(second)
    experiments._save_cell_row(results, second, {**row, "device": "cpu"})
    monkeypatch.undo()
    assert cell_file(results, second).exists() and len(read_rows(results)) == 1
    # A third cell's file, cut short (a disk that filled, a copy that was interrupted).
    broken = write_record(cell_file(results, third), {"cell": {}, "results": {}})
    broken.write_text(broken.read_text()[:25])

    calls = []

    def counted(cell, **kwargs):
        calls.append(cell)
        return fake_train_cell(cell, **kwargs)

    monkeypatch.setattr(experiments, "train_cell", counted)
    rows = sweep([first, second, third], results, progress=False)
    out = capsys.readouterr().out
    assert f"{broken} is not a whole record" in out and "its cell runs again" in out
    assert "2 of 3 cells already in sweep.csv" in out
    assert calls == [third]  # the merged file was not rerun, the broken one was
    assert [key(r) for r in rows] == [first.key(), second.key(), third.key()]
    assert [r["device"] for r in rows] == ["cpu"] * 3
    assert list(cells_folder(results).iterdir()) == []  # all merged, the broken one replaced


def _write_cells(results: str, seeds: list[int], start) -> None:
    """One writer process: wait for the start, then store a finished row per seed."""
    start.wait()
    for seed in seeds:
        cell = Cell(model="oracle", seed=seed, **TINY)
        _, _, row = fake_train_cell(cell)
        experiments._save_cell_row(Path(results), cell, {**row, "device": f"pid{os.getpid()}"})


def test_two_writers_of_one_csv_lose_nothing_and_duplicate_nothing(tmp_path):
    results = tmp_path / "sweep.csv"
    context = multiprocessing.get_context("fork")
    start = context.Barrier(2)
    # Seeds 10 to 14 are written by both, as by two sweeps that started the same cell.
    plans = [[*range(0, 10), *range(10, 15)], [*range(10, 15), *range(20, 30)]]
    writers = [context.Process(target=_write_cells, args=(str(results), p, start)) for p in plans]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
        assert writer.exitcode == 0
    rows = read_rows(results)
    seeds = sorted(int(row["seed"]) for row in rows)
    assert seeds == [*range(0, 15), *range(20, 30)]  # every cell once
    assert list(cells_folder(results).iterdir()) == []  # every file merged, no temporary left
    assert not (tmp_path / "sweep.csv.partial").exists()


def test_a_committed_csv_keeps_its_rows_and_reads_no_device(tmp_path, monkeypatch):
    monkeypatch.setattr(experiments, "train_cell", fake_train_cell)
    results = tmp_path / "clean.csv"
    shutil.copy(ROOT / "data" / "results" / "clean.csv", results)
    before = read_rows(results)
    assert before and all(row["device"] == "" for row in before)
    assert not cells_folder(results).exists()
    new = Cell(model="oracle", seed=99, **TINY)
    rows = sweep([new], results, progress=False)
    # Every old row, in its order and content; the columns the file predates are empty.
    for old, row in zip(before, rows, strict=False):
        assert {name: row[name] for name in old} == old
        assert all(row[name] == "" for name in set(row) - set(old))
    assert key(rows[-1]) == new.key() and rows[-1]["device"] == "cpu"


def test_without_ray_the_course_imports_and_the_ray_executor_names_the_extra(tmp_path):
    code = (
        "import sys\n"
        "sys.modules['ray'] = None  # as if it were not installed\n"
        "import dham_lib, dham_lib.study.cli, dham_lib.study.results\n"
        "from dham_lib.study.cli import main\n"
        f"code = main(['sweep', '--executor', 'ray', '--out', {str(tmp_path / 'r.csv')!r}])\n"
        "print('EXIT', code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "EXIT 2" in done.stdout, done.stderr
    assert "pip install -e '.[cluster]'" in done.stderr and "'cluster' extra" in done.stderr
    assert not (tmp_path / "r.csv").exists()


def test_make_executor_checks_its_arguments():
    assert isinstance(executors.make_executor("local"), executors.InProcess)
    with pytest.raises(ValueError, match="executor"):
        executors.make_executor("dask")
    with pytest.raises(TypeError, match="num_cpu"):  # misspelt: refused even where unused
        executors.make_executor("local", num_cpu=2)
    pytest.importorskip("ray")
    with pytest.raises(ValueError, match="num_cpus"):
        executors.make_executor("ray", num_cpus=0)
    with pytest.raises(ValueError, match="max_retries"):
        executors.make_executor("ray", max_retries=-1)


def test_the_sweep_command_runs_locally_unless_told_and_checks_the_ray_options(capsys):
    from dham_lib.study.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["sweep", "--out", "x.csv"])
    assert (args.executor, args.address, args.num_cpus, args.num_gpus) == ("local", None, 1, 0)
    args = parser.parse_args(["sweep", "--out", "x.csv", "--executor", "ray", "--num-gpus", "0.5"])
    assert args.executor == "ray" and args.num_gpus == 0.5 and args.max_retries == 3
    for bad in (["--num-cpus", "0"], ["--num-gpus", "-1"], ["--max-retries", "-1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["sweep", "--out", "x.csv", *bad])
        assert bad[0] in capsys.readouterr().err


# --------------------------------------------------------------------------- a real Ray cluster


@pytest.fixture(scope="module")
def ray_cluster():
    """A real local Ray cluster of 2 CPUs, offline, shut down after this module's tests."""
    ray = pytest.importorskip("ray", reason="the 'cluster' extra (pip install -e '.[cluster]')")
    saved = {name: os.environ.get(name) for name in ("RAY_USAGE_STATS_ENABLED", "OMP_NUM_THREADS")}
    os.environ.update(RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1")  # no network, no threads
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _descends_from_us(pid: int) -> bool:
    """True if process ``pid`` was started by this test process (the cluster it started)."""
    while pid > 1:
        if pid == os.getpid():
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the parent's pid
    return False


def _kill_worker_running(name: str, wait, timeout: float = 180) -> int:
    """SIGKILL the Ray worker that runs the task ``name`` (its process title is
    ``ray::<name>`` while it does), once it has started; returns its pid. Stops early
    with the sweep's own error if the sweep (``wait``) ended before."""
    deadline = time.monotonic() + timeout
    title = f"ray::{name}".encode()
    while time.monotonic() < deadline:
        if not wait.running():
            wait()  # raises the sweep's error, if it had one
            raise AssertionError(f"the sweep ended before a worker ran {name}")
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                command = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if command.startswith(title) and _descends_from_us(int(entry)):
                os.kill(int(entry), signal.SIGKILL)
                return int(entry)
        time.sleep(0.02)
    raise AssertionError(f"no worker ran {name} within {timeout} s")


def _sweep_in_background(*args, **kwargs):
    """Run ``sweep`` in a thread; returns a function that waits for it and returns
    its rows or raises its error."""
    outcome = {}

    def target():
        try:
            outcome["rows"] = sweep(*args, **kwargs)
        except Exception as error:  # handed to the waiting test
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()

    def wait():
        thread.join(300)
        assert not thread.is_alive(), "the sweep did not end in 300 s"
        if "error" in outcome:
            raise outcome["error"]
        return outcome["rows"]

    wait.running = thread.is_alive
    return wait


@pytest.mark.slow
def test_a_ray_sweep_survives_a_killed_worker_and_resumes(ray_cluster, tmp_path, capsys):
    results, checkpoints = tmp_path / "sweep.csv", tmp_path / "checkpoints"
    cells = grid(["cnn"], [0], [None], [0, 1, 2], **TINY)
    first, second, third = cells

    # A worker killed mid-cell with a retry left: Ray reruns the cell, nothing is missing.
    retrying = executors.RayExecutor(num_cpus=1, max_retries=1)
    wait = _sweep_in_background(
        [first, second], results, checkpoints=checkpoints, progress=False, executor=retrying
    )
    _kill_worker_running(Path(checkpoint_name(first)).stem, wait)
    rows = wait()
    assert sorted(key(r) for r in rows) == sorted([first.key(), second.key()])
    assert [r["device"] for r in rows] == ["cpu", "cpu"]  # no GPU given, none used
    assert len(list(checkpoints.glob("*.pt"))) == 2
    for path in checkpoints.glob("*.pt"):
        load_checkpoint(path)  # whole, its sha256 checks
    finished = read_rows(results)

    # No retry left: the killed cell is reported at the end, the finished ones are kept.
    final = executors.RayExecutor(num_cpus=1, max_retries=0)
    wait = _sweep_in_background(cells, results, progress=False, executor=final)
    _kill_worker_running(Path(checkpoint_name(third)).stem, wait)
    with pytest.raises(RuntimeError, match="1 of 1 cells failed") as error:
        wait()
    assert "cnn width=0 snr=clean seed=2" in str(error.value)
    assert read_rows(results) == finished

    # The rerun runs only the killed cell, and keeps the others exactly as they were.
    capsys.readouterr()
    rows = sweep(cells, results, progress=False, executor=final)
    assert "2 of 3 cells already in sweep.csv" in capsys.readouterr().out
    assert rows[:2] == finished and key(rows[2]) == third.key()
    assert list(cells_folder(results).iterdir()) == []


@pytest.mark.slow
def test_a_ray_task_that_raises_is_reported_with_its_cell(ray_cluster, tmp_path):
    results = tmp_path / "sweep.csv"
    good = Cell(model="cnn", **TINY)
    bad = Cell(model="transformer", **TINY)  # no such model: build_model raises
    with pytest.raises(RuntimeError, match="1 of 2 cells failed") as error:
        sweep([good, bad], results, progress=False, executor=executors.RayExecutor())
    assert "transformer width=0 snr=clean seed=0: ValueError" in str(error.value)
    assert [key(r) for r in read_rows(results)] == [good.key()]


@pytest.mark.slow
def test_the_command_line_runs_a_sweep_on_a_ray_cluster_of_its_own(tmp_path):
    pytest.importorskip("ray", reason="the 'cluster' extra (pip install -e '.[cluster]')")
    results = tmp_path / "sweep.csv"
    command = [
        sys.executable, "-m", "dham_lib", "sweep", "--models", "cnn", "--snr-db", "clean",
        "--seeds", "0", "--epochs", "1", "--train-size", "64", "--test-size", "32",
        "--canvas", "64", "--out", str(results), "--no-progress",
        "--executor", "ray", "--num-cpus", "1", "--num-gpus", "0", "--max-retries", "1",
    ]  # fmt: skip
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)  # a cluster of its own, started and stopped by the sweep
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "on cpu" in done.stdout
    (row,) = read_rows(results)
    assert row["model"] == "cnn" and row["device"] == "cpu"
