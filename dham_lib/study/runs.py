"""The run, the unit of every study (notebooks 04-07).

A :class:`Run` is a model (its name and its own config dataclass, ``dham_lib.models``), a
:class:`DataConfig`, a :class:`TrainConfig` and a seed, as nested frozen dataclasses; each
setting is defined once, in its config class. ``train_run`` trains one and returns its
**record**: the run's config, its final scores, the per-epoch history, the device, the
commit and the library versions. ``sweep`` writes each record, atomically, to
``<table>/<run name>.json`` beside the table it exports (``<table>.csv``): a run is done
when its record exists, so a sweep can be killed, resumed, or shared by processes that
write different records, with no lock. A run killed mid-training resumes after its last
finished epoch. Tables are pandas over records (``runs_table``); a CSV is an export.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import platform
import subprocess
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

import dham_lib
from dham_lib import _checks
from dham_lib.checkpoints import save_checkpoint
from dham_lib.data import BACKGROUNDS, SOURCES, TranslatedMNIST, cluttered_mnist, load_mnist
from dham_lib.models import MODELS
from dham_lib.settings import as_json, setting
from dham_lib.study.executors import Failure, InProcess, read_record, write_record
from dham_lib.train import (
    ATTENTION_LR,
    BATCH_SIZE,
    CANVAS_CURRICULUM_START,
    CURRICULUM_EPOCHS,
    LR,
    EpochSchedule,
    choose_device,
    evaluate,
    fit,
    seed_everything,
)

# Every model and seed is scored on the same test canvases, and watched on the same
# validation canvases.
TEST_SEED = 2018
VAL_SEED = 2019
# What a run may train on: the training digits without the validation ones, or, for the
# runs made before the validation split existed, all of them.
TRAIN_SPLITS = ("train", "train+val")
SCALE = (0.24, 0.40)  # of the side of the original's canvas, REFERENCE_CANVAS pixels
REFERENCE_CANVAS = 120
LARGER_CANVASES = (160, 200)
SCORES = (
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
RECORD_FORMAT = 1
# The models whose head reads a canvas of the size they were trained on: no canvas curriculum.
FIXED_CANVAS_MODELS = ("cnn",)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The canvases a run trains and is scored on (docs/conventions.md, "Canvases")."""

    source: str = setting("bundled", "MNIST digits: the bundled 5k, the full 70k, or auto", SOURCES)
    canvas: int = setting(120, "canvas side in pixels; digits stay 29-48 px")
    snr_db: float | None = setting(None, "SNR in dB, or clean for no noise")
    background: str = setting("noise", "canvas background", BACKGROUNDS)
    train_split: str = setting(
        "train", "train on the digits without the validation ones, or on all", TRAIN_SPLITS
    )
    train_size: int | None = setting(None, "use only the first N training digits")
    test_size: int | None = setting(None, "use only the first N validation and test digits")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a run trains; the defaults are the course's recipe (data/results/README.md)."""

    epochs: int = setting(20, "passes over the training digits")
    lr: float = setting(LR, "Adam learning rate")
    attention_lr: float | None = setting(
        ATTENTION_LR, "learning rate of the network that decides where to look (DHAM, STNs)"
    )
    batch_size: int = setting(BATCH_SIZE, "canvases per step")
    curriculum: int = setting(
        CURRICULUM_EPOCHS,
        "epochs over which noisy training canvases go from 12 dB to --snr-db (0: at it)",
        minimum=0,
    )
    canvas_curriculum: int = setting(
        0,
        "epochs over which training canvases grow from --canvas-curriculum-start to --canvas",
        minimum=0,
    )
    canvas_curriculum_start: int = setting(
        CANVAS_CURRICULUM_START, "the side in px of a canvas curriculum's first epoch"
    )


def _no_settings() -> None:
    return None


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run: ``model`` (a name of ``dham_lib.models.MODELS``) with its
    ``settings`` (that model's ``Config``; None: its defaults), ``data``, ``train`` and
    ``seed`` (the initial weights and the training canvases)."""

    model: str = "dham"
    settings: Any = dataclasses.field(default_factory=_no_settings)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        config = MODELS[_checks.option("model", self.model, MODELS)].Config
        if self.settings is None:
            object.__setattr__(self, "settings", config())  # the model's defaults
        if not isinstance(self.settings, config):
            raise TypeError(f"settings must be a {config.__name__}, got {self.settings!r}")
        _checks.non_negative_int("seed", self.seed)
        _checks.option("train_split", self.data.train_split, TRAIN_SPLITS)


def _fields(config_class) -> list[str]:
    return [field.name for field in dataclasses.fields(config_class)]


def make_run(model: str = "dham", seed: int = 0, **settings) -> Run:
    """The run of ``model`` with ``settings`` given flat, each sent to the config that has it
    (the model's, ``DataConfig``, ``TrainConfig``; ``canvas`` to the data and to an STN
    alike), as the command line does; a setting of another model is ignored, one that no
    config has is a ``TypeError``. Training settings that do not apply are set to their
    neutral value, so that one run has one name: no SNR curriculum on clean canvases, no
    canvas curriculum on a canvas no larger than its start, no ``attention_lr`` for a
    model without an attention network. A canvas curriculum for a model of
    ``FIXED_CANVAS_MODELS`` is a ``ValueError``."""
    config = MODELS[_checks.option("model", model, MODELS)].Config
    known = {name for cls in MODELS.values() for name in _fields(cls.Config)}
    known |= {*_fields(DataConfig), *_fields(TrainConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(f"no config has the setting {', '.join(unknown)}")

    def part(cls) -> dict:
        return {k: v for k, v in settings.items() if k in _fields(cls)}

    data, train = DataConfig(**part(DataConfig)), TrainConfig(**part(TrainConfig))
    if data.snr_db is None:
        train = dataclasses.replace(train, curriculum=0)
    if data.canvas <= train.canvas_curriculum_start or not train.canvas_curriculum:
        train = dataclasses.replace(
            train, canvas_curriculum=0, canvas_curriculum_start=CANVAS_CURRICULUM_START
        )
    if not MODELS[model].has_attention_net:
        train = dataclasses.replace(train, attention_lr=None)
    if train.canvas_curriculum and model in FIXED_CANVAS_MODELS:
        raise ValueError(
            f"canvas_curriculum needs a model that takes any canvas size, not {model!r}"
        )
    model_settings = {k: tuple(v) if isinstance(v, list) else v for k, v in part(config).items()}
    return Run(model, config(**model_settings), data, train, seed)


def with_settings(run: Run, **settings) -> Run:
    """``run`` with some flat settings changed (as :func:`make_run` takes them)."""
    return make_run(run.model, run.seed, **{**flat_settings(run), **settings})


def flat_settings(run: Run) -> dict:
    """Every setting of ``run`` but model and seed, flat: the model's, then the data's and
    the training's (a name in two configs, such as an STN's ``canvas``, holds one value)."""
    return {**dataclasses.asdict(run.settings), **as_json(run.data), **as_json(run.train)}


def run_from_json(payload: dict) -> Run:
    """The :class:`Run` that ``as_json(run)`` wrote."""
    config = MODELS[_checks.option("model", payload["model"], MODELS)].Config
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in payload["settings"].items()}
    return Run(
        payload["model"],
        config(**settings),
        DataConfig(**payload["data"]),
        TrainConfig(**payload["train"]),
        payload["seed"],
    )


def run_name(run: Run) -> str:
    """A readable, unique name of the run, e.g. ``dham-w16-snr6-noise-seed0-1a2b3c4d``:
    the digest is of its whole config, so runs differing in any setting differ."""
    digest = hashlib.sha1(json.dumps(as_json(run), sort_keys=True).encode()).hexdigest()[:8]
    width = getattr(run.settings, "width", None)
    snr = "clean" if run.data.snr_db is None else f"{run.data.snr_db:g}"
    label = f"{run.model}{f'-w{width}' if width else ''}-snr{snr}-{run.data.background}"
    return f"{label}-seed{run.seed}-{digest}"


# --------------------------------------------------------------------------- training a run


def make_dataset(run: Run, split: str, canvas: int | None = None) -> TranslatedMNIST:
    """The run's ``"train"``, ``"val"`` or ``"test"`` set on canvases of side ``canvas``
    (default the run's). The digits keep the pixel size they have on the original's
    120-pixel canvas, 29 to 48 pixels, whatever the side: a larger canvas is more empty
    background around the same digits; with ``background="mnist_cluttered"``, the
    literature's cluttered MNIST instead (``dham_lib.data.cluttered_mnist``: native 28-px
    digits, 60 or 100 px canvases). The training digits are those of
    ``run.data.train_split``; ``run.data.test_size`` caps validation and test."""
    _checks.option("split", split, ("train", "val", "test"))
    data = run.data
    images, labels = load_mnist(
        data.train_split if split == "train" else split, source=data.source, verbose=False
    )
    size = data.train_size if split == "train" else data.test_size
    side = data.canvas if canvas is None else canvas
    seed = {"train": run.seed, "val": VAL_SEED, "test": TEST_SEED}[split]
    if data.background == "mnist_cluttered":  # the literature's protocol: native digits
        return cluttered_mnist(images[:size], labels[:size], canvas=side, seed=seed)
    ratio = REFERENCE_CANVAS / side
    return TranslatedMNIST(
        images[:size],
        labels[:size],
        canvas=side,
        scale=(SCALE[0] * ratio, SCALE[1] * ratio),
        snr_db=data.snr_db,
        background=data.background,
        seed=seed,
    )


def evaluate_canvases(model, run: Run, sides=(120, 160, 200), batch_size: int = 128) -> list:
    """Score ``model`` on the run's test digits drawn on canvases of each side in ``sides``
    (digits of the same pixel size, so a larger canvas is more empty background): one dict
    per side, ``canvas`` and the metrics of :func:`dham_lib.train.evaluate` (notebook 07)."""
    if not isinstance(run, Run):
        raise TypeError(f"run must be a study.runs.Run, got {type(run).__name__}")
    return [
        {
            "canvas": _checks.positive_int("side", side),
            **evaluate(model, make_dataset(run, "test", canvas=side), batch_size=batch_size),
        }
        for side in sides
    ]


def run_schedule(run: Run) -> EpochSchedule:
    """The run's training batches, epoch by epoch (``dham_lib.train.EpochSchedule``): its
    training digits, batch size, seed and curricula."""
    t = run.train
    return EpochSchedule(
        make_dataset(run, "train"),
        t.batch_size,
        run.seed,
        t.curriculum,
        t.canvas_curriculum,
        t.canvas_curriculum_start,
    )


def fit_run(run: Run, model, watched, **options) -> dict:
    """``fit`` ``model`` with the run's recipe (its schedule, epochs, learning rates and
    seed), watching ``watched``; ``options`` are ``fit``'s others (device, progress, ...)."""
    t = run.train
    return fit(
        model,
        run_schedule(run),
        watched,
        epochs=t.epochs,
        lr=t.lr,
        attention_lr=t.attention_lr,
        seed=run.seed,
        **options,
    )


def _partial_path(folder: Path | None, run: Run) -> Path | None:
    return None if folder is None else Path(folder) / f"{run_name(run)}.partial.pt"


def _load_partial(path: Path | None, model) -> dict | None:
    """The state a killed run saved after its last finished epoch, loaded into ``model``;
    None when there is none or it is unreadable (then the run starts again)."""
    if path is None or not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state.pop("model"))
    except Exception as error:  # a truncated or foreign file: start again, say why
        print(f"{path.name} is unusable ({error}); the run starts from its first epoch")
        return None
    print(f"{path.name}: resuming after epoch {state['epoch']}")
    return state


def _save_partial(path: Path, state) -> None:
    """Save what resumes a run after this epoch: weights, optimiser, generator, history."""
    temporary = path.with_name(path.name + ".tmp")
    torch.save(
        {
            "epoch": state.epoch,
            "history": state.history,
            "model": state.model.state_dict(),
            "optimiser": state.optimiser.state_dict(),
            "rng": state.rng,
        },
        temporary,
    )
    os.replace(temporary, path)


def train_run(run: Run, device=None, progress: bool = True, resume_dir=None):
    """Train and score one run: returns ``(model, record)``.

    Training is watched on the validation canvases (the history and ``seconds_to_90`` are
    theirs), or, for a ``"train+val"`` run, which has none, on the test canvases. The
    record's ``scores``: validation accuracy (NaN for ``"train+val"``), test accuracy and
    loss, the box metrics (NaN without a box), training seconds, the training seconds when
    the watched accuracy first reached 90% (NaN if never), and the test accuracy on the
    larger canvases. With ``resume_dir``, the state after each epoch is kept there until
    the run ends, and a run killed midway resumes after its last finished epoch.
    """
    device = choose_device(device)
    test_set = make_dataset(run, "test")
    held_out = run.data.train_split == "train"
    watched = make_dataset(run, "val") if held_out else test_set
    seed_everything(run.seed)  # the initial weights are drawn when the model is built
    model = MODELS[run.model](run.settings)
    partial = _partial_path(resume_dir, run)
    history = fit_run(
        run,
        model,
        watched,
        device=device,
        progress=progress,
        on_epoch_end=None if partial is None else functools.partial(_save_partial, partial),
        resume=_load_partial(partial, model),
    )
    final = evaluate(model, test_set)
    reached = [s for s, a in zip(history["seconds"], history["test_acc"], strict=True) if a >= 0.9]
    scores = {
        "val_acc": history["test_acc"][-1] if held_out else math.nan,
        "test_acc": final["acc"],
        "test_loss": final["loss"],
        "iou": final["iou"],
        "centre_error": final["centre_error"],
        "coverage": final["coverage"],
        "train_seconds": history["seconds"][-1],
        "seconds_to_90": reached[0] if reached else math.nan,
    }
    for side in LARGER_CANVASES:  # the literature's canvases come in their two sizes only
        larger = run.data.background != "mnist_cluttered"
        scores[f"acc_canvas{side}"] = (
            evaluate(model, make_dataset(run, "test", side))["acc"] if larger else math.nan
        )
    if partial is not None:
        partial.unlink(missing_ok=True)
    return model, make_record(run, scores, history, device.type)


@functools.cache
def _commit() -> str | None:
    """The library's git commit, when it runs from a clone."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def make_record(run: Run, scores: dict, history: dict | None, device: str, **extra) -> dict:
    """A run's record: its name, config, scores, per-epoch history, device, commit, versions."""
    return {
        "format": RECORD_FORMAT,
        "name": run_name(run),
        "run": as_json(run),
        "scores": {key: float(scores[key]) for key in SCORES},
        "history": history,
        "device": device,
        "commit": _commit(),
        "versions": {
            "dham_lib": dham_lib.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def run_remote(run: Run, device=None, keep_model: bool = False, resume_dir=None):
    """Train one run wherever this runs (this process, or a Ray worker): ``(model or None,
    record)``, the model on the CPU only with ``keep_model``."""
    model, record = train_run(run, device=device, progress=False, resume_dir=resume_dir)
    return (model.cpu() if keep_model else None), record


# --------------------------------------------------------------------------- records and tables


def records_folder(table: str | os.PathLike) -> Path:
    """Where the records behind a table live: ``<table without .csv>/`` beside it."""
    table = Path(table)
    return table.with_name(table.stem)


def read_records(folder: str | os.PathLike, report: bool = False) -> list[dict]:
    """Every whole record in ``folder``, in name order; a broken one (truncated, corrupt,
    another name inside than outside, a config that does not read) is left out, and named
    with ``report``. A record keeps the name it was written under: a setting added to a
    config later changes new runs' names, not the old records' (their runs match by config)."""
    records = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            record = read_record(path)
            if record.get("name") != path.stem:
                raise ValueError(f"{path} holds another run than its name says")
            run_from_json(record["run"])  # a config this library can read
        except (OSError, ValueError, KeyError, TypeError) as error:
            if report:
                print(f"sweep: a broken record is ignored and its run runs again: {error}")
            continue
        records.append(record)
    return records


def runs_table(records: Iterable[dict]) -> pd.DataFrame:
    """One row per record, flat columns: ``model``, ``seed``, every setting of the run
    (a model's own, then data and training; a setting another model lacks is empty),
    the scores and ``device``."""
    rows = []
    for record in records:
        run = record["run"]
        settings = {k: tuple(v) if isinstance(v, list) else v for k, v in run["settings"].items()}
        rows.append(
            {
                "model": run["model"],
                "seed": run["seed"],
                **run["data"],
                **run["train"],
                **settings,
                **record["scores"],
                "device": record["device"],
            }
        )
    return pd.DataFrame(rows)


def export_table(table: str | os.PathLike) -> pd.DataFrame:
    """Write ``<table>.csv`` from the records in :func:`records_folder` (atomically, so a
    reader sees the old or the new file); returns the table. ``python -m dham_lib export``."""
    table = Path(table)
    frame = runs_table(read_records(records_folder(table)))
    temporary = table.with_name(f".{table.name}.{os.getpid()}.tmp")
    frame.to_csv(temporary, index=False)
    os.replace(temporary, table)
    return frame


def sweep(
    runs: Iterable[Run],
    table: str | os.PathLike,
    checkpoints: str | os.PathLike | None = None,
    device=None,
    progress: bool = True,
    shard: tuple[int, int] = (0, 1),
    executor=None,
) -> pd.DataFrame:
    """Train every run that has no record yet beside ``table`` (a CSV path), writing each
    record as it finishes and exporting the table; returns the table.

    ``shard=(i, n)`` trains only every n-th run from the i-th, so n processes can share a
    table. ``executor`` says where the runs train (``dham_lib.study.executors``): in this
    process (the default) or as tasks of a Ray cluster, which return their records to this
    process, the only one that writes. With ``checkpoints``, each model is saved there.
    A run whose task failed is reported at the end, in a ``RuntimeError`` naming it;
    every other record is written by then.
    """
    table = Path(table)
    folder = _checks.writable_folder("the table's records folder", records_folder(table))
    if checkpoints is not None:
        checkpoints = _checks.writable_folder("checkpoints", Path(checkpoints))
    runs = list(dict.fromkeys(runs))
    if not all(isinstance(run, Run) for run in runs):
        raise TypeError("runs must be Run objects")
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard}")
    runs = runs[index::count]
    # Done is matched by config, not by name: a record written before a setting existed
    # reads back with the setting's default and still counts as its run.
    done = {run_from_json(record["run"]) for record in read_records(folder, report=True)}
    todo = [run for run in runs if run not in done]
    print(f"sweep: {len(runs) - len(todo)} of {len(runs)} runs already in {folder.name}/")
    executor = InProcess() if executor is None else executor
    outcomes = executor.map(
        run_remote,
        todo,
        names=run_name,
        device=device,
        keep_model=checkpoints is not None,
        resume_dir=folder,
    )
    failed = []
    try:
        for run, outcome in tqdm(outcomes, total=len(todo), desc="sweep", disable=not progress):
            name = run_name(run)
            if isinstance(outcome, Failure):
                failed.append(f"{name}: {outcome.error}")
                tqdm.write(f"{name}: failed, no record: {outcome.error}")
                continue
            model, record = outcome
            if checkpoints is not None:
                save_checkpoint(
                    checkpoints / f"{name}.pt",
                    model,
                    data_config=record["run"],
                    metrics=record["scores"],
                )
            write_record(folder / f"{name}.json", record)
            export_table(table)
            scores = record["scores"]
            tqdm.write(
                f"{name}: acc {scores['test_acc']:.3f} iou {scores['iou']:.3f} "
                f"({scores['train_seconds']:.0f} s training on {record['device']})"
            )
    finally:
        outcomes.close()  # a sweep stopped early stops its tasks (and a cluster it started)
    if failed:
        raise RuntimeError(
            f"{len(failed)} of {len(todo)} runs failed and have no record; every other run is "
            f"in {folder} (run the same command again to retry them): " + "; ".join(failed)
        )
    return export_table(table)


def grid(
    models: Iterable[str], widths: Iterable[int], snrs: Iterable, seeds: Iterable[int], **settings
) -> list[Run]:
    """Runs over the product of the lists, seed by seed (a sweep cut short then still covers
    the whole grid once); a model without a ``width`` setting gets one run per (SNR, seed)."""
    models = [_checks.option("model", model, MODELS) for model in models]
    runs = []
    for seed in seeds:
        for snr in snrs:
            for model in models:
                has_width = "width" in _fields(MODELS[model].Config)
                for width in widths if has_width else [None]:
                    chosen = {"width": width} if has_width else {}
                    runs.append(make_run(model, seed, snr_db=snr, **settings, **chosen))
    return list(dict.fromkeys(runs))
