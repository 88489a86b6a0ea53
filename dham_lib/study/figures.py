"""The figures of a training run and of a results table: glimpses, learning curves, outcomes.

``python -m dham_lib`` draws these (the course's other plots are in ``dham_lib.course.figures``).
Each returns a matplotlib ``Figure`` without ``plt.show``. Pixel i's centre is drawn at
coordinate i, so boxes are drawn where they sample.
"""

from __future__ import annotations

import math
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter

from dham_lib import _checks
from dham_lib.study.results import (
    is_accuracy,
    outcome_table,
    snr_label,
    summary_intervals,
)

BOX_COLOURS = ("red", "orange", "magenta", "cyan")
# Each model's colour in every figure that compares models.
MODEL_COLOURS = {
    "dham": "C0",
    "oracle": "C1",
    "stn_zoom": "C2",
    "stn": "C3",
    "pooled_cnn": "C4",
    "cnn": "C5",
    "dham_entropy": "C6",
}
_WIDTH_MARKERS = ("o", "s", "^", "D")  # a model's first label, then its other widths
# Axis labels with units for the result columns that have them.
_METRIC_LABELS = {
    "test_acc": "test accuracy (%)",
    "iou": "IoU with the true box",
    "coverage": "coverage of the true box",
    "centre_error": "centre error (px)",
    "train_seconds": "training time (s)",
    "acc_canvas160": "accuracy on 160×160 canvases (%)",
    "acc_canvas200": "accuracy on 200×200 canvases (%)",
}
_SMALL = 9
_TYPE = 9  # the type size of notebook 05's result figures (points)
HISTORY_KEYS = ("epoch", "train_loss", "test_loss", "train_acc", "test_acc")
# The learning curves' box panels (title, ylabel, ylim), drawn when the history records them.
_BOX_PANELS = {
    "test_iou": ("glimpse box vs true box", "IoU", (0, 1)),
    "test_centre_error": ("glimpse centre vs digit centre", "centre error (pixels)", (0, None)),
}
# The box metrics that the oracle, which crops the true box, has by construction.
_BY_CONSTRUCTION = {"oracle": ("iou", "coverage", "centre_error")}


def _style(ax, grid: str | None = "both", small: bool = False, **settings) -> None:
    """``ax.set(**settings)``, a light grid along ``grid``; with ``small``, small labels."""
    ax.set(**settings)
    if grid:
        ax.grid(axis=grid, alpha=0.3)
    if small:
        ax.title.set_fontsize(_SMALL + 1)
        for label in (ax.xaxis.label, ax.yaxis.label):
            label.set_fontsize(_SMALL)
        ax.tick_params(labelsize=_SMALL)


def as_tensor(name: str, value, ndims: tuple[int, ...]) -> torch.Tensor:
    """A detached CPU float tensor from a tensor or array, with one of ``ndims`` dimensions."""
    try:
        value = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a tensor or array, got {type(value).__name__}") from None
    value = value.detach().cpu().float()
    if value.dim() not in ndims:
        expected = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{name} must be {expected}, got shape {tuple(value.shape)}")
    return _checks.tensor(name, value)


def box_patch(box: torch.Tensor, colour: str, style: str = "-", label=None) -> Rectangle:
    """A rectangle from ``x0, y0, x1, y1`` in pixel coordinates (in the legend as ``label``)."""
    x0, y0, x1, y1 = box.tolist()
    return Rectangle(
        (x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linestyle=style, label=label
    )


def _show(ax, image: torch.Tensor, title: str, unit: str) -> None:
    """Draw ``[C, H, W]`` (C = 1 grey, 3 colour) with small titles and labels in ``unit``,
    each pixel a flat square (nearest neighbour: noise is not smoothed into moiré)."""
    pixels = image[0] if image.shape[0] == 1 else image.permute(1, 2, 0).clamp(0, 1)
    ax.imshow(pixels.numpy(), cmap="gray", interpolation="nearest")
    _style(ax, grid=None, small=True, title=title, xlabel=f"x ({unit})", ylabel=f"y ({unit})")


def plot_glimpses(
    canvases,
    boxes,
    glimpses,
    labels=None,
    predictions=None,
    true_boxes=None,
    n=8,
    glimpse_names=None,
) -> Figure:
    """For ``n`` items (columns), the canvas with its attention box(es) above the glimpse(s).

    canvases ``[B, C, H, W]``; boxes ``[B, 4]`` or ``[B, K, 4]`` in pixel coordinates (red,
    then orange, magenta, cyan); glimpses ``[B, C, h, w]`` or ``[B, K, C, h, w]``; labels,
    predictions ``[B]``; true_boxes ``[B, 4]`` (dashed green); ``glimpse_names``: K row titles.
    A legend under the panels names the boxes.
    """
    canvases = as_tensor("canvases", canvases, (4,))
    boxes = as_tensor("boxes", boxes, (2, 3))
    glimpses = as_tensor("glimpses", glimpses, (4, 5))
    boxes = boxes[:, None] if boxes.dim() == 2 else boxes
    glimpses = glimpses[:, None] if glimpses.dim() == 4 else glimpses
    k = glimpses.shape[1]
    if boxes.shape[-1] != 4 or boxes.shape[1] != k:
        raise ValueError(
            f"boxes must have shape [B, K, 4] with K = {k} (the glimpses'), "
            f"got {tuple(boxes.shape)}"
        )
    true_boxes = None if true_boxes is None else as_tensor("true_boxes", true_boxes, (2,))
    labels = None if labels is None else as_tensor("labels", labels, (1,))
    predictions = None if predictions is None else as_tensor("predictions", predictions, (1,))
    named = {"canvases": canvases, "boxes": boxes, "glimpses": glimpses, "labels": labels}
    named.update(predictions=predictions, true_boxes=true_boxes)
    sizes = {name: len(value) for name, value in named.items() if value is not None}
    n = _checks.positive_int("n", n)
    if len(set(sizes.values())) != 1:
        listed = ", ".join(f"{name} {size}" for name, size in sizes.items())
        raise ValueError(f"{', '.join(sizes)} must have one batch size, got {listed}")
    n = min(n, len(canvases))
    if glimpse_names is None:
        glimpse_names = ["glimpse"] if k == 1 else [f"glimpse {j}" for j in range(k)]
    if len(glimpse_names) != k or not all(isinstance(name, str) for name in glimpse_names):
        raise ValueError(
            f"glimpse_names must be {k} strings, one per glimpse, got {glimpse_names!r}"
        )
    fig, axes = plt.subplots(1 + k, n, figsize=(2.0 * n, 2.1 * (1 + k)), squeeze=False)
    for i in range(n):
        title = [] if labels is None else [f"label {int(labels[i])}"]
        title += [] if predictions is None else [f"pred {int(predictions[i])}"]
        _show(axes[0, i], canvases[i], ", ".join(title) or f"item {i}", "pixels")
        for j in range(k):
            axes[0, i].add_patch(box_patch(boxes[i, j], BOX_COLOURS[j % len(BOX_COLOURS)]))
            _show(axes[1 + j, i], glimpses[i, j], glimpse_names[j], "glimpse px")
        if true_boxes is not None:
            axes[0, i].add_patch(box_patch(true_boxes[i], "lime", "--"))
    # The legend's boxes: the drawn style, their size does not matter.
    entries = [
        (f"{name} box", BOX_COLOURS[j % len(BOX_COLOURS)], "-")
        for j, name in enumerate(glimpse_names)
    ]
    entries += [] if true_boxes is None else [("true digit box", "lime", "--")]
    handles = [box_patch(torch.zeros(4), colour, style, label) for label, colour, style in entries]
    ncols = len(handles) if n > 1 else 1  # one panel is too narrow for two entries a row
    rows = -(-len(handles) // ncols)
    fig.tight_layout(rect=(0, (0.1 + 0.2 * rows) / fig.get_figheight(), 1, 1))
    fig.legend(handles=handles, loc="lower center", ncols=ncols, fontsize=_SMALL, frameon=False)
    return fig


def map_extent(map_size: tuple[int, int], image_size: tuple[int, int]) -> tuple[float, ...]:
    """``imshow`` extent that puts the map's corner pixel centres on the image's corners, as
    DHAM reads a map of any resolution."""
    (h, w), (height, width) = map_size, image_size
    dx, dy = (width - 1) / max(w - 1, 1), (height - 1) / max(h - 1, 1)
    return (-dx / 2, (w - 0.5) * dx, (h - 0.5) * dy, -dy / 2)


def plot_learning_curves(history, held_out: str = "validation") -> Figure:
    """Loss, accuracy (in %) and, when recorded, the box's IoU and centre error per epoch.

    ``history``: equally long lists under :data:`HISTORY_KEYS` (accuracies as fractions) and
    optionally "test_iou" and "test_centre_error" (pixels: an IoU alone cannot tell a glimpse
    in the right place but too large from one elsewhere). ``held_out`` names the set that
    ``fit`` scored each epoch (its ``test_*`` keys): the validation digits for a run on the
    training split, the test digits for one on training and validation."""
    if not isinstance(history, dict):
        raise TypeError(f"history must be a dict of lists, got {type(history).__name__}")
    missing = [k for k in HISTORY_KEYS if k not in history]
    if missing:
        raise ValueError(f"history must have the keys {HISTORY_KEYS}, missing {missing}")
    lengths = {k: len(history[k]) for k in (*HISTORY_KEYS, "test_iou") if k in history}
    if len(set(lengths.values())) != 1 or lengths["epoch"] == 0:
        raise ValueError(
            f"history lists must be non-empty and of one length, got lengths {lengths}"
        )
    for key in ("train_acc", "test_acc", "test_iou"):
        # A model without an attention box records its IoU as NaN.
        values = [v for v in history.get(key, []) if not (key == "test_iou" and math.isnan(v))]
        if any(not 0 <= v <= 1 for v in values):
            raise ValueError(f"history[{key!r}] must be fractions in [0, 1], got {list(values)}")
    boxes = [k for k in _BOX_PANELS if any(not math.isnan(v) for v in history.get(k, []))]
    fig, axes = plt.subplots(1, 2 + len(boxes), figsize=(3.7 * (2 + len(boxes)), 3.4))
    epoch = history["epoch"]
    for split, label in (("train", "train"), ("test", held_out)):
        axes[0].plot(epoch, history[f"{split}_loss"], "o-", label=label)
        axes[1].plot(epoch, [100 * a for a in history[f"{split}_acc"]], "o-", label=label)
    axes[0].set(title="cross-entropy loss", ylabel="loss")
    axes[1].set(title="classification accuracy", ylabel="accuracy (%)")
    for ax, key in zip(axes[2:], boxes, strict=True):
        ax.plot(epoch, history[key], "o-", color="C2", label=held_out)
        title, ylabel, ylim = _BOX_PANELS[key]
        ax.set(title=title, ylabel=ylabel, ylim=ylim)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
        _style(ax, xlabel="epoch")
    fig.tight_layout()
    return fig


def _model_styles(labels) -> dict[str, dict[str, str]]:
    """``color`` and ``marker`` per label ("dham", "pooled_cnn w16"): the colour of the model
    named before the space (:data:`MODEL_COLOURS`; another model takes C7, C8, ...) and, in
    the labels' order, a marker per width of one model ("o", then "s", "^", "D")."""
    labels = list(dict.fromkeys(str(label) for label in labels))
    models = [label.split()[0] for label in labels]
    extra = [model for model in dict.fromkeys(models) if model not in MODEL_COLOURS]
    colours = {**MODEL_COLOURS, **{m: f"C{(7 + i) % 10}" for i, m in enumerate(extra)}}
    styles, seen = {}, Counter()
    for label, model in zip(labels, models, strict=True):
        marker = _WIDTH_MARKERS[seen[model] % len(_WIDTH_MARKERS)]
        styles[label] = {"color": colours[model], "marker": marker}
        seen[model] += 1
    return styles


def _metric_label(metric: str) -> str:
    return _METRIC_LABELS.get(metric, f"{metric} (%)" if is_accuracy(metric) else metric)


def _errorbars(ax, x, mid, low, high, **style) -> None:
    """Points ``mid`` at ``x`` with bars from ``low`` to ``high`` (none where they are NaN)."""
    bars = np.abs(np.array([low, high], dtype=float).reshape(2, -1) - mid)
    ax.errorbar(x, mid, yerr=np.nan_to_num(bars), fmt="o", markersize=4, **style)


def plot_found_by_width(outcomes, level: float = 0.95) -> Figure:
    """Per SNR, one small panel each (no series overlap): top, the share of runs that found
    the digit per attention width with its Wilson interval; bottom, the mean test accuracy of
    those runs with its bootstrap interval (a bare point for one run). Notebook 05 and
    ``report``."""
    snrs = sorted(outcomes["snr_db"].unique(), reverse=True)
    fig, axes = plt.subplots(
        2, len(snrs), figsize=(2.0 * len(snrs) + 0.6, 5.6), sharex=True, sharey="row", squeeze=False
    )
    rows = {  # y label (the first panel's; the others share it): columns
        "runs that found\nthe digit (%)": ("found", "found_low", "found_high"),
        "their test\naccuracy (%)": ("acc_found", "acc_low", "acc_high"),
    }
    for col, snr in enumerate(snrs):
        table = outcome_table(outcomes[outcomes["snr_db"] == snr], level=level)
        x = np.log2(table["width"].to_numpy(dtype=float))
        for ax, (ylabel, columns) in zip(axes[:, col], rows.items(), strict=True):
            values = (100 * table[c].to_numpy(dtype=float) for c in columns)
            _errorbars(ax, x, *values, color="C0", capsize=2, linewidth=1)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=_SMALL)
            ax.set_ylabel(" " if col else ylabel, fontsize=_TYPE)
        n = int(table["runs"].iloc[0])
        axes[0, col].set_title(f"{snr_label(snr)} ({n} runs a width)", fontsize=_TYPE)
        axes[1, col].set_title(f"{snr_label(snr)}: runs that found it", fontsize=_TYPE)
        axes[1, col].set_xticks(x, [str(int(w)) for w in table["width"]])
        axes[1, col].set_xlabel("attention width", fontsize=_TYPE)  # the rows share it
    axes[0, 0].set_ylim(0, 105)
    fig.suptitle(
        f"DHAM by attention width: did the run find the digit, and how well it read it "
        f"({level:.0%} intervals)",
        fontsize=_TYPE + 1,
    )
    fig.tight_layout()
    return fig


def plot_model_comparison(
    summary, metrics: tuple[str, ...] = ("test_acc", "iou"), titles: dict | None = None
) -> Figure:
    """Each model's mean over seeds with its 95% interval (Student's t) from a
    ``results.summarise`` table, a panel per metric (notebook 07). Points, not bars, so each
    axis spans the data, each model in its :data:`MODEL_COLOURS` colour; a metric a model lacks
    (NaN) and the oracle's box metrics (exact by construction) are left out of the panel, as
    the note under its axis says, and the models it shows sit side by side. When every metric
    is an accuracy the panels share one y axis, so their spreads compare. ``titles``: metric ->
    panel title, for this figure only (the others keep their usual titles)."""
    if summary.empty:
        raise ValueError("summary must not be empty")
    sharey = all(is_accuracy(metric) for metric in metrics)
    size = (3.6 * len(metrics), 3.4)
    fig, axes = plt.subplots(1, len(metrics), figsize=size, sharey=sharey, squeeze=False)
    models = summary["model"].astype(str).tolist()
    names = [  # a model that comes in several widths is told apart by its width
        f"{model} w{width}" if models.count(model) > 1 and "width" in summary else model
        for model, width in zip(models, summary.get("width", models), strict=True)
    ]
    styles = _model_styles(names)
    for ax, metric in zip(axes[0], metrics, strict=True):
        scale = 100 if is_accuracy(metric) else 1
        means = summary[f"{metric}_mean"].to_numpy() * scale
        lows, highs = summary_intervals(summary, metric, is_accuracy(metric)) * scale
        shown, left_out = [], []
        for i, (mean, low, high) in enumerate(zip(means, lows, highs, strict=True)):
            if math.isnan(mean) or metric in _BY_CONSTRUCTION.get(models[i], ()):
                left_out.append(names[i])
                continue
            yerr = [[mean - low], [high - mean]]
            ax.errorbar(len(shown), mean, yerr, capsize=4, linestyle="", **styles[names[i]])
            shown.append(names[i])
        ax.set_xticks(range(len(shown)), shown, rotation=30, ha="right")
        title = (titles or {}).get(metric, _metric_label(metric))
        unit = "accuracy (%)" if is_accuracy(metric) else _metric_label(metric)
        # What a panel leaves out is said under its axis, never printed across its data.
        xlabel = f"model\n(not shown: {', '.join(left_out)})" if left_out else "model"
        xlim = (-0.5, max(len(shown), 1) - 0.5)
        _style(ax, grid="y", xlim=xlim, title=title, xlabel=xlabel, ylabel=unit)
    fig.suptitle("by model: mean over seeds, 95% interval", fontsize=10)
    fig.tight_layout()
    return fig


_FLOPS_KINDS = ("mean of all seeds", "seed chosen on validation")
_FLOPS_AXES = {"xlabel": "MFLOP per canvas (log scale)", "ylabel": "test accuracy (%)"}


def _log_scale(axis) -> None:
    """A log scale on ``axis`` ticked at 1, 2, 5, 10, 20, ... and labelled as plain numbers."""
    axis.axes.set(**{f"{axis.axis_name}scale": "log"})
    axis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    axis.set_major_formatter("{x:g}")
    axis.set_minor_formatter(NullFormatter())


def plot_accuracy_against_flops(points) -> Figure:
    """Test accuracy against FLOPs per canvas (notebook 07): a column of panels per canvas
    side, a row per summary of a model's seeds. ``points`` has a row per model, canvas and
    kind: ``label`` (the model), ``canvas`` (px), ``mflop`` (millions of FLOPs of one forward
    pass on one canvas), ``acc``, ``low``, ``high`` (test accuracy and its 95% interval,
    fractions) and ``kind``, ``"mean of all seeds"`` or ``"seed chosen on validation"``. Each
    row's accuracy axis spans its own intervals, so a wide one does not flatten the others;
    a model keeps its :data:`MODEL_COLOURS` colour in every panel (its widths, as in
    ``"pooled_cnn w16"``, a marker each), named in a legend under the panels."""
    needed = {"label", "canvas", "mflop", "acc", "low", "high", "kind"}
    if len(points) == 0 or not needed <= set(points.columns):
        raise ValueError(f"points must hold at least one row with the columns {sorted(needed)}")
    unknown = set(points["kind"]) - set(_FLOPS_KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; use {list(_FLOPS_KINDS)}")
    sides = sorted(points["canvas"].unique())
    kinds = [kind for kind in _FLOPS_KINDS if kind in set(points["kind"])]
    styles = _model_styles(points["label"])
    size = (3.9 * len(sides), 3.1 * len(kinds) + 0.8)
    fig, axes = plt.subplots(len(kinds), len(sides), figsize=size, squeeze=False)
    for row_axes, kind in zip(axes, kinds, strict=True):
        rows = points[points["kind"] == kind]
        # A margin of 1 point either side, so an interval that ends at 100% keeps its cap in view.
        ylim = (max(100 * rows["low"].min() - 1, 0), min(100 * rows["high"].max(), 100) + 1)
        for ax, side in zip(row_axes, sides, strict=True):
            for point in rows[rows["canvas"] == side].itertuples():
                acc, low, high = 100 * point.acc, 100 * point.low, 100 * point.high
                yerr = [[acc - low], [high - acc]]
                style = styles[str(point.label)]
                ax.errorbar(point.mflop, acc, yerr, capsize=3, linestyle="", **style)
            _log_scale(ax.xaxis)
            ax.margins(x=0.12)
            title = f"{side}×{side} canvases: {kind}"
            _style(ax, title=title, ylim=ylim, small=True, **_FLOPS_AXES)
    handles = [
        plt.Line2D([], [], linestyle="", label=label, **style) for label, style in styles.items()
    ]
    fig.suptitle(
        "Test accuracy against compute, 95% intervals "
        "(Student's t over seeds; Wilson over the test digits for one run)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.legend(handles=handles, loc="lower center", ncols=min(len(handles), 4), fontsize=_SMALL)
    return fig


def plot_error_against_flops(ours, published) -> Figure:
    """Test error against FLOPs per canvas, both on log scales (notebook 08). ``ours``: a row
    per model with ``model``, ``mflop`` (millions of FLOPs of one forward pass on one canvas),
    ``error``, ``low`` and ``high`` (percent; NaN bounds for a single seed), drawn as points
    with their 95% intervals; ``published``: a row per published result with ``model`` and
    ``error`` (percent), drawn as grey dashed lines across, since the papers give no FLOPs.
    Each model in its :data:`MODEL_COLOURS` colour."""
    needed = {"model", "mflop", "error", "low", "high"}
    if len(ours) == 0 or not needed <= set(ours.columns):
        raise ValueError(f"ours must hold at least one row with the columns {sorted(needed)}")
    if not {"model", "error"} <= set(published.columns):
        raise ValueError("published must have the columns ['error', 'model']")
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for row in published.itertuples():
        ax.axhline(row.error, color="grey", linestyle="--", linewidth=0.8)
        text, at_right = f"{row.model}: {row.error:g}%", ("axes fraction", "data")
        ax.annotate(
            text, (0.99, row.error), xycoords=at_right, ha="right", va="bottom", fontsize=_SMALL
        ).set_color("dimgrey")
    styles = _model_styles(ours["model"])
    for row in ours.itertuples():
        yerr = None if math.isnan(row.low) else [[row.error - row.low], [row.high - row.error]]
        colour = styles[str(row.model)]["color"]
        ax.errorbar(row.mflop, row.error, yerr, fmt="o", capsize=3, color=colour, label=row.model)
    _log_scale(ax.xaxis)
    _log_scale(ax.yaxis)
    ax.margins(x=0.3, y=0.1)
    title = "Test error against compute: ours with 95% intervals, published as lines"
    _style(ax, title=title, xlabel="MFLOP per canvas", ylabel="test error (%)")
    ax.legend(loc="upper left", fontsize=_SMALL)
    return fig


def save(figure: Figure, path) -> None:
    """Write ``figure`` to ``path`` (PNG at 100 dpi, tight) and close it."""
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
