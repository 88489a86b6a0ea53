"""Why does a DHAM run fail to lock on? The first training steps, looked at one by one.

Width 2, clean canvases, the recipe's first epochs (the same canvases and order as
``fit``), with the attention network's start drawn from each ``--seeds`` and its
activation a ReLU (slope 0) or a leaky ReLU (each ``--slopes``). After every step it
records the batch's mean centre error (pixels), the glimpse scale ``s`` and how many of
the first attention layer's channels are *live* (positive somewhere on the batch, so a
ReLU passes them a gradient). One row per step into ``--out`` (CSV), and a figure::

    python scripts/lock_on_probe.py --seeds 0 1 --slopes 0 0.1 --steps 330 \\
        --out data/results/lock_on_probe.csv \\
        --figure data/results/figures/lock_on_probe.png
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from lock_on_init import crossed_model  # the crossed runs' start
from matplotlib.ticker import MultipleLocator

from dham_lib.metrics import box_centre_error
from dham_lib.study.runs import Run, make_run, run_schedule
from dham_lib.train import parameter_groups


def _batches(run: Run):
    """The training batches of ``fit``, epoch after epoch: each epoch's canvases redrawn
    from ``seed * 10,000 + epoch`` and shuffled by the same seed."""
    schedule = run_schedule(run)
    for epoch in itertools.count(1):
        yield from schedule(epoch)


def probe(attention_seed: int, slope: float, steps: int, width: int = 2) -> list[dict]:
    """The first ``steps`` Adam steps of one run; one dict per step."""
    run = make_run("dham", 0, width=width, attention_slope=slope)
    model = crossed_model(run, attention_seed)
    optimiser = torch.optim.Adam(parameter_groups(model, run.train.lr, run.train.attention_lr))
    net, rows = model.attention, []
    for step, (canvases, labels, true_boxes) in enumerate(itertools.islice(_batches(run), steps)):
        prediction = model(canvases)
        loss = F.cross_entropy(prediction.logits, labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            hidden = net.conv1(F.avg_pool2d(canvases, net.stride, ceil_mode=True))
            _, params = model.attend(canvases)
        rows.append(
            {
                "attention_seed": attention_seed,
                "slope": slope,
                "step": step + 1,
                "loss": loss.item(),
                "centre_error": box_centre_error(prediction.boxes[:, 0], true_boxes).mean().item(),
                "s": params.s.mean().item(),
                "live_channels": int((hidden.amax(dim=(0, 2, 3)) > 0).sum()),
            }
        )
    return rows


def plot(table: pd.DataFrame):
    """Centre error and live channels against the step, one line per start and slope; the
    live counts, whole numbers that often coincide, are each lifted by a small offset so
    every line shows."""
    figure, (error_ax, live_ax) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    groups = list(table.groupby(["attention_seed", "slope"]))
    offsets = 0.06 * (np.arange(len(groups)) - (len(groups) - 1) / 2)
    for ((seed, slope), run), offset in zip(groups, offsets, strict=True):
        label = f"attention start {seed}, " + ("ReLU" if slope == 0 else f"leaky ReLU {slope:g}")
        style = "-" if slope == 0 else "--"
        error_ax.plot(run["step"], run["centre_error"], style, label=label)
        live_ax.plot(run["step"], run["live_channels"] + offset, style, label=label)
    error_ax.set(
        title="Where the glimpse is", xlabel="training step", ylabel="centre error (pixels)"
    )
    live_ax.set(
        title="First-layer channels still live",
        xlabel="training step",
        ylabel=f"channels positive somewhere\n(lines offset by up to ±{offsets.max():.2f})",
    )
    live_ax.yaxis.set_major_locator(MultipleLocator(1))  # whole channels
    for ax in (error_ax, live_ax):
        ax.grid(alpha=0.3)
    handles, labels = live_ax.get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=9, frameon=False)
    figure.suptitle("DHAM's first training steps (width 2, clean canvases): does it lock on?")
    return figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--slopes", type=float, nargs="+", default=[0.0, 0.1])
    parser.add_argument("--steps", type=int, default=330)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--figure", type=Path)
    args = parser.parse_args()
    rows = []
    for seed, slope in itertools.product(args.seeds, args.slopes):
        rows += probe(seed, slope, args.steps)
        last = rows[-1]
        print(
            f"start {seed}, slope {slope:g}: centre error {last['centre_error']:.1f} px, "
            f"{last['live_channels']} live channels after {args.steps} steps",
            flush=True,
        )
    table = pd.DataFrame(rows)
    table.to_csv(args.out, index=False, float_format="%.4g")
    if args.figure is not None:
        plot(table).savefig(args.figure, dpi=120)


if __name__ == "__main__":
    main()
