"""One-off migration (issue 30): every committed results CSV row and checkpoint becomes a
run record of dham_lib.study.runs; run once at the commit that adds it, then deleted."""

import dataclasses
import math
import sys
from pathlib import Path

import pandas as pd
import torch

from dham_lib.checkpoints import save_checkpoint
from dham_lib.settings import as_json
from dham_lib.study import experiments, runs
from dham_lib.study.executors import write_record
from dham_lib.study.pretrained import write_manifest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "data" / "results"
FROM = "8e136fd"  # the last commit that wrote results as CSV rows


def typed(row: dict) -> experiments.Cell:
    """The Cell of a CSV row of text, as the old reader typed it."""
    values = {}
    for field in dataclasses.fields(experiments.Cell):
        text = row[field.name]
        kind = field.type
        if text == "":
            values[field.name] = None
        elif kind == "bool":
            values[field.name] = text == "True"
        elif kind.startswith("int"):
            values[field.name] = int(float(text))
        elif kind.startswith("float"):
            values[field.name] = float(text)
        else:
            values[field.name] = text
    return experiments.Cell(**values)


def run_of(cell: experiments.Cell) -> runs.Run:
    settings = dataclasses.asdict(cell)
    model, seed = settings.pop("model"), settings.pop("seed")
    return runs.make_run(model, seed, **settings)


def migrate_table(path: Path) -> int:
    rows = experiments.read_rows(path)
    folder = runs.records_folder(path)
    for row in rows:
        run = run_of(typed(row))
        scores = {k: float(row.get(k) or "nan") for k in runs.SCORES}
        record = runs.make_record(
            run, scores, None, row["device"] or "unknown",
            commit=None, created=None, migrated_from=f"{path.name} at {FROM}",
        )
        write_record(folder / f"{record['name']}.json", record)
    return len(rows)


def check_table(path: Path, old: pd.DataFrame) -> None:
    """The exported table holds the same runs with the same scores, row for row."""
    new = runs.export_table(path)
    assert len(new) == len(old), path
    key = ["model", "seed", "snr_db", "width", "epochs", "lr"]
    for frame in (old, new):
        frame["width"] = frame.get("width", math.nan)
        frame["width"] = frame["width"].fillna(0)
        frame["snr_db"] = frame["snr_db"].fillna(math.inf)
    merged = old.merge(new, on=[k for k in key], suffixes=("_old", "_new"), how="outer")
    for score in (s for s in runs.SCORES if s in old.columns):
        a, b = merged[f"{score}_old"], merged[f"{score}_new"]
        assert ((a - b).abs() < 1e-12).sum() + (a.isna() & b.isna()).sum() >= len(old), (path, score)


def migrate_checkpoints() -> None:
    folder = ROOT / "data" / "checkpoints"
    for path in sorted(folder.glob("*.pt")):
        checkpoint = torch.load(path, weights_only=True)
        cell = experiments.cell_from_config(checkpoint["data_config"])
        model, meta = __import__("dham_lib.checkpoints", fromlist=["x"]).load_checkpoint(path)
        save_checkpoint(
            path, model, data_config=as_json(run_of(cell)), metrics=meta["metrics"],
            extra=meta["extra"],
        )
    write_manifest(folder)


def main() -> int:
    for path in sorted(RESULTS.glob("*.csv")):
        if not {"model", "seed", "test_acc"} <= set(pd.read_csv(path, nrows=0).columns):
            continue
        old = pd.read_csv(path)
        print(path.name, migrate_table(path))
        check_table(path, old)
    migrate_checkpoints()
    return 0


if __name__ == "__main__":
    sys.exit(main())
