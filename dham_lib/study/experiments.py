"""Experiments: one training run per cell, and resumable sweeps over cells (notebooks 04, 05).

A :class:`Cell` names everything that defines a run (model, attention width, SNR,
seed, recipe). ``train_cell`` trains it and scores it on the fixed test canvases
and, for the "any input size" question, on larger canvases with digits of the
same pixel size. ``sweep`` runs many cells and appends one CSV row per finished
cell, skipping cells already in the file, so it can be killed and resumed.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import hashlib
import math
import os
from collections.abc import Iterable
from pathlib import Path

from tqdm.auto import tqdm

from dham_lib import _checks
from dham_lib.checkpoints import save_checkpoint
from dham_lib.data import TranslatedMNIST, load_mnist
from dham_lib.models import MODELS, build_model
from dham_lib.study.executors import Failure, InProcess, read_records, write_record
from dham_lib.train import (
    ATTENTION_LR,
    BATCH_SIZE,
    CANVAS_CURRICULUM_START,
    CURRICULUM_EPOCHS,
    LR,
    choose_device,
    evaluate,
    fit,
    seed_everything,
)

# Every model and seed is scored on the same test canvases, and monitored on the same
# validation canvases.
TEST_SEED = 2018
VAL_SEED = 2019
# The models whose cells have a width: DHAM's attention channels, the pooled CNN's first ones.
WIDTH_MODELS = ("dham", "pooled_cnn")
STN_MODELS = ("stn", "stn_zoom")
# What a cell may train on: the training digits without the validation ones, or, for the
# runs made before the validation split existed, all of them.
TRAIN_SPLITS = ("train", "train+val")
SCALE = (0.24, 0.40)  # of the side of the original's canvas, REFERENCE_CANVAS pixels
REFERENCE_CANVAS = 120
LARGER_CANVASES = (160, 200)
RESULT_COLUMNS = (
    "val_acc",
    "test_acc",
    "test_loss",
    "iou",
    "centre_error",
    "coverage",
    "train_seconds",
    "seconds_to_90",
    *(f"acc_canvas{side}" for side in LARGER_CANVASES),
)
# Where a sweep ran each cell, beside its results: the device type ("cpu", "cuda"). Rows
# written before the column existed read it as empty.
RUN_COLUMNS = ("device",)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One training run. Attention settings (width, k, stride, norm, temperature) apply
    to ``model="dham"`` only and are recorded as 0 otherwise; ``attention_lr`` is the
    learning rate of the part that decides where to look, in DHAM and in the STN;
    ``curriculum`` is the number of epochs over which noisy training canvases go
    from 12 dB down to ``snr_db`` (0: at ``snr_db`` from the start; always 0 clean), and
    ``canvas_curriculum`` the number over which training canvases grow from
    ``canvas_curriculum_start`` px (120) to ``canvas`` (0: at ``canvas`` from the start;
    always 0 when ``canvas`` is no larger than the start, the start then recorded as 120);
    ``train_split`` is ``"train"`` (the validation digits held out, so that choices can
    be made on them) or ``"train+val"`` (every training digit, as the runs made before
    the validation split did); ``classifier`` the glimpse classifier of DHAM, the STN
    and the oracle (``dham_lib.models.CLASSIFIERS``: the course's LeNet, the original's, or
    one of the smaller ones tried on validation);
    ``attention_init`` how DHAM's attention network starts and ``attention_slope`` the
    negative slope of its activation (0: ReLU; ``dham_lib.models.AttentionNet``) and
    ``attention_depth`` its number of convolutions (2, the original's);
    ``start_scale`` the STNs' first glimpse, a centred square of that share of the canvas
    (1: the identity; recorded as 1 for the other models); ``batch_norm`` a BatchNorm after
    each of the pooled CNN's convolutions (recorded as False for the other models).

    The defaults are the course's recipe: attention map at stride 2, L2 scale, and
    the attention network at 10 times the classifier's learning rate (without it,
    DHAM at 6 dB was still at 22% after 2 epochs where the recipe reached 86%), and a
    4-epoch curriculum from 12 dB to the target SNR (without it, width 16 at 0 dB and
    -3 dB never locked on in 10 epochs: 21% and 23%; with it, 95% and 93%).
    """

    model: str = "dham"
    width: int = 16
    snr_db: float | None = None
    seed: int = 0
    background: str = "noise"
    epochs: int = 20
    k: int = 1
    stride: int = 2
    norm: int = 2
    temperature: float = 1.0
    lr: float = LR
    attention_lr: float | None = ATTENTION_LR
    batch_size: int = BATCH_SIZE
    canvas: int = 120
    source: str = "bundled"
    train_size: int | None = None
    test_size: int | None = None
    curriculum: int = CURRICULUM_EPOCHS
    canvas_curriculum: int = 0
    train_split: str = "train"
    classifier: str = "course"
    attention_init: str = "torch"
    attention_slope: float = 0.0
    attention_depth: int = 2
    start_scale: float = 1.0
    batch_norm: bool = False
    canvas_curriculum_start: int = CANVAS_CURRICULUM_START

    def __post_init__(self) -> None:
        _checks.option("train_split", self.train_split, TRAIN_SPLITS)
        if self.snr_db is None:
            object.__setattr__(self, "curriculum", 0)  # nothing to ramp on a clean canvas
        if self.canvas <= self.canvas_curriculum_start:
            object.__setattr__(self, "canvas_curriculum", 0)  # nor on the smallest canvas
        if not self.canvas_curriculum:
            object.__setattr__(self, "canvas_curriculum_start", CANVAS_CURRICULUM_START)
        elif self.model == "cnn":
            raise ValueError(
                f"canvas_curriculum needs a model that takes any canvas size, not {self.model!r}"
            )
        if self.model != "dham":
            # These do not exist for the other models: one canonical cell per run. The
            # pooled CNN's width is its first convolution's channel count.
            unused = ("k", "stride", "norm", *(() if self.model in WIDTH_MODELS else ("width",)))
            for name in unused:
                object.__setattr__(self, name, 0)
            object.__setattr__(self, "temperature", 0.0)
        if self.model not in ("dham", *STN_MODELS):
            object.__setattr__(self, "attention_lr", None)
        if self.model != "dham":
            object.__setattr__(self, "attention_init", "torch")
            object.__setattr__(self, "attention_slope", 0.0)
            object.__setattr__(self, "attention_depth", 2)
        if self.model not in STN_MODELS:
            object.__setattr__(self, "start_scale", 1.0)
        if self.model != "pooled_cnn":
            object.__setattr__(self, "batch_norm", False)
        if self.model in ("cnn", "pooled_cnn"):  # no glimpse, no glimpse classifier
            object.__setattr__(self, "classifier", "course")

    def model_kwargs(self) -> dict:
        """Constructor arguments for ``build_model(self.model, ...)``."""
        if self.model == "dham":
            return {
                "width": self.width,
                "k": self.k,
                "stride": self.stride,
                "norm": self.norm,
                "temperature": self.temperature,
                "classifier": self.classifier,
                "attention_init": self.attention_init,
                "attention_slope": self.attention_slope,
                "attention_depth": self.attention_depth,
            }
        if self.model in STN_MODELS:
            return {
                "canvas": self.canvas,
                "classifier": self.classifier,
                "start_scale": self.start_scale,
            }
        if self.model == "oracle":
            return {"classifier": self.classifier}
        if self.model == "pooled_cnn":
            return {"width": self.width, "batch_norm": self.batch_norm}
        return {}

    def key(self) -> tuple[str, ...]:
        """The cell's identity as CSV text, to find it among finished rows."""
        return tuple(_text(value) for value in dataclasses.astuple(self))


CELL_COLUMNS = tuple(field.name for field in dataclasses.fields(Cell))


def _text(value) -> str:
    """A cell value as it is written to, and read back from, the CSV."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def make_dataset(cell: Cell, split: str, canvas: int | None = None) -> TranslatedMNIST:
    """The cell's ``"train"``, ``"val"`` or ``"test"`` set on canvases of side ``canvas``
    (default the cell's). The digits keep the pixel size they have on the original's
    120-pixel canvas, 29 to 48 pixels, whatever the side: a larger canvas is more empty
    background around the same digits. The training digits are those of
    ``cell.train_split``; ``cell.test_size`` caps validation and test."""
    _checks.option("split", split, ("train", "val", "test"))
    digits = cell.train_split if split == "train" else split
    images, labels = load_mnist(digits, source=cell.source, verbose=False)
    size = cell.train_size if split == "train" else cell.test_size
    side = cell.canvas if canvas is None else canvas
    ratio = REFERENCE_CANVAS / side
    return TranslatedMNIST(
        images[:size],
        labels[:size],
        canvas=side,
        scale=(SCALE[0] * ratio, SCALE[1] * ratio),
        snr_db=cell.snr_db,
        background=cell.background,
        seed={"train": cell.seed, "val": VAL_SEED, "test": TEST_SEED}[split],
    )


def fit_cell(cell: Cell, model, train_set, test_set, device=None, progress: bool = True) -> dict:
    """``fit`` with the cell's recipe (epochs, learning rates, batch size, seed,
    curriculum): the one place that turns a Cell into training arguments."""
    return fit(
        model,
        train_set,
        test_set,
        epochs=cell.epochs,
        lr=cell.lr,
        batch_size=cell.batch_size,
        seed=cell.seed,
        device=device,
        progress=progress,
        attention_lr=cell.attention_lr,
        curriculum_epochs=cell.curriculum,
        canvas_curriculum_epochs=cell.canvas_curriculum,
        canvas_curriculum_start=cell.canvas_curriculum_start,
    )


def train_cell(cell: Cell, device=None, progress: bool = True):
    """Train and score one cell: returns ``(model, history, row)``.

    Training is watched on the validation canvases (``history`` and ``seconds_to_90``
    are theirs), or, for a ``"train+val"`` cell, which has none, on the test canvases.
    ``row`` holds the cell's fields and ``RESULT_COLUMNS``: validation accuracy (NaN for
    ``"train+val"``), test accuracy and loss, the box metrics (NaN without a box),
    training seconds, the training seconds when the watched accuracy first reached 90%
    (NaN if never), and the test accuracy on the larger canvases.
    """
    train_set, test_set = make_dataset(cell, "train"), make_dataset(cell, "test")
    held_out = cell.train_split == "train"
    watched = make_dataset(cell, "val") if held_out else test_set
    seed_everything(cell.seed)  # the initial weights are drawn when the model is built
    model = build_model(cell.model, **cell.model_kwargs())
    history = fit_cell(cell, model, train_set, watched, device=device, progress=progress)
    final = evaluate(model, test_set)
    reached = [s for s, a in zip(history["seconds"], history["test_acc"], strict=True) if a >= 0.9]
    row = {name: getattr(cell, name) for name in CELL_COLUMNS}
    row.update(
        val_acc=history["test_acc"][-1] if held_out else math.nan,
        test_acc=final["acc"],
        test_loss=final["loss"],
        iou=final["iou"],
        centre_error=final["centre_error"],
        coverage=final["coverage"],
        train_seconds=history["seconds"][-1],
        seconds_to_90=reached[0] if reached else math.nan,
    )
    for side in LARGER_CANVASES:
        row[f"acc_canvas{side}"] = evaluate(model, make_dataset(cell, "test", canvas=side))["acc"]
    return model, history, row


def evaluate_canvases(
    model, cell: Cell, sides=(120, 160, 200), batch_size: int = 128
) -> list[dict[str, float]]:
    """Score ``model`` on the cell's test digits drawn on canvases of each side in ``sides``.

    The digits keep their pixel size (``make_dataset(cell, "test", canvas=side)``),
    so a larger canvas means more empty background around the same digits. One
    dict per side: ``canvas`` and the metrics of :func:`dham_lib.train.evaluate`.
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"cell must be a study.experiments.Cell, got {type(cell).__name__}")
    scores = []
    for side in sides:
        _checks.positive_int("side", side)
        metrics = evaluate(model, make_dataset(cell, "test", canvas=side), batch_size=batch_size)
        scores.append({"canvas": side, **metrics})
    return scores


# Cell fields added after results and checkpoints were first written, with the value
# that means what those older runs did.
LEGACY_FIELDS = {
    "curriculum": 0,
    "canvas_curriculum": 0,
    "train_split": "train+val",
    "classifier": "course",
    "attention_init": "torch",
    "attention_slope": 0.0,
    "attention_depth": 2,
    "start_scale": 1.0,
    "batch_norm": False,
    "canvas_curriculum_start": CANVAS_CURRICULUM_START,
}
_LEGACY_TEXT = {name: _text(value) for name, value in LEGACY_FIELDS.items()}


def cell_from_config(config: dict) -> Cell:
    """The Cell that a checkpoint's ``data_config`` (``dataclasses.asdict(cell)``) records;
    fields the checkpoint predates take their ``LEGACY_FIELDS`` value."""
    return Cell(**{**LEGACY_FIELDS, **config})


def read_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a results CSV as dicts of text (an empty list if the file is missing).

    A cell column that the file predates (added to ``Cell`` later) reads as the
    value that reproduces what those rows did, so they keep matching their cells.
    """
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for name in CELL_COLUMNS:
            if name not in row:
                row[name] = _LEGACY_TEXT[name]
        for name in RUN_COLUMNS:
            row.setdefault(name, "")
    return rows


def _write_rows(path: Path, rows: list[dict]) -> None:
    """Write all rows to a temporary file, then rename it over ``path``.

    The rename is atomic, so a sweep killed at any moment leaves either the old or
    the new file, never a half-written one.
    """
    columns = [*CELL_COLUMNS, *RESULT_COLUMNS, *RUN_COLUMNS]
    temporary = path.with_name(path.name + ".partial")
    with temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({name: _text(row.get(name)) for name in columns})
    os.replace(temporary, path)


@contextlib.contextmanager
def _locked(path: Path):
    """Hold the lock of the results CSV ``path`` (``<name>.lock`` beside it): one process of
    this machine at a time rewrites the CSV."""
    with (path.parent / (path.name + ".lock")).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def cells_folder(results: str | os.PathLike) -> Path:
    """The folder of a results CSV's per-cell files, ``<name>.cells/`` beside it."""
    results = Path(results)
    return results.with_name(results.stem + ".cells")


def _key_digest(key: tuple[str, ...]) -> str:
    """The sha1 of a cell's key, as the names of its checkpoint and its cell file end."""
    return hashlib.sha1("|".join(key).encode()).hexdigest()


def _save_cell_row(results: Path, cell: Cell, row: dict) -> Path:
    """Write a finished cell's row to its own file in ``cells_folder(results)``, atomically
    (``executors.write_record``), and merge it into the CSV; returns the file's path."""
    text = {name: _text(value) for name, value in row.items()}
    payload = {
        "cell": {name: text[name] for name in CELL_COLUMNS},
        "results": {name: value for name, value in text.items() if name not in CELL_COLUMNS},
    }
    path = cells_folder(results) / Path(checkpoint_name(cell)).with_suffix(".json").name
    write_record(path, payload)
    _merge_cells(results)
    return path


def _row_from_record(path: Path, payload: dict) -> dict[str, str]:
    """A results row from a cell file's payload, once its fields are checked."""
    cell, scores = payload.get("cell"), payload.get("results")
    if not (isinstance(cell, dict) and isinstance(scores, dict)):
        raise ValueError(f"{path} does not hold a cell and its results")
    if not all(isinstance(value, str) for value in (*cell.values(), *scores.values())):
        raise ValueError(f"{path} holds values that are not CSV text")
    if not path.stem.endswith(_key_digest(tuple(cell.values()))[:8]):
        raise ValueError(f"{path} holds another cell than its name says")
    missing = [name for name in RESULT_COLUMNS if name not in scores]
    if missing:
        raise ValueError(f"{path} lacks the results {missing}")
    row = {**cell, **scores}
    for name in CELL_COLUMNS:  # a field added since the file was written
        if name not in row:
            row[name] = _LEGACY_TEXT.get(name, "")
    return row


def _merge_cells(results: Path, report: bool = False) -> list[dict[str, str]]:
    """Merge the per-cell files into the results CSV; returns the CSV's rows.

    Under the CSV's lock: the CSV's rows stay as they are, in their order, and each cell
    file whose cell has no row yet adds one; the CSV is rewritten (atomically) only if
    a row was added, and only then are the merged files removed, so a kill at any moment
    leaves every finished cell in the CSV, in its file, or both. A broken file (truncated,
    corrupt, another cell than its name says) is never used: it stays, and with
    ``report`` it is named, and its cell runs again (its new file replaces it).
    """
    with _locked(results):
        rows = read_rows(results)
        have = {tuple(row[name] for name in CELL_COLUMNS) for row in rows}
        good, bad = read_records(cells_folder(results))
        added, merged = False, []
        for path, payload in good:
            try:
                row = _row_from_record(path, payload)
            except ValueError as error:
                bad.append((path, str(error)))
                continue
            key = tuple(row[name] for name in CELL_COLUMNS)
            if key not in have:
                rows.append(row)
                have.add(key)
                added = True
            merged.append(path)
        if added:
            _write_rows(results, rows)
        for path in merged:
            path.unlink(missing_ok=True)
    if report:
        for _, reason in bad:
            print(f"sweep: a broken cell file is ignored and its cell runs again: {reason}")
    return rows


def run_cell(cell: Cell, device=None, keep_model: bool = False):
    """Train one cell wherever this runs (this process, or a Ray worker): returns
    ``(model or None, row)``, the row with ``device``, the type of the device it trained on
    (``device`` if given, else CUDA where this process sees a GPU, else the CPU; Ray shows
    a task only the GPUs it was given). The model, on the CPU, only with ``keep_model``."""
    chosen = choose_device(device)
    model, _, row = train_cell(cell, device=chosen, progress=False)
    row["device"] = chosen.type
    if model is not None:
        model = model.cpu() if keep_model else None
    return model, row


def _label(cell: Cell) -> str:
    snr = _text(cell.snr_db) or "clean"
    return f"{cell.model} width={cell.width} snr={snr} seed={cell.seed}"


def sweep(
    cells: Iterable[Cell],
    results: str | os.PathLike,
    checkpoints: str | os.PathLike | None = None,
    device=None,
    progress: bool = True,
    shard: tuple[int, int] = (0, 1),
    executor=None,
) -> list[dict[str, str]]:
    """Run every cell not yet in the ``results`` CSV, adding a row as each finishes.

    Rows already in the file are kept as they are; a cell that was interrupted
    has no row and runs again. With ``checkpoints``, each run's model is saved
    there too. ``shard=(i, n)`` runs only every n-th cell starting at i, so n
    processes can share one CSV. Returns the file's rows at the end.

    ``executor`` says where the cells run (``dham_lib.study.executors``): in this
    process, one after the other (``InProcess``, the default), or as the tasks of a Ray
    cluster (``RayExecutor``), as many at a time as it has room for.

    Each finished cell is first written to a file of its own, ``<name>.cells/<cell>.json``
    beside the CSV (to a temporary name, then renamed: whole or absent), then merged
    into the CSV under a lock, after which its file is removed; a sweep killed between
    the two leaves the file, and the next one merges it. A broken file is reported
    with its path, and its cell runs again.

    Under Ray, the tasks only train: each returns its row (and model) to this process,
    the driver, which writes every file itself. That is the safe way across machines:
    the results need only be on the driver's disk, no file lock is ever taken over a
    network file system, and a worker never writes half a file that others read. The
    lock only serialises processes on the driver's machine that share a CSV (shards).
    A cell whose task raised, or whose worker died more often than Ray retries, is
    reported when the others have finished, in a ``RuntimeError`` naming each such
    cell and its error; every finished cell is in the CSV by then.
    """
    results = Path(results)
    # Fail now, not after the first cell's minutes of training have nowhere to go.
    _checks.writable_folder("the results CSV's folder", results.parent)
    if checkpoints is not None:
        checkpoints = _checks.writable_folder("checkpoints", Path(checkpoints))
    cells = list(dict.fromkeys(cells))
    if not all(isinstance(cell, Cell) for cell in cells):
        raise TypeError("cells must be Cell objects")
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard}")
    cells = cells[index::count]
    executor = InProcess() if executor is None else executor
    done = {tuple(row[name] for name in CELL_COLUMNS) for row in _merge_cells(results, True)}
    todo = [cell for cell in cells if cell.key() not in done]
    print(f"sweep: {len(cells) - len(todo)} of {len(cells)} cells already in {results.name}")
    failed = []
    outcomes = executor.map(
        run_cell,
        todo,
        names=lambda cell: Path(checkpoint_name(cell)).stem,
        device=device,
        keep_model=checkpoints is not None,
    )
    try:
        for cell, outcome in tqdm(
            outcomes, total=len(todo), desc="sweep", unit="cell", disable=not progress
        ):
            if isinstance(outcome, Failure):
                failed.append(f"{_label(cell)}: {outcome.error}")
                tqdm.write(f"{_label(cell)}: failed, no row: {outcome.error}")
                continue
            model, row = outcome
            if checkpoints is not None:
                save_checkpoint(
                    checkpoints / checkpoint_name(cell),
                    model,
                    data_config=dataclasses.asdict(cell),
                    metrics={"acc": row["test_acc"]},
                )
            _save_cell_row(results, cell, row)
            tqdm.write(
                f"{_label(cell)}: acc {row['test_acc']:.3f} iou {row['iou']:.3f} "
                f"({row['train_seconds']:.0f} s training on {row['device']})"
            )
    finally:
        outcomes.close()  # a sweep stopped early stops its tasks (and a cluster it started)
    if failed:
        raise RuntimeError(
            f"{len(failed)} of {len(todo)} cells failed and have no row; every other cell is "
            f"in {results} (run the same command again to retry them): " + "; ".join(failed)
        )
    return read_rows(results)


def checkpoint_name(cell: Cell) -> str:
    """A readable, unique file name for the cell's checkpoint, e.g. ``dham-w16-snr6.0-...pt``."""
    digest = _key_digest(cell.key())[:8]
    snr = "clean" if cell.snr_db is None else f"{cell.snr_db:g}"
    return f"{cell.model}-w{cell.width}-snr{snr}-{cell.background}-seed{cell.seed}-{digest}.pt"


def grid(
    models: Iterable[str], widths: Iterable[int], snrs: Iterable, seeds: Iterable[int], **common
):
    """Cells over the product of the lists, seed by seed (a sweep cut short then still
    covers the whole grid once); models without attention get one cell per
    (snr, seed), whatever the widths."""
    for model in models:
        _checks.option("model", model, MODELS)
    cells = []
    for seed in seeds:
        for snr in snrs:
            for model in models:
                for width in widths if model in WIDTH_MODELS else [0]:
                    cells.append(Cell(model=model, width=width, snr_db=snr, seed=seed, **common))
    return list(dict.fromkeys(cells))
