"""Runs, their records and resumable sweeps: a run's record round-trips its config, a
killed sweep loses no finished run and resumes, a killed run resumes after its last
finished epoch, and a setting added to a config reaches the command line and the record."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re

import pandas as pd
import pytest
import torch

from dham_lib.models import MODELS, PooledCNNConfig, build_model, forward_flops
from dham_lib.settings import setting
from dham_lib.study import cli, runs
from dham_lib.study.executors import read_record
from dham_lib.study.runs import (
    SCORES,
    DataConfig,
    Run,
    flat_settings,
    grid,
    make_record,
    make_run,
    records_folder,
    run_from_json,
    run_name,
    sweep,
)
from dham_lib.train import HISTORY_KEYS
from tests.figures import small_dham

TINY = {"epochs": 1, "train_size": 64, "test_size": 32, "canvas": 64, "batch_size": 32}


def fake_train_run(run, **kwargs):
    """A stand-in that 'trains' instantly: its record holds the run with made-up scores."""
    return None, make_record(run, dict.fromkeys(SCORES, 0.5), None, "cpu")


def table_rows(table) -> list[dict]:
    """The rows of an exported table as its text, one dict per line."""
    with open(table, newline="") as handle:
        return list(csv.DictReader(handle))


def test_grid_gives_one_run_per_baseline_run():
    cells = grid(["dham", "cnn"], [2, 8], [None, 6.0], [0, 1], **TINY)
    dham = [c for c in cells if c.model == "dham"]
    cnn = [c for c in cells if c.model == "cnn"]
    assert len(dham) == 2 * 2 * 2
    assert len(cnn) == 2 * 2  # widths do not multiply a model without attention
    assert not any(hasattr(c.settings, "width") or hasattr(c.settings, "stride") for c in cnn)


def test_grid_rejects_unknown_models():
    with pytest.raises(ValueError, match="model"):
        grid(["transformer"], [2], [None], [0])


def test_train_run_record():
    _, record = runs.train_run(make_run("dham", width=2, **TINY), progress=False)
    scores, history = record["scores"], record["history"]
    assert set(scores) == set(SCORES)
    assert 0 <= scores["test_acc"] <= 1 and 0 <= scores["iou"] <= 1
    assert scores["train_seconds"] == history["seconds"][-1]
    assert 0 <= scores["acc_canvas160"] <= 1
    _, cnn = runs.train_run(make_run("cnn", **TINY), progress=False)
    assert math.isnan(cnn["scores"]["iou"])


def test_a_swept_run_writes_one_record_that_round_trips_its_config(tmp_path, capsys):
    run = make_run("dham", width=2, snr_db=6.0, **TINY)
    table = tmp_path / "sweep.csv"
    sweep([run], table, progress=False)
    (path,) = records_folder(table).iterdir()
    assert path.name == f"{run_name(run)}.json"
    record = read_record(path)
    assert run_from_json(record["run"]) == run
    assert set(record["scores"]) == set(SCORES) and 0 <= record["scores"]["test_acc"] <= 1
    assert record["history"]["epoch"] == [1] and set(record["history"]) == set(HISTORY_KEYS)
    assert record["device"] == "cpu"
    assert re.fullmatch("[0-9a-f]{40}", record["commit"])  # the tests run from a clone
    assert set(record["versions"]) == {"dham_lib", "torch", "python"}
    # The table: flat columns, one row, the record's scores.
    frame = pd.read_csv(table)
    columns = ("model", "width", "snr_db", "seed", "canvas", "source", "test_acc", "device")
    assert set(columns) <= set(frame.columns)
    assert frame.loc[0, ["model", "width", "snr_db", "seed", "canvas"]].tolist() == [
        "dham",
        2,
        6.0,
        0,
        64,
    ]
    assert frame.loc[0, "test_acc"] == pytest.approx(record["scores"]["test_acc"])
    # A record cut short (a disk that filled) is reported, and its run trains again.
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    capsys.readouterr()
    sweep([run], table, progress=False)
    out = capsys.readouterr().out
    assert "is not a whole record" in out and "0 of 1 runs already" in out
    assert run_from_json(read_record(path)["run"]) == run


def test_sweep_resumes_after_a_kill_and_loses_nothing(tmp_path, monkeypatch):
    results = tmp_path / "sweep.csv"
    cells = grid(["dham"], [2, 4], [None], [0], **TINY)
    real = runs.train_run
    calls = []

    def killed_on_second_run(run, **kwargs):
        calls.append(run)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a kill would, in the middle of the run
        return real(run, **kwargs)

    monkeypatch.setattr(runs, "train_run", killed_on_second_run)
    with pytest.raises(KeyboardInterrupt):
        sweep(cells, results, progress=False)
    assert [r["width"] for r in table_rows(results)] == ["2"]
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.endswith((".tmp", ".partial.pt"))]
    assert leftovers == []

    monkeypatch.setattr(runs, "train_run", real)
    rows = sweep(cells, results, checkpoints=tmp_path / "ckpt", progress=False)
    assert rows["width"].tolist() == [2, 4]
    assert len(list((tmp_path / "ckpt").glob("*.pt"))) == 1  # only the run trained this time

    # A third sweep finds everything done and trains nothing.
    monkeypatch.setattr(runs, "train_run", lambda *a, **k: pytest.fail("retrained"))
    assert len(sweep(cells, results, progress=False)) == 2


def _text(value) -> str:
    """A setting as the exported CSV writes it: None as an empty field."""
    return "" if value is None else str(value)


def test_sweep_rows_round_trip_through_the_csv(tmp_path):
    cells = [make_run("oracle", snr_db=3.0, **TINY)]
    sweep(cells, tmp_path / "r.csv", progress=False)
    (row,) = table_rows(tmp_path / "r.csv")
    assert row["snr_db"] == "3.0" and row["model"] == "oracle"
    expected = {"model": "oracle", "seed": "0", **flat_settings(cells[0])}
    assert {name: row[name] for name in expected} == {k: _text(v) for k, v in expected.items()}


def test_shards_share_one_csv_and_cover_every_run_once(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "train_run", fake_train_run)
    cells = grid(["dham", "oracle"], [2, 4, 8], [None, 6.0], [0, 1], **TINY)
    results = tmp_path / "sweep.csv"
    sweep(cells, results, progress=False, shard=(1, 2))
    assert len(table_rows(results)) == len(cells) // 2
    sweep(cells, results, progress=False, shard=(0, 2))
    names = [p.stem for p in records_folder(results).glob("*.json")]
    assert sorted(names) == sorted(run_name(c) for c in cells)
    assert len(table_rows(results)) == len(cells)


def test_a_clean_run_has_no_curriculum():
    assert make_run(snr_db=None, curriculum=4) == make_run(snr_db=None, curriculum=0)
    assert make_run(snr_db=6.0).train.curriculum == 4  # the recipe's default


def test_grid_is_seed_major():
    cells = grid(["dham"], [2, 4], [None, 6.0], [0, 1])
    assert [c.seed for c in cells] == [0, 0, 0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize("shard", [(2, 2), (-1, 2), (0, 0)])
def test_bad_shard(tmp_path, shard):
    with pytest.raises(ValueError, match="shard"):
        sweep([Run()], tmp_path / "r.csv", shard=shard)


def test_evaluate_canvases_keeps_the_digit_size():
    run = make_run("dham", width=4, test_size=20)
    scores = runs.evaluate_canvases(small_dham(), run, sides=(120, 160))
    assert [s["canvas"] for s in scores] == [120, 160]
    assert all(0 <= s["acc"] <= 1 and 0 <= s["iou"] <= 1 for s in scores)
    with pytest.raises(TypeError, match="Run"):
        runs.evaluate_canvases(small_dham(), "clean")


def test_a_run_trains_without_the_validation_digits_unless_it_predates_them():
    run = make_run("dham", width=2)
    assert len(runs.make_dataset(run, "train")) == 3500
    val = runs.make_dataset(run, "val")
    assert len(val) == 500 and len(runs.make_dataset(run, "test")) == 1000
    # The validation canvases are fixed whatever the run's seed, like the test canvases.
    other = runs.make_dataset(dataclasses.replace(run, seed=5), "val")
    torch.testing.assert_close(val.batch(range(4))[0], other.batch(range(4))[0])
    before = runs.with_settings(run, train_split="train+val")
    assert len(runs.make_dataset(before, "train")) == 4000
    with pytest.raises(ValueError, match="train_split"):
        make_run(train_split="val")
    with pytest.raises(ValueError, match="train_split"):
        Run(data=DataConfig(train_split="val"))


def test_a_run_is_watched_on_validation_and_scored_on_test():
    run = make_run("oracle", **TINY)
    _, record = runs.train_run(run, progress=False)
    # fit watched the validation canvases
    assert record["scores"]["val_acc"] == record["history"]["test_acc"][-1]
    before = runs.with_settings(run, train_split="train+val")
    _, record = runs.train_run(before, progress=False)
    scores = record["scores"]
    assert math.isnan(scores["val_acc"]) and scores["test_acc"] == record["history"]["test_acc"][-1]


def test_the_pooled_cnn_has_a_width_and_nothing_of_attention():
    run = make_run("pooled_cnn", width=8, stride=4, classifier="original")
    assert run.settings == PooledCNNConfig(width=8)  # DHAM's stride, a LeNet's classifier: not its
    assert run.train.attention_lr is None
    assert build_model("pooled_cnn", **dataclasses.asdict(run.settings)).config["width"] == 8
    cells = grid(["pooled_cnn", "cnn"], [8, 16], [None], [0])
    assert sorted((c.model, getattr(c.settings, "width", 0)) for c in cells) == [
        ("cnn", 0),
        ("pooled_cnn", 8),
        ("pooled_cnn", 16),
    ]


def test_the_start_scale_is_the_stns_alone():
    assert make_run("stn_zoom", start_scale=0.5).settings.start_scale == 0.5
    assert make_run("dham", start_scale=0.5) == make_run("dham")  # not DHAM's: one run
    assert not hasattr(make_run("dham").settings, "start_scale")


def test_batch_norm_is_the_pooled_cnns_alone():
    assert make_run("pooled_cnn", batch_norm=True).settings.batch_norm is True
    assert make_run("dham", batch_norm=True) == make_run("dham")  # not DHAM's: one run
    assert not hasattr(make_run("dham").settings, "batch_norm")


def test_digits_keep_their_pixel_size_on_every_canvas():
    for side in (120, 240, 480):
        data = runs.make_dataset(make_run(canvas=side, test_size=200), "test")
        assert data.canvas_size == (side, side)
        assert 29 <= data.side.min() and data.side.max() <= 48  # 0.24 to 0.40 of 120 pixels
    small = runs.make_dataset(make_run(canvas=240, test_size=50), "test", canvas=120)
    assert small.canvas_size == (120, 120) and small.side.max() <= 48


def test_the_attention_depth_is_dhams_alone():
    assert make_run("dham", attention_depth=3).settings.attention_depth == 3
    assert make_run("pooled_cnn", attention_depth=3) == make_run("pooled_cnn")  # not its own
    settings = make_run("dham", width=2, attention_depth=3).settings
    assert len(build_model("dham", **dataclasses.asdict(settings)).attention.middle) == 1


def test_a_canvas_curriculum_needs_a_larger_canvas_and_a_model_of_any_size():
    assert make_run(canvas=120, canvas_curriculum=4).train.canvas_curriculum == 0  # nothing to grow
    assert make_run(canvas=240, canvas_curriculum=4).train.canvas_curriculum == 4
    with pytest.raises(ValueError, match="any canvas size"):
        make_run("cnn", canvas=240, canvas_curriculum=4)
    # The STNs pool their localisation features adaptively, so they take any size too.
    assert make_run("stn_zoom", canvas=240, canvas_curriculum=4).train.canvas_curriculum == 4


def test_a_canvas_curriculum_may_start_below_120_px():
    run = make_run("stn_zoom", canvas=120, canvas_curriculum=4, canvas_curriculum_start=60)
    assert (run.train.canvas_curriculum, run.train.canvas_curriculum_start) == (4, 60)
    # Without a curriculum the start means nothing and is recorded as 120: one run, one name.
    start = make_run(canvas_curriculum=0, canvas_curriculum_start=60).train.canvas_curriculum_start
    assert start == 120
    assert make_run(canvas=60, canvas_curriculum=4, canvas_curriculum_start=60).train == (
        make_run(canvas=60).train
    )


# --------------------------------------------------------------------------- resuming a run


def test_a_run_killed_after_an_epoch_resumes_there_and_ends_as_if_never_killed(
    tmp_path, monkeypatch, capsys
):
    run = make_run("dham", width=2, **{**TINY, "epochs": 2})
    real = runs._save_partial
    saved = []

    def killed_after_epoch_1(path, state):
        real(path, state)
        saved.append(state.epoch)
        if state.epoch == 1:
            raise KeyboardInterrupt  # killed once the first epoch was kept

    monkeypatch.setattr(runs, "_save_partial", killed_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        runs.train_run(run, progress=False, resume_dir=tmp_path)
    partial = tmp_path / f"{run_name(run)}.partial.pt"
    assert partial.exists()
    capsys.readouterr()
    resumed, record = runs.train_run(run, progress=False, resume_dir=tmp_path)
    assert "resuming after epoch 1" in capsys.readouterr().out
    assert saved == [1, 2]  # the second call trained epoch 2 alone
    assert not partial.exists()  # a finished run keeps no partial state

    whole, reference = runs.train_run(run, progress=False)
    for name, tensor in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, rtol=0, atol=0)
    timings = ("train_seconds", "seconds_to_90")
    for key in set(SCORES) - set(timings):
        assert record["scores"][key] == pytest.approx(reference["scores"][key], nan_ok=True), key
    assert record["history"]["epoch"] == [1, 2]
    assert record["history"]["test_acc"] == reference["history"]["test_acc"]


# --------------------------------------------------------------------------- one place per setting


@dataclasses.dataclass(frozen=True)
class TrainConfigWithWarmUp(runs.TrainConfig):
    """The training config with one more, throwaway setting, as a contributor would add it."""

    warm_up: int = setting(0, "epochs of a throwaway warm-up", minimum=0)


def fake_trained(run, **kwargs):
    """An instant 'training' that returns a real model and a one-epoch history."""
    model = build_model(run.model, **dataclasses.asdict(run.settings))
    history = {key: [1.0] for key in HISTORY_KEYS}
    return model, make_record(run, dict.fromkeys(SCORES, 0.5), history, "cpu")


def test_a_setting_added_to_its_config_reaches_the_command_line_and_the_record(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(runs, "TrainConfig", TrainConfigWithWarmUp)
    monkeypatch.setattr(runs, "train_run", fake_trained)
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert "--warm-up" in commands["train"].format_help()
    assert "epochs of a throwaway warm-up (default: 0)" in commands["train"].format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--warm-up", "-1", "--out", "x"])  # its minimum, 0
    args = parser.parse_args(["sweep", "--warm-up", "3", "--out", "x"])
    assert cli.given_settings(args, tuple(cli.AXES)) == {"warm_up": 3}

    out = tmp_path / "run"
    argv = ["train", "--model", "cnn", "--warm-up", "3", "--test-size", "8", "--out", str(out)]
    assert cli.main([*argv, "--no-progress"]) == 0
    record = json.loads((out / "record.json").read_text())
    assert record["run"]["train"]["warm_up"] == 3
    run = run_from_json(record["run"])
    assert run.train.warm_up == 3 and run == make_run("cnn", warm_up=3, test_size=8)
    assert runs.runs_table([record])["warm_up"].tolist() == [3]


def test_a_record_written_before_a_setting_existed_still_counts_as_its_run(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "train_run", fake_train_run)
    run = make_run("oracle", 0, test_size=8)
    runs.sweep([run], tmp_path / "t.csv", progress=False)
    # The setting arrives later, with a default: the old record reads back with it.
    monkeypatch.setattr(runs, "TrainConfig", TrainConfigWithWarmUp)
    monkeypatch.setattr(runs, "train_run", lambda *a, **k: pytest.fail("retrained"))
    later = make_run("oracle", 0, test_size=8)
    assert later.train.warm_up == 0 and runs.run_name(later) != runs.run_name(run)
    assert len(runs.sweep([later], tmp_path / "t.csv", progress=False)) == 1


def test_the_literatures_cluttered_canvases_keep_the_native_digit():
    run = make_run("oracle", 0, background="mnist_cluttered", canvas=60, test_size=16)
    canvases, _, boxes = runs.make_dataset(run, "test").batch(range(16))
    assert canvases.shape == (16, 1, 60, 60) and 0 <= canvases.min() <= canvases.max() <= 1
    torch.testing.assert_close(boxes[:, 2] - boxes[:, 0], torch.full((16,), 27.0))


def test_run_flops_on_the_benchmark_canvases():
    """The CNN's cost grows with the canvas's area, DHAM's glimpse classifier's does not; the
    CNN's counts are the ones the benchmark issue quotes (21.9 MFLOP at 60 px, 62.2 at 100)."""
    cnn = {
        side: runs.run_flops(
            runs.make_run("pooled_cnn", canvas=side, width=16, batch_norm=True, lr=3e-3)
        )
        for side in (60, 100)
    }
    assert cnn[60] / 1e6 == pytest.approx(21.9, abs=0.05)
    assert cnn[100] / 1e6 == pytest.approx(62.2, abs=0.05)
    dham = runs.make_run("dham", canvas=60, width=16, classifier="small", stride=4)
    built = MODELS["dham"](dham.settings)
    assert runs.run_flops(dham) == forward_flops(built, (60, 60)) < cnn[60] / 4
