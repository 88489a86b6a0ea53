"""The command line: ``python -m dham_lib train|sweep|report|export ...`` (``--help`` on each).

Every setting's option is generated from its config dataclass (type, default, help, choices:
the model configs, ``runs.DataConfig``, ``runs.TrainConfig``), so a new setting appears here
by being added there; an option sets the setting of that name in every config that has it.
A sweep's axes (models, widths, SNRs, seeds) take lists.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import typing
from pathlib import Path

import torch

import dham_lib
from dham_lib.checkpoints import save_checkpoint
from dham_lib.models import MODELS, build_model, list_models
from dham_lib.study import results, runs
from dham_lib.study.executors import EXECUTORS, make_executor

# A sweep's axes: the settings that take a list, under their plural option.
AXES = {"model": "--models", "width": "--widths", "snr_db": "--snr-db", "seed": "--seeds"}
AXIS_DEFAULTS = {
    "model": ["dham"],
    "width": [2, 4, 8, 16, 32],
    "snr_db": [None, 12.0, 6.0, 3.0, 0.0, -3.0],
    "seed": [0, 1],
}


def _snr(text: str) -> float | None:
    """An SNR: a finite number of dB, or ``clean`` (``none``) for no noise."""
    if text.lower() in ("clean", "none"):
        return None
    value = _number(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number of dB, got {text!r}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    return int(value) if value.is_integer() else value


def _at_least(minimum: int, convert=int, strict: bool = False):
    """A type for an int (or, with ``convert=_number``, a number) >= ``minimum`` (> if
    ``strict``)."""

    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum or (strict and value == minimum):
            kind, sign = "an integer" if convert is int else "a number", ">" if strict else ">="
            raise argparse.ArgumentTypeError(f"expected {kind} {sign} {minimum}, got {text!r}")
        return value

    return parse


def _flag(text: str) -> bool:
    """``true``/``false`` (or ``1``/``0``, ``yes``/``no``), any case."""
    words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    if text.lower() not in words:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return words[text.lower()]


def _shard(text: str) -> tuple[int, int]:
    """``--shard I/N`` with 0 <= I < N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N such as 0/2, got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"expected 0 <= I < N, got {text!r}")
    return index, count


def setting_fields() -> dict[str, tuple[dataclasses.Field, object]]:
    """Every setting's field and type, by name, first seen first: the data's, the training's,
    then each model's (a name that several configs share is one option)."""
    configs = [runs.DataConfig, runs.TrainConfig, *(model.Config for model in MODELS.values())]
    fields = {}
    for config in configs:
        hints = typing.get_type_hints(config)
        for field in dataclasses.fields(config):
            fields.setdefault(field.name, (field, hints[field.name]))
    return fields


def _option(name: str, field: dataclasses.Field, kind) -> dict:
    """``add_argument``'s keywords for one setting, from its field and type."""
    choices = field.metadata.get("choices")
    base = {a for a in typing.get_args(kind) if a is not type(None)} or {kind}
    shown = field.default if field.default is not None else "none"
    keywords = {"help": f"{field.metadata.get('help', name)} (default: {shown})"}
    if name == "snr_db":
        keywords.update(type=_snr, help=f"{field.metadata['help']} (default: clean)")
    elif base == {bool}:
        keywords["type"] = _flag
    elif base == {int}:
        keywords["type"] = _at_least(field.metadata.get("minimum", 1))
    elif base == {float}:
        keywords["type"] = _number
    elif typing.get_origin(kind) is tuple:
        keywords.update(type=_at_least(1), nargs=len(typing.get_args(kind)))
    if choices is not None:
        keywords["choices"] = choices
    return keywords


def _add(group, name: str, keywords: dict, axes: bool, default=argparse.SUPPRESS) -> None:
    """The option of setting ``name``; with ``axes``, a sweep's axis takes a list."""
    if axes and name in AXES:
        keywords["help"] = keywords["help"].split(" (default")[0] + " (%(default)s)"
        group.add_argument(
            AXES[name], dest=name, nargs="+", default=AXIS_DEFAULTS[name], **keywords
        )
    else:
        group.add_argument("--" + name.replace("_", "-"), dest=name, default=default, **keywords)


def add_setting_options(parser: argparse.ArgumentParser, axes: bool) -> None:
    """An option per setting, in groups; with ``axes``, a sweep's axes take lists."""
    # The run's model and seed are no config's field.
    run = parser.add_argument_group("run")
    _add(run, "model", {"choices": list_models(), "help": "model (default: dham)"}, axes, "dham")
    seed = {"type": _at_least(0), "help": "initial weights and training canvases (default: 0)"}
    _add(run, "seed", seed, axes, 0)
    groups = {
        "data": parser.add_argument_group("data"),
        "training": parser.add_argument_group("training"),
        "model": parser.add_argument_group("model (each applies to the models that have it)"),
    }
    data, train = set(runs._fields(runs.DataConfig)), set(runs._fields(runs.TrainConfig))
    for name, (field, kind) in setting_fields().items():
        group = groups["data" if name in data else "training" if name in train else "model"]
        _add(group, name, _option(name, field, kind), axes)
    running = parser.add_argument_group("running")
    running.add_argument("--device", default=None, help="cpu, cuda or mps (default: best found)")
    running.add_argument("--no-progress", action="store_true", help="hide progress bars")


def given_settings(args: argparse.Namespace, leave=()) -> dict:
    """The settings the command line gave (every option not given keeps its config's
    default), without the names in ``leave``."""
    names = set(setting_fields())
    return {k: v for k, v in vars(args).items() if k in names and k not in leave}


def _checked(run_list: list[runs.Run]) -> list[runs.Run]:
    """Build each distinct model once, so that a bad setting fails now, not after hours."""
    for model, settings in {(r.model, r.settings) for r in run_list}:
        build_model(model, **dataclasses.asdict(settings))
    return run_list


def _save_figures(model, history, test_set, out: Path) -> list[str]:
    from dham_lib.study import figures

    figures.save(figures.plot_learning_curves(history), out / "learning_curves.png")
    written = ["learning_curves.png"]
    canvases, labels, true_boxes = test_set.batch(list(range(min(8, len(test_set)))))
    device = next(model.parameters()).device
    with torch.no_grad():
        prediction = model(canvases.to(device), true_box=true_boxes.to(device))
    if prediction.boxes is not None:
        figure = figures.plot_glimpses(
            canvases,
            prediction.boxes.cpu(),
            prediction.glimpses.cpu(),
            labels=labels,
            predictions=prediction.logits.argmax(dim=1).cpu(),
            true_boxes=true_boxes,
        )
        figures.save(figure, out / "glimpses.png")
        written.append("glimpses.png")
    return written


def run_train(args: argparse.Namespace) -> dict:
    """Train one run as the options say and write its files; returns its record."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = runs.make_run(args.model, args.seed, **given_settings(args, ("model", "seed")))
    (run,) = _checked([run])
    model, record = runs.train_run(run, device=args.device, progress=not args.no_progress)
    record["checkpoint_sha256"] = save_checkpoint(
        out / "checkpoint.pt", model, data_config=record["run"], metrics=record["scores"]
    )
    record["figures"] = _save_figures(model, record["history"], runs.make_dataset(run, "test"), out)
    (out / "record.json").write_text(json.dumps(record, indent=2) + "\n")
    scores = record["scores"]
    print(
        f"{run.model}: test accuracy {scores['test_acc']:.1%}, IoU {scores['iou']:.3f}, "
        f"{scores['train_seconds']:.0f} s training; wrote {out}"
    )
    return record


def run_sweep(args: argparse.Namespace):
    """Train the grid of runs that the options describe, resumably."""
    settings = given_settings(args, tuple(AXES))
    grid = _checked(runs.grid(args.model, args.width, args.snr_db, args.seed, **settings))
    cluster = {name: getattr(args, name) for name in ("address", "num_cpus", "num_gpus")}
    executor = make_executor(args.executor, max_retries=args.max_retries, **cluster)
    return runs.sweep(
        grid,
        args.out,
        checkpoints=args.checkpoints,
        device=args.device,
        progress=not args.no_progress,
        shard=args.shard,
        executor=executor,
    )


def run_export(args: argparse.Namespace) -> list[Path]:
    """Regenerate every table of a folder whose records are beside it."""
    written = []
    for folder in sorted(p for p in Path(args.results).iterdir() if p.is_dir()):
        if any(folder.glob("*.json")):
            table = folder.with_suffix(".csv")
            print(f"{table.name}: {len(runs.export_table(table))} runs")
            written.append(table)
    return written


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """Where a sweep's runs train: here, or as the tasks of a Ray cluster."""
    cluster = parser.add_argument_group("where the runs train (ray: pip install -e '.[cluster]')")
    add = cluster.add_argument
    add(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: one run after the other "
        "in this process; ray: each run a task of a Ray cluster (%(default)s)",
    )
    add(
        "--address",
        help="Ray cluster to join: 'auto' (the one `ray start` started here) or "
        "HEAD:6379; default: $RAY_ADDRESS, else a new cluster on this machine alone",
    )
    add("--num-cpus", type=_at_least(0, _number, strict=True), default=1, help="CPUs per task (1)")
    add("--num-gpus", type=_at_least(0, _number), default=0, help="GPUs per task (0)")
    add(
        "--max-retries",
        type=_at_least(0),
        default=3,
        help="times Ray reruns a run whose worker died; a run that raises is reported (3)",
    )


# Each sub-command's one-line help and its description.
COMMANDS = {
    "train": (
        "train one run and write its record, checkpoint and figures",
        "Train one run; write record.json, checkpoint.pt and figures into --out.",
    ),
    "sweep": (
        "train a grid of models x widths x SNRs x seeds, one record per run, resumably",
        "Train every run of the grid that has no record yet in the folder beside --out (a CSV "
        "named after it), then export --out from the records; kill it at any time and run the "
        "same command to resume.",
    ),
    "report": (
        "summarise result tables: tables, the width verdict, heat maps",
        "Read a folder's clean comparison (clean_validated.csv, else clean.csv) and sweep "
        "(sweep_validated.csv, else sweep.csv); print Markdown tables, the narrowest width per "
        "SNR and the lock-on test; write figures into its figures/ folder.",
    ),
    "export": (
        "regenerate a folder's tables (CSV) from the records beside them",
        "For every folder of records in RESULTS, write the table named after it.",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``dham_lib`` argument parser with its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="python -m dham_lib",
        description="Train and evaluate Differentiable Hard Attention models on translated MNIST.",
    )
    parser.add_argument("--version", action="version", version=dham_lib.__version__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train, sweep, report, export = (
        commands.add_parser(name, help=summary, description=description)
        for name, (summary, description) in COMMANDS.items()
    )
    add_setting_options(train, axes=False)
    train.add_argument("--out", required=True, help="output folder (created if missing)")
    train.set_defaults(handler=run_train)

    add_setting_options(sweep, axes=True)
    sweep.add_argument("--out", required=True, help="the table (CSV); records go beside it")
    sweep.add_argument("--checkpoints", help="folder to save each run's model in")
    sweep.add_argument(
        "--shard",
        type=_shard,
        default=(0, 1),
        help="I/N: run every N-th run from the I-th, so N processes can share one table",
    )
    _add_cluster_options(sweep)
    sweep.set_defaults(handler=run_sweep)

    report.add_argument("results", help="folder holding a clean comparison and/or a sweep")
    report.set_defaults(handler=lambda args: results.report(args.results))

    export.add_argument("results", help="folder of tables and their records, e.g. data/results")
    export.set_defaults(handler=run_export)
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
