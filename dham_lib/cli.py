"""The command line: ``python -m dham_lib train ...`` (``--help`` on every sub-command).

``train`` builds a translated-MNIST task and a model, trains it, and writes into
its output folder a checkpoint (with its ``.sha256``), ``metrics.json`` (configs,
final scores, history, versions) and figures (learning curves, glimpses).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from pathlib import Path

import torch

import dham_lib
from dham_lib.checkpoints import save_checkpoint
from dham_lib.data import TranslatedMNIST, load_mnist
from dham_lib.models import build_model
from dham_lib.train import choose_device, evaluate, fit, seed_everything

# Every model and seed is scored on the same test canvases.
TEST_SEED = 2018
MODELS = ("dham", "stn", "cnn", "oracle")


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


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that define the data: canvas, noise, background, source, sizes."""
    task = parser.add_argument_group("data")
    task.add_argument("--snr-db", type=_snr, default=None, help="SNR in dB, or 'clean' (default)")
    task.add_argument("--background", choices=("noise", "clutter"), default="noise")
    task.add_argument("--canvas", type=_positive_int, default=120, help="canvas side in pixels")
    task.add_argument(
        "--source",
        choices=("bundled", "full", "auto"),
        default="bundled",
        help="MNIST digits: the bundled 4,000/1,000 split (default), the full 70k, or auto",
    )
    task.add_argument("--train-size", type=_positive_int, help="use only the first N train digits")
    task.add_argument("--test-size", type=_positive_int, help="use only the first N test digits")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that define the model."""
    model = parser.add_argument_group("model")
    model.add_argument("--model", choices=MODELS, default="dham")
    model.add_argument("--width", type=_positive_int, default=16, help="attention conv channels")
    model.add_argument("--k", type=_positive_int, default=1, help="attention channels (glimpses)")
    model.add_argument("--stride", type=_positive_int, default=1, help="attention map stride")
    model.add_argument("--norm", type=int, choices=(1, 2), default=2, help="scale: L1 or L2")
    model.add_argument("--temperature", type=float, default=1.0, help="softmax temperature")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the optimisation."""
    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=_positive_int, default=5)
    training.add_argument("--batch-size", type=_positive_int, default=64)
    training.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    training.add_argument("--seed", type=int, default=0, help="seeds the model and train canvases")
    training.add_argument("--device", default=None, help="cpu, cuda or mps (default: best found)")
    training.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def model_config(args: argparse.Namespace) -> dict:
    """Constructor arguments of the chosen model, from the parsed options."""
    if args.model == "dham":
        return {
            "width": args.width,
            "k": args.k,
            "stride": args.stride,
            "norm": args.norm,
            "temperature": args.temperature,
        }
    if args.model == "stn":
        return {"canvas": args.canvas}
    return {}


def data_config(args: argparse.Namespace) -> dict:
    """The data set's definition, as stored with the checkpoint and the metrics."""
    return {
        "source": args.source,
        "canvas": args.canvas,
        "snr_db": args.snr_db,
        "background": args.background,
        "train_seed": args.seed,
        "test_seed": TEST_SEED,
        "train_size": args.train_size,
        "test_size": args.test_size,
    }


def make_datasets(config: dict) -> tuple[TranslatedMNIST, TranslatedMNIST]:
    """Train and test sets of the task that ``data_config`` describes."""
    sets = []
    for split, seed, size in (
        ("train", config["train_seed"], config["train_size"]),
        ("test", config["test_seed"], config["test_size"]),
    ):
        images, labels = load_mnist(split, source=config["source"])
        sets.append(
            TranslatedMNIST(
                images[:size],
                labels[:size],
                canvas=config["canvas"],
                snr_db=config["snr_db"],
                background=config["background"],
                seed=seed,
            )
        )
    return sets[0], sets[1]


def _save_figures(model, history, test_set, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dham_lib.viz import plot_glimpses, plot_learning_curves

    written = []
    figure = plot_learning_curves(history)
    figure.savefig(out / "learning_curves.png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    written.append("learning_curves.png")
    canvases, labels, true_boxes = test_set.batch(list(range(min(8, len(test_set)))))
    device = next(model.parameters()).device
    with torch.no_grad():
        prediction = model(canvases.to(device), true_box=true_boxes.to(device))
    if prediction.boxes is not None:
        figure = plot_glimpses(
            canvases,
            prediction.boxes.cpu(),
            prediction.glimpses.cpu(),
            labels=labels,
            predictions=prediction.logits.argmax(dim=1).cpu(),
            true_boxes=true_boxes,
        )
        figure.savefig(out / "glimpses.png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append("glimpses.png")
    return written


def run_train(args: argparse.Namespace) -> dict:
    """Train one model as the options say and write its files; returns the metrics record."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = data_config(args)
    train_set, test_set = make_datasets(data)
    seed_everything(args.seed)  # before building: the initial weights are drawn here
    model = build_model(args.model, **model_config(args))
    history = fit(
        model,
        train_set,
        test_set,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )
    final = evaluate(model, test_set)
    record = {
        "model_config": model.config,
        "data_config": data,
        "training": {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size},
        "test": final,
        "train_seconds": history["seconds"][-1],
        "history": history,
        "versions": {
            "dham_lib": dham_lib.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "device": str(choose_device(args.device)),
    }
    sha = save_checkpoint(out / "checkpoint.pt", model, data_config=data, metrics=final)
    record["checkpoint_sha256"] = sha
    record["figures"] = _save_figures(model, history, test_set, out)
    (out / "metrics.json").write_text(json.dumps(record, indent=2, allow_nan=True) + "\n")
    print(
        f"{args.model}: test accuracy {final['acc']:.1%}, IoU {final['iou']:.3f}, "
        f"{record['train_seconds']:.0f} s training; wrote {out}"
    )
    return record


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
    add_model_arguments(train)
    add_task_arguments(train)
    add_training_arguments(train)
    train.add_argument("--out", required=True, help="output folder (created if missing)")
    train.set_defaults(handler=run_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m dham_lib`` and the ``dham`` script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, TypeError, RuntimeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
