"""Where a sweep's runs train, and the record each finished run is kept in.

- a record is whole or refused: a truncated or corrupt one is reported with its path
  and its run trains again; one whose table was not exported yet counts as done;
- two processes sweeping into one table lose nothing and duplicate nothing, without a lock;
- a committed table keeps its rows exactly as they were when a run is added to it;
- without Ray the course imports, and ``--executor ray`` says which extra to install;
- a real local Ray cluster (2 CPUs) runs a tiny sweep; a worker killed mid-run is
  retried, or, with no retries left, reported, and the rerun runs only that run.
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

import pandas as pd
import pytest

from dham_lib.checkpoints import load_checkpoint
from dham_lib.study import executors, runs
from dham_lib.study.executors import read_record, write_record
from dham_lib.study.runs import grid, make_run, records_folder, run_name, sweep
from tests.test_runs import TINY, fake_train_run

ROOT = Path(__file__).resolve().parent.parent


def record_file(table: Path, run) -> Path:
    return records_folder(table) / f"{run_name(run)}.json"


# --------------------------------------------------------------------------- records


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
    assert runs.read_records(tmp_path) == []  # neither is a record


def test_a_broken_record_is_reported_and_its_run_trains_again(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runs, "train_run", fake_train_run)
    results = tmp_path / "sweep.csv"
    first, second, third = grid(["dham"], [2, 4, 8], [None], [0], **TINY)
    sweep([first], results, progress=False)
    # A sweep killed after writing a run's record but before exporting the table.
    write_record(record_file(results, second), fake_train_run(second)[1])
    assert len(pd.read_csv(results)) == 1
    # A third run's record, cut short (a disk that filled, a copy that was interrupted).
    broken = write_record(record_file(results, third), fake_train_run(third)[1])
    broken.write_text(broken.read_text()[:25])

    calls = []

    def counted(run, **kwargs):
        calls.append(run)
        return fake_train_run(run, **kwargs)

    monkeypatch.setattr(runs, "train_run", counted)
    rows = sweep([first, second, third], results, progress=False)
    out = capsys.readouterr().out
    assert f"{broken} is not a whole record" in out and "its run runs again" in out
    assert "2 of 3 runs already in sweep/" in out
    assert calls == [third]  # the record of the second run was not rerun, the broken one was
    assert rows["width"].tolist() == [2, 4, 8] and rows["device"].tolist() == ["cpu"] * 3
    # One whole record per run, the broken one replaced, no temporary file left.
    files = sorted(p.name for p in records_folder(results).iterdir())
    assert files == sorted(f"{run_name(r)}.json" for r in (first, second, third))
    assert all(read_record(records_folder(results) / name) for name in files)


def _sweep_seeds(results: str, seeds: list[int], start) -> None:
    """One writer process: wait for the start, then sweep one oracle run per seed."""
    runs.train_run = fake_train_run  # this process's own copy of the module (forked)
    start.wait()
    sweep([make_run("oracle", seed, **TINY) for seed in seeds], results, progress=False)


def test_two_sweeps_of_one_table_lose_nothing_and_duplicate_nothing(tmp_path):
    results = tmp_path / "sweep.csv"
    context = multiprocessing.get_context("fork")
    start = context.Barrier(2)
    # Seeds 10 to 14 are in both, as for two sweeps that started the same runs.
    plans = [[*range(0, 10), *range(10, 15)], [*range(10, 15), *range(20, 30)]]
    writers = [context.Process(target=_sweep_seeds, args=(str(results), p, start)) for p in plans]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
        assert writer.exitcode == 0
    seeds = sorted(runs.export_table(results)["seed"])
    assert seeds == [*range(0, 15), *range(20, 30)]  # every run once
    files = [p.name for p in records_folder(results).iterdir()]
    assert len(files) == 25 and all(name.endswith(".json") for name in files)  # no temporary


def test_a_committed_table_keeps_its_rows_when_a_run_is_added(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "train_run", fake_train_run)
    results = tmp_path / "clean.csv"
    shutil.copy(ROOT / "data" / "results" / "clean.csv", results)
    shutil.copytree(ROOT / "data" / "results" / "clean", records_folder(results))
    before = pd.read_csv(results, dtype=str, keep_default_na=False)
    assert len(before) and set(before["device"]) == {"unknown"}  # migrated from old rows
    new = make_run("oracle", 99, **TINY)
    sweep([new], results, progress=False)
    rows = pd.read_csv(results, dtype=str, keep_default_na=False)
    # Every old row, in its content; the new one beside them.
    added = rows[rows["seed"] == "99"]
    assert len(rows) == len(before) + 1 and added["device"].tolist() == ["cpu"]
    kept = rows.drop(index=added.index).reset_index(drop=True)
    pd.testing.assert_frame_equal(kept[before.columns], before)
    assert record_file(results, new).exists()


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
    every = grid(["cnn"], [0], [None], [0, 1, 2], **TINY)
    first, second, third = every

    # A worker killed mid-run with a retry left: Ray reruns the run, nothing is missing.
    retrying = executors.RayExecutor(num_cpus=1, max_retries=1)
    wait = _sweep_in_background(
        [first, second], results, checkpoints=checkpoints, progress=False, executor=retrying
    )
    _kill_worker_running(run_name(first), wait)
    rows = wait()
    assert sorted(rows["seed"]) == [0, 1]
    assert rows["device"].tolist() == ["cpu", "cpu"]  # no GPU given, none used
    assert len(list(checkpoints.glob("*.pt"))) == 2
    for path in checkpoints.glob("*.pt"):
        load_checkpoint(path)  # whole, its sha256 checks
    finished = results.read_text()

    # No retry left: the killed run is reported at the end, the finished ones are kept.
    final = executors.RayExecutor(num_cpus=1, max_retries=0)
    wait = _sweep_in_background(every, results, progress=False, executor=final)
    _kill_worker_running(run_name(third), wait)
    with pytest.raises(RuntimeError, match="1 of 1 runs failed") as error:
        wait()
    assert run_name(third) in str(error.value)
    assert results.read_text() == finished

    # The rerun runs only the killed run, and keeps the others exactly as they were.
    capsys.readouterr()
    rows = sweep(every, results, progress=False, executor=final)
    assert "2 of 3 runs already in sweep/" in capsys.readouterr().out
    assert rows["seed"].tolist() == [0, 1, 2] and results.read_text().startswith(finished)
    assert sorted(p.suffix for p in records_folder(results).iterdir()) == [".json"] * 3


@pytest.mark.slow
def test_a_ray_task_that_raises_is_reported_with_its_run(ray_cluster, tmp_path):
    results = tmp_path / "sweep.csv"
    good = make_run("cnn", **TINY)
    bad = runs.with_settings(make_run("stn", **TINY), canvas=20)  # too small: training raises
    with pytest.raises(RuntimeError, match="1 of 2 runs failed") as error:
        sweep([good, bad], results, progress=False, executor=executors.RayExecutor())
    assert f"{run_name(bad)}: ValueError" in str(error.value)
    assert pd.read_csv(results)["model"].tolist() == ["cnn"]


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
    (row,) = pd.read_csv(results).to_dict("records")
    assert row["model"] == "cnn" and row["device"] == "cpu"
