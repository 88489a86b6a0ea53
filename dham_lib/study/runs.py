"""The run, the unit of every study (notebooks 04-07): a model, its :class:`DataConfig`, its
:class:`TrainConfig` and a seed. ``sweep`` writes each run's record (config, scores, history,
device, commit, versions) atomically to ``<table>/<run name>.json`` beside the CSV it exports:
a run is done when its record exists, so sweeps can be killed, resumed or shared, lock-free.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import os
import platform
import subprocess
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

import dham_lib
from dham_lib import _checks
from dham_lib import train as training
from dham_lib.checkpoints import save_checkpoint
from dham_lib.data import BACKGROUNDS, SOURCES, TranslatedMNIST, cluttered_mnist, load_mnist
from dham_lib.models import MODELS, forward_flops
from dham_lib.settings import as_json, setting
from dham_lib.study.executors import RECORD_FORMAT, Failure, InProcess, read_record, write_record

# Every model and seed is scored on the same test canvases and watched on the same val ones.
TEST_SEED = 2018
VAL_SEED = 2019
# Train on the digits but the validation ones, or (runs older than that split) on all.
TRAIN_SPLITS = ("train", "train+val")
SCALE = (0.24, 0.40)  # of the side of the original's canvas, REFERENCE_CANVAS pixels
REFERENCE_CANVAS = 120
LARGER_CANVASES = (160, 200)
SCORES = (
    *"val_acc test_acc test_loss iou centre_error coverage train_seconds seconds_to_90".split(),
    *(f"acc_canvas{side}" for side in LARGER_CANVASES),
)
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
    lr: float = setting(training.LR, "Adam learning rate")
    attention_lr: float | None = setting(
        training.ATTENTION_LR,
        "learning rate of the network that decides where to look (DHAM, STNs)",
    )
    batch_size: int = setting(training.BATCH_SIZE, "canvases per step")
    curriculum: int = setting(
        training.CURRICULUM_EPOCHS,
        "epochs over which noisy training canvases go from 12 dB to --snr-db (0: at it)",
        minimum=0,
    )
    canvas_curriculum: int = setting(
        0,
        "epochs over which training canvases grow from --canvas-curriculum-start to --canvas",
        minimum=0,
    )
    canvas_curriculum_start: int = setting(
        training.CANVAS_CURRICULUM_START, "the side in px of a canvas curriculum's first epoch"
    )


@dataclasses.dataclass(frozen=True)
class Run:
    """``model`` (a name of ``MODELS``) with its ``settings`` (its ``Config``; None: defaults),
    ``data``, ``train`` and ``seed`` (of the initial weights and the training canvases)."""

    model: str = "dham"
    settings: object = None
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


def _tuples(settings: dict, config_class=None) -> dict:
    """``settings`` (of ``config_class`` alone, if given), lists (as JSON has tuples) as tuples."""
    names = settings if config_class is None else _fields(config_class)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k in names}


def make_run(model: str = "dham", seed: int = 0, **settings) -> Run:
    """The run of ``model`` with ``settings`` given flat, as the command line does, each sent
    to the config that has it (``canvas`` to the data and to an STN alike); another model's
    is ignored, one no config has is a ``TypeError``. One run, one name: no SNR curriculum on
    clean canvases, no canvas curriculum on a canvas no larger than its start (a
    ``ValueError`` for ``FIXED_CANVAS_MODELS``), no ``attention_lr`` without an attention net."""
    config = MODELS[_checks.option("model", model, MODELS)].Config
    configs = [*(each.Config for each in MODELS.values()), DataConfig, TrainConfig]
    unknown = sorted(set(settings).difference(*map(_fields, configs)))
    if unknown:
        raise TypeError(f"no config has the setting {', '.join(unknown)}")
    data = DataConfig(**_tuples(settings, DataConfig))
    train = TrainConfig(**_tuples(settings, TrainConfig))
    if data.snr_db is None:
        train = dataclasses.replace(train, curriculum=0)
    if data.canvas <= train.canvas_curriculum_start or not train.canvas_curriculum:
        start = training.CANVAS_CURRICULUM_START
        train = dataclasses.replace(train, canvas_curriculum=0, canvas_curriculum_start=start)
    if not MODELS[model].has_attention_net:
        train = dataclasses.replace(train, attention_lr=None)
    if train.canvas_curriculum and model in FIXED_CANVAS_MODELS:
        raise ValueError(f"canvas_curriculum needs a model of any canvas size, not {model!r}")
    return Run(model, config(**_tuples(settings, config)), data, train, seed)


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
    settings = config(**_tuples(payload["settings"], config))
    data, train = DataConfig(**payload["data"]), TrainConfig(**payload["train"])
    return Run(payload["model"], settings, data, train, payload["seed"])


def run_name(run: Run) -> str:
    """A readable, unique name of the run, e.g. ``dham-w16-snr6-noise-seed0-1a2b3c4d``:
    the digest is of its whole config, so runs differing in any setting differ."""
    digest = hashlib.sha1(json.dumps(as_json(run), sort_keys=True).encode()).hexdigest()[:8]
    width = getattr(run.settings, "width", None)
    snr = "clean" if run.data.snr_db is None else f"{run.data.snr_db:g}"
    label = f"{run.model}{f'-w{width}' if width else ''}-snr{snr}-{run.data.background}"
    return f"{label}-seed{run.seed}-{digest}"


def run_flops(run: Run) -> int:
    """FLOPs of one forward pass of ``run``'s model on one canvas of the run's side, counted
    by :func:`~dham_lib.models.forward_flops` (notebook 08)."""
    side = run.data.canvas
    return forward_flops(MODELS[run.model](run.settings), (side, side))


def make_dataset(run: Run, split: str, canvas: int | None = None) -> TranslatedMNIST:
    """The run's ``"train"``, ``"val"`` or ``"test"`` set on canvases of side ``canvas``
    (default the run's), digits 29 to 48 px whatever the side (a larger canvas is more
    background), or, with ``background="mnist_cluttered"``, the literature's cluttered MNIST
    (native 28-px digits). ``run.data.test_size`` caps validation and test."""
    seeds = {"train": run.seed, "val": VAL_SEED, "test": TEST_SEED}
    seed = seeds[_checks.option("split", split, seeds)]
    data = run.data
    digits = data.train_split if split == "train" else split
    images, labels = load_mnist(digits, source=data.source, verbose=False)
    size = data.train_size if split == "train" else data.test_size
    images, labels = images[:size], labels[:size]
    side = data.canvas if canvas is None else canvas
    if data.background == "mnist_cluttered":  # the literature's protocol: native digits
        return cluttered_mnist(images, labels, canvas=side, seed=seed)
    scale = tuple(share * (REFERENCE_CANVAS / side) for share in SCALE)
    return TranslatedMNIST(images, labels, side, scale, data.snr_db, data.background, seed)


def evaluate_canvases(model, run: Run, sides=(120, 160, 200), batch_size: int = 128) -> list:
    """Score ``model`` on the run's test digits on canvases of each side in ``sides`` (notebook
    07): per side, a dict of ``canvas`` and the metrics of :func:`dham_lib.train.evaluate`."""
    if not isinstance(run, Run):
        raise TypeError(f"run must be a study.runs.Run, got {type(run).__name__}")
    scores = []
    for side in sides:
        test_set = make_dataset(run, "test", canvas=_checks.positive_int("side", side))
        scores.append({"canvas": side, **training.evaluate(model, test_set, batch_size=batch_size)})
    return scores


def run_schedule(run: Run) -> training.EpochSchedule:
    """The run's training batches, epoch by epoch (``dham_lib.train.EpochSchedule``)."""
    t = run.train
    curricula = (t.curriculum, t.canvas_curriculum, t.canvas_curriculum_start)
    return training.EpochSchedule(make_dataset(run, "train"), t.batch_size, run.seed, *curricula)


def fit_run(run: Run, model, watched, **options) -> dict:
    """``fit`` ``model`` with the run's recipe, watching ``watched``; ``options``: fit's others."""
    t = run.train
    recipe = {"epochs": t.epochs, "lr": t.lr, "attention_lr": t.attention_lr, "seed": run.seed}
    return training.fit(model, run_schedule(run), watched, **recipe, **options)


def _load_partial(path: Path | None, model) -> dict | None:
    """A killed run's state after its last epoch, loaded into ``model``; None: start again."""
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
    weights = {"model": state.model.state_dict(), "optimiser": state.optimiser.state_dict()}
    torch.save({**state._asdict(), **weights}, temporary)
    os.replace(temporary, path)


def train_run(run: Run, device=None, progress: bool = True, resume_dir=None):
    """Train and score one run: ``(model, record)``. Training watches the validation canvases
    (the test ones for a ``"train+val"`` run, whose ``val_acc`` is NaN); ``seconds_to_90`` is
    when the watched accuracy first reached 90% (NaN if never); box metrics are NaN without a
    box. With ``resume_dir``, a run killed midway resumes there after its last epoch."""
    device = training.choose_device(device)
    test_set = make_dataset(run, "test")
    held_out = run.data.train_split == "train"
    watched = make_dataset(run, "val") if held_out else test_set
    training.seed_everything(run.seed)  # the initial weights are drawn when the model is built
    model = MODELS[run.model](run.settings)
    partial = None if resume_dir is None else Path(resume_dir) / f"{run_name(run)}.partial.pt"
    save = None if partial is None else functools.partial(_save_partial, partial)
    options = {"device": device, "progress": progress, "on_epoch_end": save}
    history = fit_run(run, model, watched, **options, resume=_load_partial(partial, model))
    final = training.evaluate(model, test_set)
    reached = [s for s, a in zip(history["seconds"], history["test_acc"], strict=True) if a >= 0.9]
    # The literature's cluttered canvases come in their two sizes only.
    larger = [] if run.data.background == "mnist_cluttered" else LARGER_CANVASES
    accuracy = {s["canvas"]: s["acc"] for s in evaluate_canvases(model, run, larger, 256)}
    scores = {
        "val_acc": history["test_acc"][-1] if held_out else math.nan,
        "test_acc": final["acc"],
        "test_loss": final["loss"],
        **{key: final[key] for key in ("iou", "centre_error", "coverage")},
        "train_seconds": history["seconds"][-1],
        "seconds_to_90": reached[0] if reached else math.nan,
        **{f"acc_canvas{side}": accuracy.get(side, math.nan) for side in LARGER_CANVASES},
    }
    if partial is not None:
        partial.unlink(missing_ok=True)
    return model, make_record(run, scores, history, device.type)


@functools.cache
def _commit() -> str | None:
    """The library's git commit, when it runs from a clone."""
    command = ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return out.stdout.strip() or None


def make_record(run: Run, scores: dict, history: dict | None, device: str, **extra) -> dict:
    """A run's record: its name, config, scores, per-epoch history, device, commit, versions."""
    versions = {"dham_lib": dham_lib.__version__, "torch": torch.__version__}
    return {
        "format": RECORD_FORMAT,
        "name": run_name(run),
        "run": as_json(run),
        "scores": {key: float(scores[key]) for key in SCORES},
        "history": history,
        "device": device,
        "commit": _commit(),
        "versions": {**versions, "python": platform.python_version()},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def run_remote(run: Run, device=None, keep_model: bool = False, resume_dir=None):
    """Train one run wherever this runs (this process, or a Ray worker): ``(model or None,
    record)``, the model on the CPU only with ``keep_model``."""
    model, record = train_run(run, device=device, progress=False, resume_dir=resume_dir)
    return (model.cpu() if keep_model else None), record


def records_folder(table: str | os.PathLike) -> Path:
    """Where the records behind a table live: ``<table without .csv>/`` beside it."""
    return Path(table).with_name(Path(table).stem)


def read_records(folder: str | os.PathLike, report: bool = False) -> list[dict]:
    """Every whole record in ``folder``, in name order; a broken one (truncated, corrupt, named
    as another run, a config that does not read) is left out, and named with ``report``."""
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
    """One row per record: ``model``, ``seed``, the data's, training's and model's settings
    (empty where a model lacks one), the scores and ``device``."""
    rows = []
    for record in records:
        run = record["run"]
        settings = {**run["data"], **run["train"], **_tuples(run["settings"])}
        model_seed = {"model": run["model"], "seed": run["seed"]}
        rows.append({**model_seed, **settings, **record["scores"], "device": record["device"]})
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
    runs, table, checkpoints=None, device=None, progress=True, shard=(0, 1), executor=None
) -> pd.DataFrame:
    """Train every :class:`Run` in ``runs`` with no record yet beside ``table`` (a CSV path),
    writing each record as it finishes and exporting the table; returns the table.
    ``shard=(i, n)``: every n-th run from the i-th. ``executor``
    (``dham_lib.study.executors``): here (default) or on Ray, whose tasks return their
    records to this process, the only writer. ``checkpoints``: a folder for the models.
    Failed runs are named at the end, in a ``RuntimeError``."""
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
    options = {"device": device, "keep_model": checkpoints is not None, "resume_dir": folder}
    outcomes = executor.map(run_remote, todo, names=run_name, **options)
    failed = []
    try:
        for run, outcome in tqdm(outcomes, total=len(todo), desc="sweep", disable=not progress):
            name = run_name(run)
            if isinstance(outcome, Failure):
                failed.append(f"{name}: {outcome.error}")
                tqdm.write(f"{name}: failed, no record: {outcome.error}")
                continue
            model, record = outcome
            scores = record["scores"]
            if checkpoints is not None:
                path = checkpoints / f"{name}.pt"
                save_checkpoint(path, model, data_config=record["run"], metrics=scores)
            write_record(folder / f"{name}.json", record)
            export_table(table)
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


def grid(models, widths, snrs, seeds, **settings) -> list[Run]:
    """Runs over the product of the lists of model names, widths, SNRs and seeds, seed by seed
    (a sweep cut short still covers the grid once); a model without ``width`` ignores widths."""
    models = [_checks.option("model", model, MODELS) for model in models]
    runs = []
    for seed, snr, model in itertools.product(seeds, snrs, models):
        has_width = "width" in _fields(MODELS[model].Config)
        for chosen in [{"width": width} for width in widths] if has_width else [{}]:
            runs.append(make_run(model, seed, snr_db=snr, **settings, **chosen))
    return list(dict.fromkeys(runs))
