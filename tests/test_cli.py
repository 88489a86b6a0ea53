"""The command line: --help everywhere, and a tiny end-to-end training run."""

import json
import subprocess
import sys

import pytest

from dham_lib.checkpoints import load_checkpoint
from dham_lib.models import build_model
from dham_lib.study import runs
from dham_lib.study.cli import AXES, build_parser, given_settings, main


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["train", "--help"],
        ["sweep", "--help"],
        ["report", "--help"],
        ["export", "--help"],
    ],
)
def test_help(argv):
    result = subprocess.run(
        [sys.executable, "-m", "dham_lib", *argv], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "usage: python -m dham_lib" in result.stdout


def test_every_sub_command_has_help():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name, sub in commands.items():
        assert sub.format_help().strip(), f"{name} has no help"


def test_train_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--model",
            "dham",
            "--width",
            "4",
            "--stride",
            "2",
            "--snr-db",
            "6",
            "--epochs",
            "1",
            "--train-size",
            "128",
            "--test-size",
            "64",
            "--batch-size",
            "32",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert "test accuracy" in capsys.readouterr().out
    record = json.loads((out / "record.json").read_text())
    assert record["run"]["settings"]["width"] == 4
    assert record["run"]["data"]["snr_db"] == 6.0
    assert len(record["history"]["test_acc"]) == 1
    assert 0 <= record["scores"]["acc_canvas200"] <= 1
    assert (out / "learning_curves.png").stat().st_size > 0
    assert (out / "glimpses.png").stat().st_size > 0
    config = {"name": "dham", **record["run"]["settings"]}
    model, meta = load_checkpoint(out / "checkpoint.pt", expected_config=config)
    assert meta["metrics"]["test_acc"] == pytest.approx(record["scores"]["test_acc"])


def test_bad_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--width", "0", "--out", "x"])
    assert info.value.code == 2
    assert "--width" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["cnn", "stn", "oracle"])
def test_train_every_baseline(tmp_path, model):
    out = tmp_path / model
    argv = ["train", "--model", model, "--epochs", "1", "--train-size", "64", "--test-size", "32"]
    assert main([*argv, "--canvas", "64", "--no-progress", "--out", str(out)]) == 0
    assert (out / "learning_curves.png").exists()
    assert (out / "glimpses.png").exists() == (model != "cnn")


def test_report_writes_tables_verdict_and_figures(tmp_path, monkeypatch, capsys):
    from tests.test_runs import fake_train_run

    monkeypatch.setattr(runs, "train_run", fake_train_run)
    swept = runs.grid(["dham", "oracle"], [2, 4], [None, 6.0], [0, 1])
    runs.sweep(swept, tmp_path / "sweep.csv", progress=False)
    clean = runs.grid(["dham", "cnn", "oracle"], [16], [None], [0, 1])
    runs.sweep(clean, tmp_path / "clean.csv", progress=False)
    (tmp_path / "probe.csv").write_text("step,centre_error\n1,30.5\n")  # a script's own table
    (tmp_path / "costs.csv").write_text("model,canvas,weights\ndham w16,120,455739\n")  # a bench's
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "## probe.csv\n\nnot a sweep file" in out and "## costs.csv\n\nnot a sweep file" in out
    assert "## Clean canvases (clean.csv)" in out and "## Sweep (sweep.csv)" in out
    assert "## Attention outcomes (found under 9.6 px)" in out
    # Every fake run scores 0.5, its centre error 0.5 px too: every run found its digit.
    assert "Nothing to fit: 4 of 4 noisy runs found it." in out
    for name in ("clean_models.png", "sweep_outcomes.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 0


def test_report_without_results_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "none of clean_validated.csv, clean.csv, sweep_validated.csv" in capsys.readouterr().err


def test_sweep_and_train_options_reach_their_runs():
    parser = build_parser()
    args = parser.parse_args(["sweep", "--k", "2", "--epochs", "3", "--widths", "4", "--out", "x"])
    swept = sweep_runs(args)
    assert {r.settings.k for r in swept if r.model == "dham"} == {2}
    assert all(r.train.epochs == 3 for r in swept)
    train = parser.parse_args(["train", "--k", "2", "--snr-db", "0", "--out", "x"])
    run = train_run_of(train)
    assert run.settings.k == 2 and run.data.snr_db == 0.0
    assert given_settings(train)["k"] == 2
    cnn = parser.parse_args(
        ["train", "--model", "pooled_cnn", "--batch-norm", "True", "--out", "x"]
    )
    assert train_run_of(cnn).settings.batch_norm is True
    assert build_model("pooled_cnn", **given_settings(cnn, ("model", "seed"))).settings.batch_norm
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--batch-norm", "maybe", "--out", "x"])


def sweep_runs(args) -> list:
    """The runs a parsed ``sweep`` command trains, as the command builds them."""
    settings = given_settings(args, tuple(AXES))
    return runs.grid(args.model, args.width, args.snr_db, args.seed, **settings)


def train_run_of(args):
    """The run a parsed ``train`` command trains, as the command builds it."""
    return runs.make_run(args.model, args.seed, **given_settings(args, ("model", "seed")))


def _documented_sweeps() -> list[list[str]]:
    """The argument lists of every `python -m dham_lib sweep` that the Makefile's
    `reproduce`, `reproduce-scaling` and `reproduce-benchmark` run (its variables expanded)
    and that data/results/README.md gives as a row's command."""
    import re
    import shlex
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    makefile = (root / "Makefile").read_text().replace("\\\n", " ")
    recipe = "\n".join(
        makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
        for target in ("reproduce", "reproduce-scaling", "reproduce-benchmark")
    )
    variables = dict(re.findall(r"^(\w+) *[:?]?= *(.*)$", makefile, flags=re.MULTILINE))
    while "$(" in recipe and any(f"$({name})" in recipe for name in variables):
        for name, value in variables.items():
            recipe = recipe.replace(f"$({name})", value)
    texts = recipe.splitlines()
    readme = (root / "data" / "results" / "README.md").read_text().replace("\\\n", " ")
    texts += re.findall(r"python -m dham_lib sweep[^`\n]*", readme)
    commands = []
    for text in texts:
        if "dham_lib sweep --" in text:  # a command, not the prose that names the tool
            words = shlex.split(text.split("python -m dham_lib ", 1)[1])
            commands.append(words)
    return commands


def test_every_documented_sweep_command_parses():
    commands = _documented_sweeps()
    assert len(commands) >= 10  # the Makefile's five and the README's rows
    parser = build_parser()
    for argv in commands:
        args = parser.parse_args(argv)
        assert args.out, argv
        built = sweep_runs(args)
        assert built and all(isinstance(run, runs.Run) for run in built), argv


@pytest.mark.parametrize("table", ["cluttered60", "cluttered100"])
def test_reproduce_benchmark_reruns_the_committed_benchmark_runs(table):
    """`make reproduce-benchmark` builds every run whose record is committed beside
    data/results/<table>.csv (same recipe, so the same names), and builds some."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "data" / "results" / table
    committed = {path.stem for path in folder.glob("*.json")}
    assert committed, f"no records in {folder}"
    parser = build_parser()
    built = {
        runs.run_name(run)
        for argv in _documented_sweeps()
        if f"runs/reproduce/{table}.csv" in argv
        for run in sweep_runs(parser.parse_args(argv))
    }
    assert len(built) >= 11  # DHAM's five seeds and the rivals' three each
    assert committed <= built, sorted(committed - built)
