"""The command line: ``python -m dham_lib train|sweep|report|export ...`` (``--help`` on each).

Every option is a dataclass field: a setting's is its config's (``runs.DataConfig``,
``runs.TrainConfig``, the models'), so a setting added there appears here and sets the setting
of that name in every config that has it; a command's own are below. ``AXES`` take lists.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import sys
import typing
from pathlib import Path

import torch

import dham_lib
from dham_lib.checkpoints import save_checkpoint
from dham_lib.models import MODELS, build_model
from dham_lib.study import results, runs
from dham_lib.study.executors import EXECUTORS, make_executor

# A sweep's axes: the settings that take a list, under their plural option, and its default.
AXES = {
    "model": ("--models", ["dham"]),
    "width": ("--widths", [2, 4, 8, 16, 32]),
    "snr_db": ("--snr-db", [None, 12.0, 6.0, 3.0, 0.0, -3.0]),
    "seed": ("--seeds", [0, 1]),
}
MODELS_TITLE = "model (each applies to the models that have it)"
FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _typed(expected: str, convert, ok=lambda value: True):
    """An argparse type: ``convert(text)`` if ``ok`` of it, else a usage error."""

    def parse(text: str):
        with contextlib.suppress(ValueError, KeyError):
            if ok(value := convert(text)):
                return value
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")

    return parse


def _number(text: str) -> float:
    value = float(text)
    return int(value) if value.is_integer() else value


def _at_least(minimum: int):
    return _typed(f"an integer >= {minimum}", int, lambda value: value >= minimum)


def _snr(text: str) -> float | None:
    return None if text.lower() in ("clean", "none") else _number(text)


def _shard(text: str) -> tuple[int, int]:
    index, count = map(int, text.split("/"))
    return (index, count) if 0 <= index < count else ()


NUMBER, FLAG = _typed("a number", _number), _typed("true or false", lambda t: FLAGS[t.lower()])
POSITIVE = _typed("a number > 0", _number, lambda value: value > 0)
NON_NEGATIVE = _typed("a number >= 0", _number, lambda value: value >= 0)
SNR = _typed("a finite number of dB, or clean", _snr, lambda v: v is None or math.isfinite(v))


def _own(default, help: str, **keywords):
    """A command's own option: a field whose metadata holds ``add_argument``'s keywords."""
    return dataclasses.field(default=default, metadata={"help": help, **keywords})


@dataclasses.dataclass(frozen=True)
class RunOptions:
    model: str = _own("dham", "model", choices=tuple(MODELS))
    seed: int = _own(0, "initial weights and training canvases", minimum=0)


@dataclasses.dataclass(frozen=True)
class Running:
    device: str | None = _own(None, "cpu, cuda or mps; default: the best found")
    no_progress: bool = _own(False, "hide progress bars", action="store_true", type=None)


@dataclasses.dataclass(frozen=True)
class Cluster:
    executor: str = _own(
        "local",
        "local: one run after the other in this process; ray: each run a task of a Ray cluster",
        choices=EXECUTORS,
    )
    address: str | None = _own(
        None,
        "Ray cluster to join: 'auto' (the one `ray start` started here) or HEAD:6379; "
        "default: $RAY_ADDRESS, else a new cluster on this machine alone",
    )
    num_cpus: float = _own(1, "CPUs per task", type=POSITIVE)
    num_gpus: float = _own(0, "GPUs per task", type=NON_NEGATIVE)
    max_retries: int = _own(
        3, "times Ray reruns a run whose worker died; a run that raises is reported", minimum=0
    )


@dataclasses.dataclass(frozen=True)
class TrainFiles:
    out: str = _own(None, "output folder (created if missing)", required=True)


@dataclasses.dataclass(frozen=True)
class Folder:
    results: str = _own(None, "folder of tables and records, e.g. data/results", flag="results")


@dataclasses.dataclass(frozen=True)
class SweepFiles:
    out: str = _own(None, "the table (CSV); records go beside it", required=True)
    checkpoints: str | None = _own(None, "folder to save each run's model in")
    shard: tuple = _own(
        (0, 1),
        "I/N: run every N-th run from the I-th, so N processes can share one table",
        type=_typed("I/N with 0 <= I < N, such as 0/2", _shard, bool),
    )


def _setting_configs() -> list[tuple[str, type]]:
    """Each setting's config dataclass, after the title of its option group."""
    models = [(MODELS_TITLE, model.Config) for model in MODELS.values()]
    return [("data", runs.DataConfig), ("training", runs.TrainConfig), *models]


def _setting_names() -> set[str]:
    return {field.name for _, config in _setting_configs() for field in dataclasses.fields(config)}


def _type(field: dataclasses.Field, kind) -> dict:
    """``add_argument``'s type (and a tuple's nargs) for a field of type ``kind``."""
    kinds = [each for each in typing.get_args(kind) if each is not type(None)] or [kind]
    at_least = _at_least(field.metadata.get("minimum", 1))
    if typing.get_origin(kind) is tuple:
        return {"type": at_least, "nargs": len(kinds)}
    by_kind = {bool: FLAG, int: at_least, float: NUMBER}
    return {"type": SNR if field.name == "snr_db" else by_kind.get(kinds[0])}


def _option(field: dataclasses.Field, kind, axes: bool, setting: bool) -> tuple[str, dict]:
    """The flag of one field and ``add_argument``'s keywords; a setting not given keeps its
    config's default; with ``axes``, a sweep's axis takes a list."""
    extra = {k: v for k, v in field.metadata.items() if k not in ("help", "minimum", "flag")}
    shown = "clean" if field.name == "snr_db" else field.default
    shown = "none" if shown is None and setting else shown
    help = field.metadata["help"] + ("" if shown is None else f" (default: {shown})")
    default = argparse.SUPPRESS if setting else field.default
    keywords = {**_type(field, kind), "default": default, "help": help, **extra}
    flag = field.metadata.get("flag", "--" + field.name.replace("_", "-"))
    if axes and field.name in AXES:
        (flag, keywords["default"]), keywords["dest"] = AXES[field.name], field.name
        keywords.update(nargs="+", help=help.split(" (default")[0] + " (%(default)s)")
    return flag, {k: v for k, v in keywords.items() if v is not None}


def add_options(parser: argparse.ArgumentParser, configs: list[tuple], axes: bool) -> None:
    """An option per field of each (group title, dataclass) pair in ``configs``, in that
    group (None: none); a name that several configs share is one option."""
    groups, seen, settings = {None: parser}, set(), _setting_names()
    for title, config in configs:
        if title not in groups:
            groups[title] = parser.add_argument_group(title)
        hints = typing.get_type_hints(config)
        for field in (f for f in dataclasses.fields(config) if f.name not in seen):
            seen.add(field.name)
            flag, keywords = _option(field, hints[field.name], axes, field.name in settings)
            groups[title].add_argument(flag, **keywords)


def given_settings(args: argparse.Namespace, leave=()) -> dict:
    """The settings the command line gave, less those named in ``leave``; a list as a tuple."""
    names = _setting_names() - set(leave)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items() if k in names}


def _checked(run_list: list[runs.Run]) -> list[runs.Run]:
    """Build each distinct model once, so that a bad setting fails now, not after hours."""
    for model, settings in {(run.model, run.settings) for run in run_list}:
        build_model(model, **dataclasses.asdict(settings))
    return run_list


def _save_figures(model, history, run: runs.Run, out: Path) -> list[str]:
    """The learning curves and, for a model that looks, its glimpses of 8 test canvases."""
    from dham_lib.study import figures

    held_out = "validation" if run.data.train_split == "train" else "test"
    figures.save(figures.plot_learning_curves(history, held_out), out / "learning_curves.png")
    test_set = runs.make_dataset(run, "test")
    canvases, labels, boxes = test_set.batch(list(range(min(8, len(test_set)))))
    device = next(model.parameters()).device
    with torch.no_grad():
        seen = model(canvases.to(device), true_box=boxes.to(device))
    if seen.boxes is None:
        return ["learning_curves.png"]
    guesses = seen.logits.argmax(dim=1).cpu()
    figure = figures.plot_glimpses(
        canvases, seen.boxes.cpu(), seen.glimpses.cpu(), labels, guesses, true_boxes=boxes
    )
    figures.save(figure, out / "glimpses.png")
    return ["learning_curves.png", "glimpses.png"]


def run_train(args: argparse.Namespace) -> dict:
    """Train one run and write its record, checkpoint and figures.

    Train one run; write record.json, checkpoint.pt and figures into --out."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (run,) = _checked([runs.make_run(args.model, args.seed, **given_settings(args))])
    model, record = runs.train_run(run, device=args.device, progress=not args.no_progress)
    record["checkpoint_sha256"] = save_checkpoint(
        out / "checkpoint.pt", model, data_config=record["run"], metrics=record["scores"]
    )
    record["figures"] = _save_figures(model, record["history"], run, out)
    (out / "record.json").write_text(json.dumps(record, indent=2) + "\n")
    scores = record["scores"]
    print(
        f"{run.model}: test accuracy {scores['test_acc']:.1%}, IoU {scores['iou']:.3f}, "
        f"{scores['train_seconds']:.0f} s training; wrote {out}"
    )
    return record


def run_sweep(args: argparse.Namespace):
    """Train a grid of models x widths x SNRs x seeds, one record per run, resumably.

    Train every run of the grid that has no record yet in the folder beside --out (a CSV
    named after it), then export --out from the records; kill it at any time and run the
    same command to resume."""
    grid = runs.grid(args.model, args.width, args.snr_db, args.seed, **given_settings(args, AXES))
    cluster = {field.name: getattr(args, field.name) for field in dataclasses.fields(Cluster)}
    executor = make_executor(cluster.pop("executor"), **cluster)
    options = {name: getattr(args, name) for name in ("checkpoints", "device", "shard")}
    progress = not args.no_progress
    return runs.sweep(_checked(grid), args.out, progress=progress, executor=executor, **options)


def run_report(args: argparse.Namespace):
    """Summarise result tables: tables, the width verdict, figures.

    Read a folder's clean comparison (clean_validated.csv, else clean.csv) and sweep
    (sweep_validated.csv, else sweep.csv); print Markdown tables, the attention outcomes
    by SNR and width and the found-by-width trend; write figures into its figures/ folder."""
    return results.report(args.results)


def run_export(args: argparse.Namespace) -> list[Path]:
    """Regenerate a folder's tables (CSV) from the records beside them.

    For every folder of records in RESULTS, write the table named after it."""
    folders = filter(Path.is_dir, sorted(Path(args.results).iterdir()))
    tables = [folder.with_suffix(".csv") for folder in folders if any(folder.glob("*.json"))]
    for table in tables:
        print(f"{table.name}: {len(runs.export_table(table))} runs")
    return tables


# Each command: its handler (whose docstring is its help), whether it takes the settings (True:
# a sweep's, its axes lists) and its own options, each dataclass after its group's title.
CLUSTER = "where the runs train (ray: pip install -e '.[cluster]')"
COMMANDS = {
    "train": (run_train, False, [("running", Running), (None, TrainFiles)]),
    "sweep": (run_sweep, True, [("running", Running), (None, SweepFiles), (CLUSTER, Cluster)]),
    "report": (run_report, None, [(None, Folder)]),
    "export": (run_export, None, [(None, Folder)]),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``dham_lib`` argument parser with its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="python -m dham_lib",
        description="Train and evaluate Differentiable Hard Attention models on translated MNIST.",
    )
    parser.add_argument("--version", action="version", version=dham_lib.__version__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (handler, axes, own) in COMMANDS.items():
        summary, description = handler.__doc__.split("\n\n", 1)
        command = commands.add_parser(name, help=summary, description=description)
        command.set_defaults(handler=handler)
        settings = [("run", RunOptions), *_setting_configs()] if axes is not None else []
        add_options(command, [*settings, *own], axes)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m dham_lib`` and the ``dham`` script."""
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, TypeError, RuntimeError, OSError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
