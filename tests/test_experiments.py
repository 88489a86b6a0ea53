"""Cells and resumable sweeps: a killed sweep loses no finished row and resumes."""

import dataclasses
import math

import pytest
import torch

from dham_lib.models import build_model
from dham_lib.study import experiments
from dham_lib.study.experiments import CELL_COLUMNS, RESULT_COLUMNS, Cell, grid, read_rows, sweep
from tests.figures import small_dham

TINY = {"epochs": 1, "train_size": 64, "test_size": 32, "canvas": 64, "batch_size": 32}


def test_grid_gives_one_cell_per_baseline_run():
    cells = grid(["dham", "cnn"], [2, 8], [None, 6.0], [0, 1], **TINY)
    dham = [c for c in cells if c.model == "dham"]
    cnn = [c for c in cells if c.model == "cnn"]
    assert len(dham) == 2 * 2 * 2
    assert len(cnn) == 2 * 2  # widths do not multiply a model without attention
    assert all(c.width == 0 and c.stride == 0 for c in cnn)


def test_grid_rejects_unknown_models():
    with pytest.raises(ValueError, match="model"):
        grid(["transformer"], [2], [None], [0])


def test_train_cell_row(tmp_path):
    _, history, row = experiments.train_cell(Cell(model="dham", width=2, **TINY), progress=False)
    assert set(CELL_COLUMNS) | set(RESULT_COLUMNS) <= set(row)
    assert 0 <= row["test_acc"] <= 1 and 0 <= row["iou"] <= 1
    assert row["train_seconds"] == history["seconds"][-1]
    assert 0 <= row["acc_canvas160"] <= 1
    _, _, cnn = experiments.train_cell(Cell(model="cnn", **TINY), progress=False)
    assert math.isnan(cnn["iou"])


def test_sweep_resumes_after_a_kill_and_loses_nothing(tmp_path, monkeypatch):
    results = tmp_path / "sweep.csv"
    cells = grid(["dham"], [2, 4], [None], [0], **TINY)
    real = experiments.train_cell
    calls = []

    def killed_on_second_cell(cell, **kwargs):
        calls.append(cell)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a kill would, in the middle of the cell
        return real(cell, **kwargs)

    monkeypatch.setattr(experiments, "train_cell", killed_on_second_cell)
    with pytest.raises(KeyboardInterrupt):
        sweep(cells, results, progress=False)
    rows = read_rows(results)
    assert [r["width"] for r in rows] == ["2"]
    assert not (tmp_path / "sweep.csv.partial").exists()

    monkeypatch.setattr(experiments, "train_cell", real)
    rows = sweep(cells, results, checkpoints=tmp_path / "ckpt", progress=False)
    assert [r["width"] for r in rows] == ["2", "4"]
    assert len(list((tmp_path / "ckpt").glob("*.pt"))) == 1  # only the cell run this time

    # A third run finds everything done and trains nothing.
    monkeypatch.setattr(experiments, "train_cell", lambda *a, **k: pytest.fail("retrained"))
    assert len(sweep(cells, results, progress=False)) == 2


def test_sweep_rows_round_trip_through_the_csv(tmp_path):
    cells = [Cell(model="oracle", snr_db=3.0, **TINY)]
    sweep(cells, tmp_path / "r.csv", progress=False)
    (row,) = read_rows(tmp_path / "r.csv")
    assert row["snr_db"] == "3.0" and row["model"] == "oracle"
    assert tuple(row[name] for name in CELL_COLUMNS) == cells[0].key()


def test_rows_written_before_a_cell_field_existed_still_match_their_cells(tmp_path):
    cells = [Cell(model="oracle", snr_db=6.0, curriculum=0, **TINY)]
    cells.append(Cell(model="oracle", snr_db=6.0, curriculum=0, seed=1, **TINY))
    header = [name for name in CELL_COLUMNS if name != "curriculum"]
    values = dict(zip(CELL_COLUMNS, cells[0].key(), strict=True))
    old = tmp_path / "old.csv"
    old.write_text(",".join(header) + "\n" + ",".join(values[name] for name in header) + "\n")
    (row,) = read_rows(old)
    assert row["curriculum"] == "0"
    assert tuple(row[name] for name in CELL_COLUMNS) == cells[0].key()
    rows = sweep(cells, old, progress=False)  # runs only the seed-1 cell
    assert [r["seed"] for r in rows] == ["0", "1"]
    assert "curriculum" in old.read_text().splitlines()[0].split(",")


def fake_train_cell(cell, **kwargs):
    """A stand-in that 'trains' instantly: its row records the cell with made-up scores."""
    row = {name: getattr(cell, name) for name in CELL_COLUMNS}
    row.update({name: 0.5 for name in RESULT_COLUMNS})
    return None, None, row


def test_shards_share_one_csv_and_cover_every_cell_once(tmp_path, monkeypatch):
    monkeypatch.setattr(experiments, "train_cell", fake_train_cell)
    cells = grid(["dham", "oracle"], [2, 4, 8], [None, 6.0], [0, 1], **TINY)
    results = tmp_path / "sweep.csv"
    sweep(cells, results, progress=False, shard=(1, 2))
    rows = sweep(cells, results, progress=False, shard=(0, 2))
    keys = [tuple(r[name] for name in CELL_COLUMNS) for r in rows]
    assert sorted(keys) == sorted(c.key() for c in cells)


def test_a_clean_cell_has_no_curriculum():
    assert Cell(snr_db=None, curriculum=4) == Cell(snr_db=None, curriculum=0)
    assert Cell(snr_db=6.0).curriculum == 4  # the recipe's default


def test_grid_is_seed_major():
    cells = grid(["dham"], [2, 4], [None, 6.0], [0, 1])
    assert [c.seed for c in cells] == [0, 0, 0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize("shard", [(2, 2), (-1, 2), (0, 0)])
def test_bad_shard(tmp_path, shard):
    with pytest.raises(ValueError, match="shard"):
        sweep([Cell()], tmp_path / "r.csv", shard=shard)


def test_evaluate_canvases_keeps_the_digit_size():
    cell = Cell(model="dham", width=4, test_size=20)
    scores = experiments.evaluate_canvases(small_dham(), cell, sides=(120, 160))
    assert [s["canvas"] for s in scores] == [120, 160]
    assert all(0 <= s["acc"] <= 1 and 0 <= s["iou"] <= 1 for s in scores)
    with pytest.raises(TypeError, match="Cell"):
        experiments.evaluate_canvases(small_dham(), "clean")


def test_a_cell_trains_without_the_validation_digits_unless_it_predates_them():
    cell = Cell(model="dham", width=2)
    assert len(experiments.make_dataset(cell, "train")) == 3500
    val = experiments.make_dataset(cell, "val")
    assert len(val) == 500 and len(experiments.make_dataset(cell, "test")) == 1000
    # The validation canvases are fixed whatever the cell's seed, like the test canvases.
    other = experiments.make_dataset(dataclasses.replace(cell, seed=5), "val")
    torch.testing.assert_close(val.batch(range(4))[0], other.batch(range(4))[0])
    before = dataclasses.replace(cell, train_split="train+val")
    assert len(experiments.make_dataset(before, "train")) == 4000
    assert experiments.cell_from_config({"model": "dham", "width": 2}) == before
    with pytest.raises(ValueError, match="train_split"):
        Cell(train_split="val")


def test_a_cell_is_watched_on_validation_and_scored_on_test():
    cell = Cell(model="oracle", **TINY)
    _, history, row = experiments.train_cell(cell, progress=False)
    assert row["val_acc"] == history["test_acc"][-1]  # fit watched the validation canvases
    before = dataclasses.replace(cell, train_split="train+val")
    _, history, row = experiments.train_cell(before, progress=False)
    assert math.isnan(row["val_acc"]) and row["test_acc"] == history["test_acc"][-1]


def test_the_pooled_cnn_has_a_width_and_nothing_of_attention():
    cell = Cell(model="pooled_cnn", width=8, stride=4, classifier="original")
    assert (cell.width, cell.stride, cell.attention_lr, cell.classifier) == (8, 0, None, "course")
    assert cell.model_kwargs() == {"width": 8, "batch_norm": False}
    cells = grid(["pooled_cnn", "cnn"], [8, 16], [None], [0])
    assert sorted((c.model, c.width) for c in cells) == [
        ("cnn", 0),
        ("pooled_cnn", 8),
        ("pooled_cnn", 16),
    ]


def test_the_start_scale_is_the_stns_alone():
    assert Cell(model="stn_zoom", start_scale=0.5).model_kwargs()["start_scale"] == 0.5
    assert Cell(model="dham", start_scale=0.5).start_scale == 1.0  # recorded as the identity
    assert "start_scale" not in Cell(model="dham").model_kwargs()


def test_batch_norm_is_the_pooled_cnns_alone():
    assert Cell(model="pooled_cnn", batch_norm=True).model_kwargs()["batch_norm"] is True
    assert Cell(model="dham", batch_norm=True).batch_norm is False  # recorded as without
    assert "batch_norm" not in Cell(model="dham").model_kwargs()


def test_digits_keep_their_pixel_size_on_every_canvas():
    for side in (120, 240, 480):
        data = experiments.make_dataset(Cell(canvas=side, test_size=200), "test")
        assert data.canvas_size == (side, side)
        assert 29 <= data.side.min() and data.side.max() <= 48  # 0.24 to 0.40 of 120 pixels
    small = experiments.make_dataset(Cell(canvas=240, test_size=50), "test", canvas=120)
    assert small.canvas_size == (120, 120) and small.side.max() <= 48


def test_the_attention_depth_is_dhams_alone():
    assert Cell(model="dham", attention_depth=3).model_kwargs()["attention_depth"] == 3
    assert Cell(model="pooled_cnn", attention_depth=3).attention_depth == 2  # the default
    model = build_model("dham", **Cell(model="dham", width=2, attention_depth=3).model_kwargs())
    assert len(model.attention.middle) == 1


def test_a_canvas_curriculum_needs_a_larger_canvas_and_a_model_of_any_size():
    assert Cell(canvas=120, canvas_curriculum=4).canvas_curriculum == 0  # nothing to grow
    assert Cell(canvas=240, canvas_curriculum=4).canvas_curriculum == 4
    with pytest.raises(ValueError, match="any canvas size"):
        Cell(model="cnn", canvas=240, canvas_curriculum=4)
    # The STNs pool their localisation features adaptively, so they take any size too.
    assert Cell(model="stn_zoom", canvas=240, canvas_curriculum=4).canvas_curriculum == 4


def test_a_canvas_curriculum_may_start_below_120_px():
    cell = Cell(model="stn_zoom", canvas=120, canvas_curriculum=4, canvas_curriculum_start=60)
    assert (cell.canvas_curriculum, cell.canvas_curriculum_start) == (4, 60)
    # Without a curriculum the start means nothing and is recorded as 120: one cell per run.
    assert Cell(canvas_curriculum=0, canvas_curriculum_start=60).canvas_curriculum_start == 120
    assert Cell(canvas=60, canvas_curriculum=4, canvas_curriculum_start=60).canvas_curriculum == 0
