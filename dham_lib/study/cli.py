"""The command line: ``python -m dham_lib train|sweep ...`` (``--help`` on each).

``train`` trains one model on translated MNIST and writes into its output folder
a checkpoint (with its ``.sha256``), ``metrics.json`` (the run, final scores,
history, versions) and figures (learning curves, glimpses). ``sweep`` trains a
grid of runs into a results CSV, skipping the rows it already holds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
from pathlib import Path

import torch

import dham_lib
from dham_lib.checkpoints import save_checkpoint
from dham_lib.data import SOURCES
from dham_lib.models import CLASSIFIERS, MODELS
from dham_lib.study import results
from dham_lib.study.executors import EXECUTORS, make_executor
from dham_lib.study.experiments import (
    RESULT_COLUMNS,
    TRAIN_SPLITS,
    Cell,
    grid,
    make_dataset,
    sweep,
    train_cell,
)
from dham_lib.train import choose_device

# Every default of the command line is the recipe's, so `train` and `Cell()` agree; a noisy
# cell, because a clean one has no curriculum.
RECIPE = Cell(snr_db=0.0)


def _snr(text: str) -> float | None:
    """``--snr-db`` accepts a number of dB, or ``clean`` for no noise."""
    if text.lower() in ("clean", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of dB or 'clean', got {text!r}"
        ) from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number of dB, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _number(minimum: float, strict: bool):
    """A type for a number > ``minimum`` (``strict``) or >= it."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(
                f"expected a number {'>' if strict else '>='} {minimum:g}, got {text!r}"
            )
        return int(value) if value.is_integer() else value

    return parse


def _flag(text: str) -> bool:
    """``true``/``false`` (or ``1``/``0``, ``yes``/``no``), any case."""
    value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    try:
        return value[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}") from None


def _shard(text: str) -> tuple[int, int]:
    """``--shard I/N`` with 0 <= I < N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N such as 0/2, got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"expected 0 <= I < N, got {text!r}")
    return index, count


# The recipe's options, by group: (Cell field, type, help, choices). Defaults are the recipe's.
RECIPE_OPTIONS = {
    "data": (
        ("background", str, "canvas background", ("noise", "clutter")),
        ("canvas", _positive_int, "canvas side in pixels; digits stay 29-48 px", None),
        ("source", str, "MNIST digits: the bundled split, the full 70k, or auto", SOURCES),
        ("train_size", _positive_int, "use only the first N training digits", None),
        ("test_size", _positive_int, "use only the first N validation and test digits", None),
        (
            "train_split",
            str,
            "train on the digits without the validation ones, or on all",
            TRAIN_SPLITS,
        ),
    ),
    "attention (DHAM only, but --attention-lr and --start-scale: STN)": (
        ("k", _positive_int, "glimpses per canvas", None),
        ("stride", _positive_int, "attention map stride", None),
        ("norm", int, "scale: L1 or L2", (1, 2)),
        ("temperature", float, "softmax temperature", None),
        ("classifier", str, "glimpse classifier (DHAM, STN, oracle)", tuple(CLASSIFIERS)),
        ("attention_init", str, "first attention layer's start", ("torch", "ink")),
        ("attention_slope", float, "negative slope of the attention net's leaky ReLU", None),
        ("attention_depth", _positive_int, "the attention net's convolutions", None),
        ("attention_lr", float, "learning rate of the network that decides where to look", None),
        (
            "start_scale",
            float,
            "the STNs' first glimpse, a share of the canvas (1: identity)",
            None,
        ),
    ),
    "pooled CNN": (("batch_norm", _flag, "a BatchNorm after each convolution", None),),
    "training": (
        ("epochs", _positive_int, "passes over the training digits", None),
        ("batch_size", _positive_int, "canvases per step", None),
        ("lr", float, "Adam learning rate", None),
        (
            "curriculum",
            int,
            "epochs over which noisy training canvases go from 12 dB to "
            "--snr-db (0: at --snr-db from the start)",
            None,
        ),
        (
            "canvas_curriculum",
            int,
            "epochs over which training canvases grow from --canvas-curriculum-start "
            "to --canvas (0: at --canvas)",
            None,
        ),
        (
            "canvas_curriculum_start",
            _positive_int,
            "the side in px of a canvas curriculum's first epoch",
            None,
        ),
    ),
}


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that ``train`` and ``sweep`` share: the data, attention and training."""
    for title, options in RECIPE_OPTIONS.items():
        group = parser.add_argument_group(title)
        for name, kind, text, choices in options:
            flag = "--" + name.replace("_", "-")
            default = getattr(RECIPE, name)
            group.add_argument(
                flag, type=kind, choices=choices, default=default, help=f"{text} (%(default)s)"
            )
    run = parser.add_argument_group("running")
    run.add_argument("--device", default=None, help="cpu, cuda or mps (default: best found)")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _recipe(args: argparse.Namespace) -> dict:
    """The Cell fields that ``train`` and ``sweep`` share: everything but the grid axes."""
    return {
        name: getattr(args, name) for options in RECIPE_OPTIONS.values() for name, *_ in options
    }


def cell_from(args: argparse.Namespace) -> Cell:
    """The training run that the ``train`` options describe."""
    return Cell(
        model=args.model, width=args.width, snr_db=args.snr_db, seed=args.seed, **_recipe(args)
    )


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
    """Train one model as the options say and write its files; returns the metrics record."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cell = cell_from(args)
    model, history, row = train_cell(cell, device=args.device, progress=not args.no_progress)
    record = {
        "cell": dataclasses.asdict(cell),
        "model_config": model.config,
        "test": {k: row[k] for k in RESULT_COLUMNS},
        "history": history,
        "versions": {
            "dham_lib": dham_lib.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "device": str(choose_device(args.device)),
    }
    record["checkpoint_sha256"] = save_checkpoint(
        out / "checkpoint.pt", model, data_config=dataclasses.asdict(cell), metrics=record["test"]
    )
    record["figures"] = _save_figures(model, history, make_dataset(cell, "test"), out)
    (out / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    print(
        f"{args.model}: test accuracy {row['test_acc']:.1%}, IoU {row['iou']:.3f}, "
        f"{row['train_seconds']:.0f} s training; wrote {out}"
    )
    return record


def run_sweep(args: argparse.Namespace) -> list:
    """Run the grid of cells that the options describe, resumably."""
    cells = grid(args.models, args.widths, args.snr_db, args.seeds, **_recipe(args))
    executor = make_executor(
        args.executor,
        address=args.address,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        max_retries=args.max_retries,
    )
    return sweep(
        cells,
        args.out,
        checkpoints=args.checkpoints,
        device=args.device,
        progress=not args.no_progress,
        shard=args.shard,
        executor=executor,
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``dham_lib`` argument parser with its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="python -m dham_lib",
        description="Train and evaluate Differentiable Hard Attention models on translated MNIST.",
    )
    parser.add_argument("--version", action="version", version=dham_lib.__version__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser(
        "train",
        help="train one model and write its checkpoint, metrics and figures",
        description="Train one model on translated MNIST; write checkpoint.pt, metrics.json "
        "and figures into --out.",
    )
    model = train.add_argument_group("the run")
    model.add_argument("--model", choices=tuple(MODELS), default="dham")
    model.add_argument(
        "--width", type=_positive_int, default=RECIPE.width, help="attention conv channels"
    )
    model.add_argument("--snr-db", type=_snr, default=None, help="SNR in dB, or 'clean' (default)")
    model.add_argument("--seed", type=int, default=0, help="seeds the model and train canvases")
    add_recipe_arguments(train)
    train.add_argument("--out", required=True, help="output folder (created if missing)")
    train.set_defaults(handler=run_train)

    sweep_parser = commands.add_parser(
        "sweep",
        help="train a grid of models x widths x SNRs x seeds into a results CSV, resumably",
        description="Train every cell of the grid that is not yet in --out (a CSV), appending "
        "one row per finished cell; kill it at any time and run the same command to resume.",
    )
    grid_options = sweep_parser.add_argument_group("grid")
    grid_options.add_argument("--models", nargs="+", choices=tuple(MODELS), default=["dham"])
    grid_options.add_argument("--widths", nargs="+", type=_positive_int, default=[2, 4, 8, 16, 32])
    grid_options.add_argument(
        "--snr-db",
        nargs="+",
        type=_snr,
        default=[None, 12.0, 6.0, 3.0, 0.0, -3.0],
        help="SNRs in dB; 'clean' for no noise",
    )
    grid_options.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    add_recipe_arguments(sweep_parser)
    sweep_parser.add_argument("--out", required=True, help="results CSV (created or extended)")
    sweep_parser.add_argument("--checkpoints", help="folder to save each cell's model in")
    sweep_parser.add_argument(
        "--shard",
        type=_shard,
        default=(0, 1),
        help="I/N: run every N-th cell from the I-th, so N processes can share one CSV",
    )
    cluster = sweep_parser.add_argument_group(
        "where the cells run (ray: pip install -e '.[cluster]' first)"
    )
    cluster.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: one cell after the other in this process; ray: each cell a task of a "
        "Ray cluster (%(default)s)",
    )
    cluster.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join: 'auto' (the one `ray start` started on this machine) or "
        "HEAD:6379; default: $RAY_ADDRESS, else a new cluster on this machine alone",
    )
    cluster.add_argument(
        "--num-cpus", type=_number(0, True), default=1, help="CPUs per Ray task (%(default)s)"
    )
    cluster.add_argument(
        "--num-gpus",
        type=_number(0, False),
        default=0,
        help="GPUs per Ray task; a task with one trains on CUDA (%(default)s)",
    )
    cluster.add_argument(
        "--max-retries",
        type=_number(0, False),
        default=3,
        help="times Ray reruns a cell whose worker died; a cell that raises is reported, "
        "not retried (%(default)s)",
    )
    sweep_parser.set_defaults(handler=run_sweep)

    report = commands.add_parser(
        "report",
        help="summarise result CSVs: tables, the width verdict, heat maps",
        description="Read a folder's clean comparison (clean_validated.csv, else clean.csv) "
        "and sweep (sweep_validated.csv, else sweep.csv); print Markdown tables, the narrowest "
        "width per SNR and the lock-on test; write figures into its figures/ folder.",
    )
    report.add_argument("results", help="folder holding a clean comparison and/or a sweep")
    report.set_defaults(handler=lambda args: results.report(args.results))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m dham_lib`` and the ``dham`` script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, TypeError, RuntimeError, OSError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
