"""What each model costs as the canvas grows: weights, FLOPs and milliseconds per canvas.

Run from the repository root::

    .venv/bin/python benchmarks/scaling.py                # 120, 240 and 480 pixels
    .venv/bin/python benchmarks/scaling.py --quick        # smoke run: seconds, timings meaningless
    .venv/bin/python benchmarks/scaling.py --out data/results/scaling_costs.csv
    .venv/bin/python benchmarks/scaling.py --cluttered --out data/results/cluttered_costs.csv

Models: DHAM (width 16, the recipe's stride 2), the translation-invariant CNN at width 16
(the fair baseline) and at width 8 (cut to about DHAM's FLOPs on a 120-pixel canvas).
FLOPs are counted by ``torch.utils.flop_counter`` (``dham_lib.models.forward_flops``):
they do not depend on the machine. Milliseconds per canvas are the median over rounds of
one inference forward pass and of one training step (forward, cross-entropy, backward,
Adam) on a batch of noisy (6 dB) canvases, CPU, float32; within a round every model runs
once, in an order that rotates, so a change of the machine's load hits all alike. The
table's ratios are each model's cost over DHAM's at the same side, from this one run.
With ``--cluttered``: notebook 08's four models at their benchmark recipes on the
literature's cluttered canvases (native 28-pixel digits), 60 and 100 pixels, batch 64.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from dham_lib.data import TranslatedMNIST, cluttered_mnist, load_mnist
from dham_lib.models import MODELS as BUILDERS
from dham_lib.models import build_model, forward_flops
from dham_lib.study.runs import REFERENCE_CANVAS, SCALE, make_run

MODELS = {
    "dham w16": ("dham", {"width": 16}),
    "pooled_cnn w16": ("pooled_cnn", {"width": 16}),
    "pooled_cnn w8": ("pooled_cnn", {"width": 8}),
}
# Notebook 08's recipes, chosen on validation (data/results/pilot_cluttered60.csv).
CLUTTERED = {
    "dham": ("dham", {"width": 16, "classifier": "small", "stride": 4}),
    "oracle": ("oracle", {"classifier": "small"}),
    "stn_zoom": ("stn_zoom", {"classifier": "small", "start_scale": 0.5}),
    "pooled_cnn w16": ("pooled_cnn", {"width": 16, "batch_norm": True}),
}


def canvases(side: int, batch: int, cluttered: bool = False):
    """A batch of 6 dB canvases of ``side`` pixels with digits of their 120-pixel size, or
    with ``cluttered`` the literature's cluttered MNIST: ``(canvases, labels, boxes)``."""
    images, labels = load_mnist("test", source="bundled", verbose=False)
    if cluttered:
        return cluttered_mnist(images[:batch], labels[:batch], canvas=side, seed=0).batch(
            list(range(batch))
        )
    ratio = REFERENCE_CANVAS / side
    data = TranslatedMNIST(
        images[:batch],
        labels[:batch],
        canvas=side,
        scale=(SCALE[0] * ratio, SCALE[1] * ratio),
        snr_db=6.0,
        seed=0,
    )
    return data.batch(list(range(batch)))


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(side: int, batch: int, rounds: int, cluttered: bool = False) -> list[dict]:
    """One row per model at this side: weights, MFLOP and ms per canvas."""
    torch.manual_seed(0)
    if cluttered:  # each model as its benchmark run builds it (an STN's grid knows the side)
        runs = {name: make_run(kind, canvas=side, **kw) for name, (kind, kw) in CLUTTERED.items()}
        models = {name: BUILDERS[run.model](run.settings) for name, run in runs.items()}
    else:
        models = {name: build_model(kind, **kwargs) for name, (kind, kwargs) in MODELS.items()}
    optimisers = {name: torch.optim.Adam(m.parameters(), lr=1e-3) for name, m in models.items()}
    images, labels, boxes = canvases(side, batch, cluttered)

    def infer(name):
        model = models[name].eval()
        with torch.no_grad():
            model(images, true_box=boxes)

    def step(name):
        model, optimiser = models[name].train(), optimisers[name]
        loss = F.cross_entropy(model(images, true_box=boxes).logits, labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    names = list(models)
    for name in names:  # warm-up
        infer(name)
        step(name)
    times = {(name, kind): [] for name in names for kind in ("infer", "step")}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name, "infer"].append(_timed(lambda n=name: infer(n)))
            times[name, "step"].append(_timed(lambda n=name: step(n)))
    return [
        {
            "model": name,
            "canvas": side,
            "weights": sum(p.numel() for p in models[name].parameters()),
            "mflop_per_canvas": forward_flops(models[name], (side, side)) / 1e6,
            "infer_ms_per_canvas": 1000 * statistics.median(times[name, "infer"]) / batch,
            "step_ms_per_canvas": 1000 * statistics.median(times[name, "step"]) / batch,
        }
        for name in names
    ]


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sides", type=int, nargs="+", help="default 120 240 480 (60 100)")
    parser.add_argument("--batch", type=int, help="canvases per batch, default 16 (64)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="sides 64 and 96, 2 rounds, batch 4")
    parser.add_argument("--out", type=Path, help="also write the table as CSV")
    parser.add_argument(
        "--cluttered",
        action="store_true",
        help="notebook 08's models on cluttered MNIST (the defaults in brackets above)",
    )
    args = parser.parse_args(argv)
    sides = args.sides or ([60, 100] if args.cluttered else [120, 240, 480])
    batch = args.batch or (64 if args.cluttered else 16)
    if args.quick:  # the cluttered canvases come in the literature's two sides only
        sides, rounds, batch = ([60, 100] if args.cluttered else [64, 96]), 2, 4
    else:
        rounds = args.rounds
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {batch}")
    rows = [row for side in sides for row in measure(side, batch, rounds, args.cluttered)]
    table = pd.DataFrame(rows)
    dham = table[table["model"].str.startswith("dham")].set_index("canvas")
    for column in ("mflop_per_canvas", "step_ms_per_canvas"):
        ratio = column.replace("_per_canvas", "_over_dham")
        table[ratio] = table[column] / table["canvas"].map(dham[column])
    print(table.to_markdown(index=False, floatfmt=".3g"))
    if args.out is not None:
        table.to_csv(args.out, index=False, float_format="%.4g")
    return table


if __name__ == "__main__":
    main()
