"""Benchmarks of the DHAM course library: one script, one run, ratios measured side by side.

Run from the repository root::

    .venv/bin/python benchmarks/bench.py                  # everything (several minutes)
    .venv/bin/python benchmarks/bench.py --skip-training  # without the time-to-90% runs
    .venv/bin/python benchmarks/bench.py --quick          # smoke run: seconds, numbers meaningless

It prints the machine, a table, and then one ``key=value`` line per number (``KEYS``;
benchmarks/README.md says what each measures). Timings are ``torch.utils.benchmark``
measurements on the CPU in float32, at torch's default thread count. Every ratio is
taken between timings made in the same process, interleaved round by round, so that a
change in the machine's load during the run affects both sides alike. The reference
implementations that DHAM is timed against live in ``tests/reference.py``, where the
tests check them against ``dham_lib.dham.DHAM``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.benchmark import Measurement, Timer

from dham_lib.data import TranslatedMNIST, load_mnist
from dham_lib.dham import DHAM
from dham_lib.models import MODELS, build_model
from dham_lib.train import EpochEnd, fit, seed_everything, train_step

# The reference implementations are shared with the tests, in the tests package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.reference import forward_backward, loop_reference, reference_2018  # noqa: E402

# Every key the script prints as key=value, in order: key -> (the part that measures it,
# unit, note for the table). A part that is skipped prints nan for its keys.
KEYS = {
    "cpu_count": ("machine", "", ""),
    "torch_threads": ("machine", "", ""),
    "load_1min_start": ("machine", "", ""),
    "layer_ms_dham": ("layer", "ms", "DHAM forward+backward"),
    "layer_ms_loop_rows": ("layer", "ms", "per-sample loop, gather per output row"),
    "layer_ms_loop_2018": ("layer", "ms", "2018 layout: batched moments, gather per sample"),
    "layer_speedup": ("layer", "x", "target >= 20"),
    "layer_speedup_vs_2018_structure": ("layer", "x", "stronger baseline; < 1: DHAM is slower"),
    "layer_max_abs_diff": ("layer", "", "glimpses, references vs DHAM (checked before timing)"),
    "dham_default_stride": ("steps", "", ""),
    "step_ms_dham_stride1": ("steps", "ms", ""),
    "step_ms_dham_stride2": ("steps", "ms", ""),
    "step_ms_stn": ("steps", "ms", ""),
    "step_ms_pooled_cnn": ("steps", "ms", "translation-invariant CNN, width 16, BatchNorm"),
    "step_ratio_stn": ("steps", "x", "DHAM default stride / STN, target <= 1"),
    "step_ratio_pooled_cnn": ("steps", "x", "DHAM default stride / CNN"),
    "step_ratio_stn_stride2": ("steps", "x", "DHAM stride 2 / STN, target <= 1"),
    "step_ratio_pooled_cnn_stride2": ("steps", "x", "DHAM stride 2 / CNN"),
    "canvases_per_s": ("canvases", "1/s", "target >= 5000"),
    "reseed_ms": ("canvases", "ms", ""),
    "seconds_to_90": ("training", "s", "DHAM stride 2, clean, bundled, 90% on validation"),
    "epochs_to_90": ("training", "", ""),
    "best_val_acc": ("training", "", ""),
    "seconds_to_90_pooled_cnn": ("training", "s", "translation-invariant CNN, clean, bundled"),
    "epochs_to_90_pooled_cnn": ("training", "", ""),
    "best_val_acc_pooled_cnn": ("training", "", ""),
    "peak_rss_mb": ("training", "MiB", "DHAM training child"),
    "peak_rss_mb_pooled_cnn": ("training", "MiB", "CNN training child"),
    "bench_peak_rss_mb": ("end", "MiB", "this benchmark process"),
    "load_1min_end": ("end", "", ""),
}
TRAINING_KEYS = tuple(key for key, (part, _, _) in KEYS.items() if part == "training")
# The two models that the time to 90% compares, each with the recipe the course trains it
# with (data/results/README.md), as dham_lib.study.runs.make_run's settings; the CNN's
# BatchNorm and lr 3e-3 were chosen on validation (data/results/pilot_pooled_cnn.csv).
RECIPES = {
    "dham": {"width": 16, "stride": 2},
    "pooled_cnn": {"width": 16, "batch_norm": True, "lr": 3e-3},
}
RESULT_PREFIX = "BENCH_WORKER_RESULT "


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes and timing effort of one run; ``quick()`` shrinks them for the smoke test."""

    layer_batch: int = 64
    step_batch: int = 64
    canvas_items: int = 4000
    rounds: int = 5
    seconds_per_round: float = 0.5  # each contender's timed time in one round
    max_epochs: int = 15
    training: bool = True

    @classmethod
    def quick(cls) -> Settings:
        """One short round of everything, on tiny batches, without training."""
        return cls(
            layer_batch=4,
            step_batch=8,
            canvas_items=256,
            rounds=1,
            seconds_per_round=1e-3,
            training=False,
        )


def benchmark_inputs(batch: int, side: int = 120, seed: int = 0):
    """A canvas batch ``[B, 1, side, side]`` and attention logits ``[B, 1, side, side]``.

    The logits are a Gaussian bump at a random centre with a random width plus
    noise, so the glimpses land anywhere, some of them over the border.
    """
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 1, side, side, generator=generator)
    axis = torch.linspace(-1.0, 1.0, side)
    centre = torch.rand(batch, 2, generator=generator) * 2.2 - 1.1
    width = 0.05 + 0.4 * torch.rand(batch, generator=generator)
    dx2 = (axis[None, None, :] - centre[:, 0, None, None]) ** 2
    dy2 = (axis[None, :, None] - centre[:, 1, None, None]) ** 2
    bump = -(dx2 + dy2) / (2 * width[:, None, None] ** 2)
    noise = 0.5 * torch.randn(batch, side, side, generator=generator)
    logits = (bump.clamp(min=-30) + noise)[:, None]
    return image, logits


def interleaved(
    contenders: dict[str, Callable[[], object]], rounds: int, seconds: float
) -> dict[str, Measurement]:
    """Time each contender once per round, in an order that rotates from round to round.

    Each timing is a ``Timer.blocked_autorange`` of at least ``seconds``, at torch's
    default thread count (``Timer`` would set 1): the Timer warms the code up while it
    chooses how many calls make one block. A contender's rounds merge into one
    ``Measurement`` of per-call times.
    """
    timers = {
        name: Timer("run()", globals={"run": run}, label=name, num_threads=torch.get_num_threads())
        for name, run in contenders.items()
    }
    measured: dict[str, list[Measurement]] = {name: [] for name in contenders}
    order = list(contenders)
    for round_ in range(rounds):
        shift = round_ % len(order)
        for name in order[shift:] + order[:shift]:
            measured[name].append(timers[name].blocked_autorange(min_run_time=seconds))
    return {name: Measurement.merge(runs)[0] for name, runs in measured.items()}


def _spread(measurement: Measurement) -> str:
    """How many per-call times a measurement holds and their range in ms."""
    times = measurement.times
    return f"n={len(times)}, {1000 * min(times):.4g}..{1000 * max(times):.4g}"


def _peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """``ru_maxrss`` in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(who).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _load() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (math.nan, math.nan, math.nan)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_layer(cfg: Settings, results: dict, notes: dict) -> None:
    """DHAM forward+backward against the two loop references, verified equal first."""
    image, logits = benchmark_inputs(cfg.layer_batch)
    upstream = torch.randn(cfg.layer_batch, 1, 1, 28, 28, generator=torch.Generator())
    dham = DHAM(output_size=(28, 28))
    layers = {
        "dham": lambda im, lg: dham(im, lg)[0],
        "loop_rows": loop_reference,
        "loop_2018": reference_2018,
    }
    # Same glimpses and the same gradient, or the comparison means nothing.
    want, want_grad = forward_backward(layers["dham"], image, logits, upstream)
    worst = 0.0
    for name in ("loop_rows", "loop_2018"):
        got, got_grad = forward_backward(layers[name], image, logits, upstream)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=f"{name} glimpses")
        scale = want_grad.abs().max().item()
        torch.testing.assert_close(
            got_grad, want_grad, rtol=1e-3, atol=1e-4 * scale, msg=f"{name} gradient"
        )
        worst = max(worst, (got - want).abs().max().item())
    results["layer_max_abs_diff"] = worst

    timed = interleaved(
        {
            name: lambda layer=layer: forward_backward(layer, image, logits, upstream)
            for name, layer in layers.items()
        },
        cfg.rounds,
        cfg.seconds_per_round,
    )
    for name, measurement in timed.items():
        results[f"layer_ms_{name}"] = 1000 * measurement.median
        notes[f"layer_ms_{name}"] = _spread(measurement)
    results["layer_speedup"] = results["layer_ms_loop_rows"] / results["layer_ms_dham"]
    results["layer_speedup_vs_2018_structure"] = (
        results["layer_ms_loop_2018"] / results["layer_ms_dham"]
    )


def bench_steps(cfg: Settings, results: dict, notes: dict) -> None:
    """One Adam training step (``dham_lib.train.train_step``: forward, cross-entropy,
    backward, step) of each model on the same batch, interleaved round by round."""
    images, labels = load_mnist("train", source="bundled", verbose=False)
    data = TranslatedMNIST(images[: cfg.step_batch], labels[: cfg.step_batch], snr_db=6, seed=0)
    canvases, targets, _ = data.batch(range(cfg.step_batch))
    specs = {
        "dham_stride1": ("dham", {"width": 16, "stride": 1}),
        "dham_stride2": ("dham", {"width": 16, "stride": 2}),
        "stn": ("stn", {}),
        "pooled_cnn": ("pooled_cnn", {"width": 16, "batch_norm": True}),
    }
    results["dham_default_stride"] = build_model("dham", width=16).attention.stride
    steps = {}
    for name, (model_name, kwargs) in specs.items():
        torch.manual_seed(0)
        model = build_model(model_name, **kwargs).train()
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        steps[name] = lambda m=model, o=optimiser: train_step(m, o, canvases, targets)
    for name, measurement in interleaved(steps, cfg.rounds, cfg.seconds_per_round).items():
        results[f"step_ms_{name}"] = 1000 * measurement.median
        notes[f"step_ms_{name}"] = _spread(measurement)
    default = f"dham_stride{results['dham_default_stride']}"
    for base in ("stn", "pooled_cnn"):
        results[f"step_ratio_{base}"] = results[f"step_ms_{default}"] / results[f"step_ms_{base}"]
        results[f"step_ratio_{base}_stride2"] = (
            results["step_ms_dham_stride2"] / results[f"step_ms_{base}"]
        )


def bench_canvases(cfg: Settings, results: dict, notes: dict) -> None:
    """``TranslatedMNIST.batch`` rate for noisy 120×120 canvases, in training-sized batches,
    and the time of one ``variant(seed=...)`` (new placements and noise levels of every
    digit, as training draws each epoch)."""
    images, labels = load_mnist("train", source="bundled", verbose=False)
    n = min(cfg.canvas_items, len(labels))
    data = TranslatedMNIST(images[:n], labels[:n], canvas=120, snr_db=6, seed=0)
    batch = 64

    def one_pass() -> None:
        for i in range(0, n, batch):
            data.batch(range(i, min(i + batch, n)))

    timed = interleaved(
        {"pass": one_pass, "reseed": lambda: data.variant(seed=1)},
        cfg.rounds,
        cfg.seconds_per_round,
    )
    results["canvases_per_s"] = n / timed["pass"].median
    rates = [n / seconds for seconds in timed["pass"].times]
    notes["canvases_per_s"] = f"{len(rates)} passes of {n}, {min(rates):.0f}..{max(rates):.0f}/s"
    results["reseed_ms"] = 1000 * timed["reseed"].median
    notes["reseed_ms"] = f"variant(seed=...) of {n} noisy digits; " + _spread(timed["reseed"])


def train_worker(spec: dict) -> dict:
    """Run in a child process: train one model on the clean bundled task to 90% val accuracy.

    ``spec``: ``model`` (a key of ``RECIPES``), ``epochs`` (the cap) and, optionally,
    ``digits`` (how many of each split; all by default). The run is the course's
    (``dham_lib.study.runs.make_run`` with the model's recipe: 120-pixel clean canvases of
    the bundled training digits, fresh every epoch), watched on its validation canvases:
    the test canvases are for final numbers only. ``on_epoch_end`` stops training at the
    first epoch that reaches 90%. The seconds are ``fit``'s own, cumulative training time
    without the evaluations. The child's peak RSS (``RUSAGE_SELF`` at the end) covers
    imports, data, training and evaluation.
    """
    # Imported here, so that the study's imports (pandas) stay out of the benchmark
    # process, whose own peak memory is bench_peak_rss_mb.
    from dham_lib.study.runs import make_dataset, make_run

    digits = spec.get("digits")
    run = make_run(
        spec["model"],
        epochs=spec["epochs"],
        train_size=digits,
        test_size=digits,
        **RECIPES[spec["model"]],
    )
    seed_everything(run.seed)  # the initial weights are drawn when the model is built
    model = MODELS[run.model](run.settings)

    def stop_at_90(state: EpochEnd) -> bool:
        acc, seconds = state.history["test_acc"][-1], state.history["seconds"][-1]
        _log(
            f"  {run.model} epoch {state.epoch}: validation acc {acc:.3f}, "
            f"training {seconds:.1f} s, load {_load()[0]:.2f}"
        )
        return acc >= 0.9

    history = fit(  # a TranslatedMNIST trains on fit's course schedule: fresh canvases
        model,
        make_dataset(run, "train"),
        make_dataset(run, "val"),
        epochs=run.train.epochs,
        lr=run.train.lr,
        attention_lr=run.train.attention_lr,
        seed=run.seed,
        device="cpu",
        progress=False,
        on_epoch_end=stop_at_90,
    )
    return {
        "model": run.model,
        "config": model.config,
        "seconds": history["seconds"],
        "val_acc": history["test_acc"],
        "peak_rss_mb": _peak_rss_mb(),
    }


def _run_worker(model: str, epochs: int) -> dict:
    """Run ``train_worker`` in a child; its stderr (per-epoch progress) goes to ours."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--train-worker",
        json.dumps({"model": model, "epochs": epochs}),
    ]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"training worker for {model} failed (exit {done.returncode})")
    line = [ln for ln in done.stdout.splitlines() if ln.startswith(RESULT_PREFIX)][-1]
    return json.loads(line[len(RESULT_PREFIX) :])


def bench_training(cfg: Settings, results: dict, notes: dict, log: list[str]) -> None:
    """Time to 90% validation accuracy of DHAM (stride 2) and of the translation-invariant
    CNN, each trained with its recipe in a child process."""
    for model, suffix in (("dham", ""), ("pooled_cnn", "_pooled_cnn")):
        _log(f"training {model} in a child process, at most {cfg.max_epochs} epochs ...")
        run = _run_worker(model, cfg.max_epochs)
        accs, secs = run["val_acc"], run["seconds"]
        first = next((i for i, acc in enumerate(accs) if acc >= 0.9), None)
        results[f"seconds_to_90{suffix}"] = math.nan if first is None else secs[first]
        results[f"epochs_to_90{suffix}"] = math.nan if first is None else first + 1
        results[f"best_val_acc{suffix}"] = max(accs)
        results[f"peak_rss_mb{suffix}"] = run["peak_rss_mb"]
        notes[f"peak_rss_mb{suffix}"] = "ru_maxrss of the child process that trained it"
        if first is None:
            notes[f"seconds_to_90{suffix}"] = f"NOT REACHED in {len(accs)} epochs"
        else:
            notes[f"seconds_to_90{suffix}"] = f"at epoch {first + 1} (cap {cfg.max_epochs})"
        log.append(
            f"{model} {json.dumps(run['config'])}: validation acc by epoch "
            + " ".join(f"{a:.3f}" for a in accs)
            + "; cumulative training s "
            + " ".join(f"{s:.0f}" for s in secs)
            + ("" if first is None else " (stopped at 90%)")
        )


def _format(value: float) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"


def report(cfg: Settings, results: dict, notes: dict, log: list[str], header: list[str]) -> None:
    """Print the header, the table of every key with its unit and notes, then key=value lines."""
    print("\n".join(header))
    if not cfg.training:
        print("training part skipped: its keys print nan")
    print(f"{'key':34} {'value':>10}  {'unit':4}  note")
    print("-" * 100)
    for key, (_, unit, target) in KEYS.items():
        note = "; ".join(part for part in (target, notes.get(key, "")) if part)
        print(f"{key:34} {_format(results[key]):>10}  {unit:4}  {note}".rstrip())
    for line in log:
        print(f"# {line}")
    print("# key=value")
    for key in KEYS:
        print(f"{key}={_format(results[key])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, no training (smoke)")
    parser.add_argument("--skip-training", action="store_true", help="skip the time-to-90%% runs")
    parser.add_argument("--max-epochs", type=int, default=Settings.max_epochs)
    parser.add_argument("--train-worker", metavar="JSON", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.train_worker:
        print(RESULT_PREFIX + json.dumps(train_worker(json.loads(args.train_worker))))
        return 0
    cfg = Settings.quick() if args.quick else Settings(max_epochs=args.max_epochs)
    if args.skip_training:
        cfg = dataclasses.replace(cfg, training=False)

    load = _load()
    header = [
        "DHAM benchmarks" + ("  (--quick: smoke-test sizes, numbers not meaningful)" * args.quick),
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"torch {torch.__version__}, threads {torch.get_num_threads()} (default, "
        f"interop {torch.get_num_interop_threads()}), device cpu, float32",
        f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    ]
    if load[0] > (os.cpu_count() or 1) - 0.5:
        header.append(
            "WARNING: the load already fills the CPUs; other processes share the cores and "
            "torch's default threads oversubscribe them, so timings are slow and noisy"
        )
    results = {key: math.nan for key in KEYS}
    results.update(
        cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(), load_1min_start=load[0]
    )
    notes: dict[str, str] = {}
    log: list[str] = []
    parts = {"layer": bench_layer, "steps": bench_steps, "canvases": bench_canvases}
    for name, part in parts.items():
        _log(f"{name} ...")
        log.append(f"load average before {name}: " + " ".join(f"{x:.2f}" for x in _load()))
        part(cfg, results, notes)
    results["bench_peak_rss_mb"] = _peak_rss_mb()
    if cfg.training:
        log.append("load average before training: " + " ".join(f"{x:.2f}" for x in _load()))
        bench_training(cfg, results, notes, log)
    end = _load()
    results["load_1min_end"] = end[0]
    header.append(f"load average at end: {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}")
    report(cfg, results, notes, log, header)
    return 0


if __name__ == "__main__":
    sys.exit(main())
