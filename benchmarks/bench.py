"""Benchmarks of the DHAM course library: one script, one run, ratios measured side by side.

Run from the repository root::

    .venv/bin/python benchmarks/bench.py                  # everything (several minutes)
    .venv/bin/python benchmarks/bench.py --skip-training  # without the time-to-90% runs
    .venv/bin/python benchmarks/bench.py --quick          # smoke run: seconds, numbers meaningless

It prints the machine, a table, and then one ``key=value`` line per number (see
benchmarks/README.md for what each key measures). Every ratio is taken between
timings made in the same process, interleaved round by round, so that a change in
the machine's load during the run affects both sides alike. All timings are on the
CPU in float32, with ``time.perf_counter``, after warm-up, as the median of repeats;
torch's thread count is left at its default and printed.

The module also holds the two reference implementations of the DHAM layer that
``layer_speedup`` compares against (``loop_reference`` and ``reference_2018``), so
that a test can check them against ``dham_lib.dham.DHAM``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from dham_lib.data import TranslatedMNIST, load_mnist
from dham_lib.dham import DHAM
from dham_lib.models import build_model

# Keys that are nan when the training part is skipped (--skip-training, --quick).
TRAINING_KEYS = (
    "seconds_to_90",
    "epochs_to_90",
    "best_test_acc",
    "seconds_to_90_cnn",
    "epochs_to_90_cnn",
    "best_test_acc_cnn",
    "peak_rss_mb",
    "peak_rss_mb_cnn",
)
# Every key the script prints as key=value, in order; a skipped part prints nan.
KEYS = (
    "cpu_count",
    "torch_threads",
    "load_1min_start",
    "layer_ms_dham",
    "layer_ms_loop_rows",
    "layer_ms_loop_2018",
    "layer_ms_unchecked",
    "layer_speedup",
    "layer_speedup_vs_2018_structure",
    "layer_speedup_unchecked_vs_dham",
    "layer_max_abs_diff",
    "dham_default_stride",
    "step_ms_dham_stride1",
    "step_ms_dham_stride2",
    "step_ms_stn",
    "step_ms_cnn",
    "step_ms_pooled_cnn",
    "step_ratio_stn",
    "step_ratio_cnn",
    "step_ratio_pooled_cnn",
    "step_ratio_stn_stride2",
    "step_ratio_cnn_stride2",
    "step_ratio_pooled_cnn_stride2",
    "canvases_per_s",
    "reseed_ms",
    *TRAINING_KEYS,
    "bench_peak_rss_mb",
    "load_1min_end",
)
RESULT_PREFIX = "BENCH_WORKER_RESULT "


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes and repeat counts of one run; ``quick()`` shrinks them for the smoke test."""

    layer_batch: int = 64
    layer_repeats: int = 7
    dham_calls_per_repeat: int = 10
    step_batch: int = 64
    step_warmup: int = 3
    step_rounds: int = 5
    steps_per_round: int = 4
    canvas_items: int = 4000
    canvas_repeats: int = 5
    max_epochs: int = 15
    training: bool = True

    @classmethod
    def quick(cls) -> Settings:
        """One repeat of everything, on tiny batches, without training."""
        # Every size and repeat count at 1 (max_epochs means nothing without training).
        ones = {f.name: 1 for f in dataclasses.fields(cls) if f.type == "int"}
        del ones["max_epochs"]
        small = {"layer_batch": 4, "step_batch": 8, "canvas_items": 256}
        return cls(**{**ones, **small, "training": False})


# --------------------------------------------------------------------------- references


def _pixel_axis(n: int) -> torch.Tensor:
    """Normalised centres of ``n`` pixels, -1 to 1 (0 for a single pixel)."""
    return torch.zeros(1) if n == 1 else torch.linspace(-1.0, 1.0, n)


def _axis_weights(coord: torch.Tensor, n: int):
    """Border-padded bilinear indices and weights along one axis (any shape).

    The normalised coordinate goes to pixels (centre of pixel i at i), is clamped
    into the image (border padding), and splits into the lower index and the
    fraction; the weights are ``1 - f`` and ``f``, so an exact integer keeps its
    full weight (the 2018 code's ``ceil - x`` / ``x - floor`` weights both vanish
    there).
    """
    pixel = ((coord + 1) / 2 * (n - 1)).clamp(0, n - 1)
    low = torch.floor(pixel).detach()
    frac = pixel - low
    low = low.long()
    high = (low + 1).clamp(max=n - 1)
    return low, high, 1 - frac, frac


def _batched_moments(logits: torch.Tensor):
    """``tx, ty, s`` (each ``[B, K]``) of ``logits [B, K, H, W]`` for all maps at once: the
    spatial softmax, the expected position, the expected L2 distance from the detached mean."""
    batch, k_maps, map_h, map_w = logits.shape
    pmf = torch.softmax(logits.reshape(batch, k_maps, -1), dim=-1).reshape(logits.shape)
    xs, ys = _pixel_axis(map_w), _pixel_axis(map_h)
    tx = (pmf.sum(-2) * xs).sum(-1)
    ty = (pmf.sum(-1) * ys).sum(-1)
    dx = (xs - tx[..., None]).detach()[..., None, :]
    dy = (ys - ty[..., None]).detach()[..., :, None]
    return tx, ty, (torch.sqrt(dx**2 + dy**2) * pmf).sum((-2, -1))


def loop_reference(
    image: torch.Tensor, logits: torch.Tensor, size: tuple[int, int] = (28, 28)
) -> torch.Tensor:
    """DHAM's math as a plain per-sample Python loop: ``[B, C, H, W]``, ``[B, K, H', W']``
    → glimpses ``[B, K, C, h, w]``.

    For each sample and attention channel: softmax over the flattened map; ``tx`` and
    ``ty`` as explicit sums of coordinate times probability; ``s`` as the expected L2
    distance from the (detached) mean; then a hand-written bilinear gather that loops
    over the glimpse's output rows, four indexed reads per row. All torch ops, so
    autograd runs through it. Border padding, ``align_corners=True`` coordinates.
    """
    batch, channels, height, width = image.shape
    _, k_maps, map_h, map_w = logits.shape
    out_h, out_w = size
    xs, ys = _pixel_axis(map_w), _pixel_axis(map_h)
    grid_x, grid_y = xs[None, :].expand(map_h, map_w), ys[:, None].expand(map_h, map_w)
    u, v = _pixel_axis(out_w), _pixel_axis(out_h)
    samples = []
    for b in range(batch):
        maps = []
        for k in range(k_maps):
            pmf = torch.softmax(logits[b, k].reshape(-1), dim=0).reshape(map_h, map_w)
            tx = (pmf * grid_x).sum()
            ty = (pmf * grid_y).sum()
            dist = torch.sqrt((grid_x - tx.detach()) ** 2 + (grid_y - ty.detach()) ** 2)
            s = (pmf * dist).sum()
            x0, x1, wx0, wx1 = _axis_weights(tx + s * u, width)  # the same for every row
            rows = []
            for i in range(out_h):
                y0, y1, wy0, wy1 = _axis_weights(ty + s * v[i], height)
                top = image[b][:, y0, x0] * wx0 + image[b][:, y0, x1] * wx1  # [C, w]
                bottom = image[b][:, y1, x0] * wx0 + image[b][:, y1, x1] * wx1
                rows.append(top * wy0 + bottom * wy1)
            maps.append(torch.stack(rows, dim=1))  # [C, h, w]
        samples.append(torch.stack(maps))  # [K, C, h, w]
    return torch.stack(samples)


def reference_2018(
    image: torch.Tensor, logits: torch.Tensor, size: tuple[int, int] = (28, 28)
) -> torch.Tensor:
    """DHAM's math laid out as the 2018 code lays it out, with today's corrected conventions.

    The moments are batched tensor ops; the sampling grid is batched; the gather
    loops in Python over (sample, image channel) pairs and reads the whole
    ``[K, h, w]`` grid of indices at once, one loop per bilinear corner, as the
    original's ``gather2d`` does. This is a stronger (faster) baseline than
    ``loop_reference``.
    """
    batch, channels, height, width = image.shape
    k_maps = logits.shape[1]
    out_h, out_w = size
    tx, ty, s = _batched_moments(logits)
    u = _pixel_axis(out_w).view(1, 1, 1, out_w)
    v = _pixel_axis(out_h).view(1, 1, out_h, 1)
    gx = (tx[..., None, None] + s[..., None, None] * u).expand(batch, k_maps, out_h, out_w)
    gy = (ty[..., None, None] + s[..., None, None] * v).expand(batch, k_maps, out_h, out_w)
    x0, x1, wx0, wx1 = _axis_weights(gx, width)
    y0, y1, wy0, wy1 = _axis_weights(gy, height)

    def gather(iy: torch.Tensor, ix: torch.Tensor) -> torch.Tensor:
        picked = [image[b, c][iy[b], ix[b]] for b in range(batch) for c in range(channels)]
        return torch.stack(picked).view(batch, channels, k_maps, out_h, out_w)

    out = (
        gather(y0, x0) * (wy0 * wx0)[:, None]
        + gather(y0, x1) * (wy0 * wx1)[:, None]
        + gather(y1, x0) * (wy1 * wx0)[:, None]
        + gather(y1, x1) * (wy1 * wx1)[:, None]
    )
    return out.transpose(1, 2)


def unchecked_vectorised(
    image: torch.Tensor, logits: torch.Tensor, size: tuple[int, int] = (28, 28)
) -> torch.Tensor:
    """DHAM's math fully vectorised, as the library computes it but without argument checks.

    Not a reference for the speed-up: a diagnostic of what ``dham_lib``'s input
    validation (finiteness and PMF checks on every call) costs in the layer's time.
    """
    batch, k_maps = image.shape[0], logits.shape[1]
    out_h, out_w = size
    tx, ty, s = _batched_moments(logits)
    gx = tx[..., None, None] + s[..., None, None] * _pixel_axis(out_w).view(1, 1, 1, out_w)
    gy = ty[..., None, None] + s[..., None, None] * _pixel_axis(out_h).view(1, 1, out_h, 1)
    grid = torch.stack(torch.broadcast_tensors(gx, gy), dim=-1)
    sampled = F.grid_sample(
        image,
        grid.reshape(batch, k_maps * out_h, out_w, 2),
        padding_mode="border",
        align_corners=True,
    )
    return sampled.reshape(batch, image.shape[1], k_maps, out_h, out_w).transpose(1, 2)


def benchmark_inputs(batch: int, side: int = 120, seed: int = 0):
    """A canvas batch ``[B, 1, side, side]`` and attention logits of the same size.

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


def forward_backward(layer: Callable, image: torch.Tensor, logits: torch.Tensor, upstream):
    """One forward and backward pass of ``layer`` w.r.t. ``logits``: (glimpses, logits' grad)."""
    leaf = logits.detach().requires_grad_(True)
    glimpses = layer(image, leaf)
    (glimpses * upstream).sum().backward()
    return glimpses.detach(), leaf.grad


# --------------------------------------------------------------------------- helpers


def _median_ms(times: list[float]) -> float:
    return 1000 * statistics.median(times)


def _spread(times: list[float], scale: float = 1000) -> str:
    return f"{len(times)} runs, {scale * min(times):.4g}..{scale * max(times):.4g}"


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


# --------------------------------------------------------------------------- parts


def bench_layer(cfg: Settings, results: dict, notes: dict) -> None:
    """DHAM forward+backward against the two loop references, verified equal first."""
    image, logits = benchmark_inputs(cfg.layer_batch)
    upstream = torch.randn(cfg.layer_batch, 1, 1, 28, 28, generator=torch.Generator())
    dham = DHAM(output_size=(28, 28))

    def dham_layer(im, lg):
        return dham(im, lg)[0]

    layers = {
        "dham": dham_layer,
        "loop_rows": loop_reference,
        "loop_2018": reference_2018,
        "unchecked": unchecked_vectorised,
    }
    # Same glimpses and the same gradient, or the comparison means nothing.
    want, want_grad = forward_backward(dham_layer, image, logits, upstream)
    worst = 0.0
    for name in ("loop_rows", "loop_2018", "unchecked"):
        got, got_grad = forward_backward(layers[name], image, logits, upstream)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=f"{name} glimpses")
        scale = want_grad.abs().max().item()
        torch.testing.assert_close(
            got_grad, want_grad, rtol=1e-3, atol=1e-4 * scale, msg=f"{name} gradient"
        )
        worst = max(worst, (got - want).abs().max().item())
    results["layer_max_abs_diff"] = worst

    fast = cfg.dham_calls_per_repeat
    calls = {"dham": fast, "loop_rows": 1, "loop_2018": max(1, fast // 5), "unchecked": fast}
    for name, layer in layers.items():  # warm-up
        for _ in range(3 if calls[name] > 1 else 1):
            forward_backward(layer, image, logits, upstream)
    times = {name: [] for name in layers}
    order = list(layers)
    for repeat in range(cfg.layer_repeats):
        shift = repeat % len(order)
        for name in order[shift:] + order[:shift]:
            start = time.perf_counter()
            for _ in range(calls[name]):
                forward_backward(layers[name], image, logits, upstream)
            times[name].append((time.perf_counter() - start) / calls[name])
    for name in layers:
        results[f"layer_ms_{name}"] = _median_ms(times[name])
        notes[f"layer_ms_{name}"] = _spread(times[name])
    results["layer_speedup"] = results["layer_ms_loop_rows"] / results["layer_ms_dham"]
    results["layer_speedup_vs_2018_structure"] = (
        results["layer_ms_loop_2018"] / results["layer_ms_dham"]
    )
    results["layer_speedup_unchecked_vs_dham"] = (
        results["layer_ms_dham"] / results["layer_ms_unchecked"]
    )


def bench_steps(cfg: Settings, results: dict, notes: dict) -> None:
    """One Adam training step of each model on the same batch, interleaved round by round."""
    images, labels = load_mnist("train", source="bundled", verbose=False)
    data = TranslatedMNIST(images[: cfg.step_batch], labels[: cfg.step_batch], snr_db=6, seed=0)
    canvases, targets, _ = data.batch(range(cfg.step_batch))
    specs = {
        "dham_stride1": ("dham", {"width": 16, "stride": 1}),
        "dham_stride2": ("dham", {"width": 16, "stride": 2}),
        "stn": ("stn", {}),
        "cnn": ("cnn", {}),
        "pooled_cnn": ("pooled_cnn", {"width": 16}),
    }
    torch.manual_seed(0)
    results["dham_default_stride"] = build_model("dham", width=16).attention.stride
    runs = {}
    for name, (model_name, kwargs) in specs.items():
        torch.manual_seed(0)
        model = build_model(model_name, **kwargs).train()
        runs[name] = (model, torch.optim.Adam(model.parameters(), lr=1e-3))

    def step(name: str) -> None:
        model, optimiser = runs[name]
        loss = F.cross_entropy(model(canvases).logits, targets)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    for name in runs:
        for _ in range(cfg.step_warmup):
            step(name)
    times = {name: [] for name in runs}
    order = list(runs)
    for round_ in range(cfg.step_rounds):
        shift = round_ % len(order)
        for name in order[shift:] + order[:shift]:
            for _ in range(cfg.steps_per_round):
                start = time.perf_counter()
                step(name)
                times[name].append(time.perf_counter() - start)
    for name in runs:
        results[f"step_ms_{name}"] = _median_ms(times[name])
        notes[f"step_ms_{name}"] = _spread(times[name])
    default = f"dham_stride{results['dham_default_stride']}"
    for base in ("stn", "cnn", "pooled_cnn"):
        results[f"step_ratio_{base}"] = results[f"step_ms_{default}"] / results[f"step_ms_{base}"]
        results[f"step_ratio_{base}_stride2"] = (
            results["step_ms_dham_stride2"] / results[f"step_ms_{base}"]
        )


def bench_canvases(cfg: Settings, results: dict, notes: dict) -> None:
    """``TranslatedMNIST.batch`` rate for noisy 120×120 canvases, in training-sized batches."""
    images, labels = load_mnist("train", source="bundled", verbose=False)
    n = min(cfg.canvas_items, len(labels))
    data = TranslatedMNIST(images[:n], labels[:n], canvas=120, snr_db=6, seed=0)
    batch = 64
    data.batch(range(min(batch, n)))  # warm-up
    rates, reseeds = [], []
    for repeat in range(cfg.canvas_repeats):
        start = time.perf_counter()
        for i in range(0, n, batch):
            data.batch(range(i, min(i + batch, n)))
        rates.append(n / (time.perf_counter() - start))
        start = time.perf_counter()
        data.reseeded(repeat + 1)
        reseeds.append(time.perf_counter() - start)
    results["canvases_per_s"] = statistics.median(rates)
    notes["canvases_per_s"] = f"{len(rates)} runs of {n}, {min(rates):.0f}..{max(rates):.0f}/s"
    results["reseed_ms"] = _median_ms(reseeds)
    notes["reseed_ms"] = f"reseeded() of {n} noisy digits (fit does it once per epoch)"


class _Reached90(Exception):
    """Raised in the training child to stop ``fit`` at the first epoch with 90% val accuracy."""


def train_worker(spec: dict) -> dict:
    """Run in a child process: train one model on the clean bundled task to 90% val accuracy.

    The task is ``dham_lib.study.experiments.Cell(model, width=16, stride=2)`` on the bundled
    data (clean 120x120 canvases), trained with the cell's recipe by
    ``dham_lib.study.experiments.fit_cell``, as ``train_cell`` trains it (the attention
    network at its own learning rate). ``fit`` evaluates on the validation set after every
    epoch; to stop at the first epoch that reaches 90% the child wraps
    ``dham_lib.train.evaluate`` (which ``fit`` calls) and raises once the accuracy is
    reached. The wrapper keeps the training
    time as ``fit`` counts it, cumulative and without the evaluations; when ``fit``
    runs to the end, the two clocks are compared. The child's own peak RSS
    (``RUSAGE_SELF`` at the end) covers imports, data, training and evaluation.
    """
    import dham_lib.train as train_module
    from dham_lib.study.experiments import Cell, fit_cell, make_dataset

    cell = Cell(model=spec["model"], width=16, stride=2, snr_db=None, epochs=spec["epochs"])
    # Watched on the validation canvases, as train_cell watches a run: the test canvases
    # are for final numbers only.
    train_set, test_set = make_dataset(cell, "train"), make_dataset(cell, "val")
    train_module.seed_everything(cell.seed)  # as train_cell: weights are drawn at build time
    model = build_model(cell.model, **cell.model_kwargs())
    real_evaluate = train_module.evaluate
    clock = {"start": 0.0, "evaluating": 0.0}
    seconds, accs = [], []

    def evaluate_then_check(*args, **kwargs):
        entered = time.perf_counter()
        seconds.append(entered - clock["start"] - clock["evaluating"])
        scores = real_evaluate(*args, **kwargs)
        clock["evaluating"] += time.perf_counter() - entered
        accs.append(scores["acc"])
        _log(
            f"  {cell.model} epoch {len(accs)}: validation acc {accs[-1]:.3f}, "
            f"training {seconds[-1]:.1f} s, load {_load()[0]:.2f}"
        )
        if accs[-1] >= 0.9:
            raise _Reached90
        return scores

    # The first optimiser built in a process pays a one-off import (about 2 s here),
    # which fit makes before its clock starts: pay it now, outside both clocks.
    torch.optim.Adam(torch.nn.Linear(1, 1).parameters())
    train_module.evaluate = evaluate_then_check
    clock["start"] = time.perf_counter()
    clock_gap = math.nan
    try:
        history = fit_cell(cell, model, train_set, test_set, device="cpu", progress=False)
        clock_gap = max(abs(a - b) for a, b in zip(history["seconds"], seconds, strict=True))
    except _Reached90:
        pass
    finally:
        train_module.evaluate = real_evaluate
    return {
        "model": spec["model"],
        "config": model.config,
        "seconds": seconds,
        "test_acc": accs,
        "clock_gap_s": clock_gap,
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
    """Time to 90% validation accuracy of DHAM (stride 2) and of the plain CNN, each in a child."""
    for model, suffix in (("dham", ""), ("cnn", "_cnn")):
        _log(f"training {model} in a child process, at most {cfg.max_epochs} epochs ...")
        run = _run_worker(model, cfg.max_epochs)
        accs, secs = run["test_acc"], run["seconds"]
        first = next((i for i, acc in enumerate(accs) if acc >= 0.9), None)
        results[f"seconds_to_90{suffix}"] = math.nan if first is None else secs[first]
        results[f"epochs_to_90{suffix}"] = math.nan if first is None else first + 1
        results[f"best_test_acc{suffix}"] = max(accs)
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
            + (
                ""
                if math.isnan(run["clock_gap_s"])
                else f"; clock vs fit {run['clock_gap_s']:.3f} s"
            )
        )


# --------------------------------------------------------------------------- report

UNITS_AND_TARGETS = {
    "layer_ms_dham": ("ms", "DHAM forward+backward"),
    "layer_ms_loop_rows": ("ms", "per-sample loop, gather per output row"),
    "layer_ms_loop_2018": ("ms", "2018 layout: batched moments, gather per sample"),
    "layer_speedup": ("x", "target >= 20"),
    "layer_ms_unchecked": ("ms", "vectorised like DHAM, no argument checks"),
    "layer_speedup_vs_2018_structure": ("x", "stronger baseline; < 1: DHAM is slower"),
    "layer_speedup_unchecked_vs_dham": ("x", "DHAM time / unchecked time: cost of checks"),
    "layer_max_abs_diff": ("", "glimpses, loop vs DHAM (checked before timing)"),
    "step_ratio_stn": ("x", "DHAM default stride / STN, target <= 1"),
    "step_ratio_cnn": ("x", "DHAM default stride / CNN"),
    "step_ratio_pooled_cnn": ("x", "DHAM default stride / translation-invariant CNN"),
    "step_ratio_stn_stride2": ("x", "DHAM stride 2 / STN, target <= 1"),
    "step_ratio_cnn_stride2": ("x", "DHAM stride 2 / CNN"),
    "step_ratio_pooled_cnn_stride2": ("x", "DHAM stride 2 / translation-invariant CNN"),
    "canvases_per_s": ("1/s", "target >= 5000"),
    "seconds_to_90": ("s", "DHAM stride 2, clean, bundled, 90% on validation"),
    "seconds_to_90_cnn": ("s", "plain CNN, clean, bundled, 90% on validation"),
    "peak_rss_mb": ("MiB", "DHAM training child"),
    "peak_rss_mb_cnn": ("MiB", "CNN training child"),
    "bench_peak_rss_mb": ("MiB", "this benchmark process"),
}


def _format(value: float) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"


def report(cfg: Settings, results: dict, notes: dict, log: list[str], header: list[str]) -> None:
    print("\n".join(header))
    if not cfg.training:
        print("training part skipped: its keys print nan")
    print(f"{'key':34} {'value':>10}  {'unit':4}  note")
    print("-" * 100)
    for key in KEYS:
        unit, target = UNITS_AND_TARGETS.get(key, ("", ""))
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
    parts = [("layer", bench_layer), ("training steps", bench_steps)]
    parts.append(("canvases", bench_canvases))
    for name, part in parts:
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
