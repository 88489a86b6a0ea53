"""The classroom's figures (notebooks 01 to 06), each a matplotlib ``Figure`` (no
``plt.show``), pixel i's centre drawn at i; a training run's and a results table's figures
are in :mod:`dham_lib.study.figures`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from dham_lib import _checks
from dham_lib.course.widgets import _number
from dham_lib.pmf import expected_norm, expected_position
from dham_lib.sampling import glimpse_box
from dham_lib.study.figures import (
    _TYPE,
    _errorbars,
    box_patch,
    map_extent,
    plot_found_by_width,  # noqa: F401 (notebooks/student/05 calls it from here)
)

# The legend of a slider figure's canvas panel: centred below the axes and their x label
# (borderaxespad, in font sizes, clears the tick labels and the label), off the canvas.
LEGEND = {
    "loc": "upper center",
    "bbox_to_anchor": (0.5, 0),
    "borderaxespad": 4.2,
    "ncols": 2,
    "fontsize": 9,
    "frameon": False,
}


def label_axes(ax, title: str, xlabel: str, ylabel: str) -> None:
    """Title and axis labels at the sizes of every slider figure of notebooks 01 to 06."""
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)


def draw_image(ax, image: torch.Tensor, title: str, unit: str = "canvas") -> None:
    """One grey image ``[..., H, W]`` on ``ax``, its axes in ``unit`` pixels and cut at the
    image's edge, so a box that reaches past it is cut too (notebooks 02 to 06)."""
    height, width = image.shape[-2:]
    ax.imshow(image.reshape(height, width).cpu().numpy(), cmap="gray")
    ax.set(xlim=(-0.5, width - 0.5), ylim=(height - 0.5, -0.5))
    label_axes(ax, title, f"x ({unit} pixels)", f"y ({unit} pixels)")


def canvas_grid(canvases: torch.Tensor, titles, ncols: int, panel=(2.2, 2.3), **style):
    """Canvases ``[B, 1, H, W]`` in rows of ``ncols`` panels of ``panel`` inches, titled, in
    small type (notebooks 04 to 06), ``style`` passed to ``imshow``: the figure and the B axes
    used."""
    nrows = -(-len(canvases) // ncols)
    figsize = (panel[0] * ncols, panel[1] * nrows)
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False)
    for ax in axes.flat[len(canvases) :]:
        ax.axis("off")
    for ax, canvas, title in zip(axes.flat, canvases, titles, strict=False):
        _canvas_panel(ax, canvas[0], title, 9, **style)
    return fig, axes.flat[: len(canvases)]


def _canvas_panel(ax, canvas: torch.Tensor, title: str, size: float, **style) -> None:
    """A grey canvas ``[H, W]`` on ``ax``, its title and pixel axes in ``size``-point type."""
    ax.imshow(canvas.numpy(), cmap="gray", **style)
    ax.set_title(title, fontsize=size)
    ax.set_xlabel("x (pixels)", fontsize=size)
    ax.set_ylabel("y (pixels)", fontsize=size)
    ax.tick_params(labelsize=9)


def one_image(name: str, value) -> torch.Tensor:
    """One grey image (or map) ``[H, W]``, ``[1, H, W]`` or ``[1, 1, H, W]``, at least 2×2, as
    a float CPU tensor ``[1, 1, H, W]``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() not in (2, 3, 4) or value.shape[:-2].numel() != 1 or min(value.shape[-2:]) < 2:
        raise ValueError(
            f"{name} must be one grey image [H, W], [1, H, W] or [1, 1, H, W] of at least "
            f"2×2 pixels, got shape {tuple(value.shape)}"
        )
    return _checks.tensor(name, value.detach().cpu().float().reshape(1, 1, *value.shape[-2:]))


def plot_pmf(pmf, tx=None, ty=None, s=None, image=None, title="attention PMF") -> Figure:
    """The PMF ``[H', W']`` or ``[1, 1, H', W']`` as a heat map with its mean and glimpse box
    (notebooks 04 and 06).

    ``tx, ty, s`` (numbers or one-element tensors, normalised; all or none) default to the
    PMF's mean and L2 norm. With ``image`` (``[H, W]`` or ``[1, 1, H, W]``) the PMF is laid
    over it, stretched to span it as DHAM reads it, and the axes are the image's pixels.
    """
    pmf = one_image("pmf", torch.as_tensor(pmf))
    given = [v is not None for v in (tx, ty, s)]
    if any(given) and not all(given):
        raise ValueError(f"tx, ty and s must be given together or not at all, got {given}")
    if any(given):
        values = {"tx": tx, "ty": ty, "s": s}
        tx, ty, s = (torch.tensor([[_number(n, v)]]) for n, v in values.items())
    else:
        (tx, ty), s = expected_position(pmf), expected_norm(pmf)
    image_size = map_size = tuple(pmf.shape[-2:])
    fig, ax = plt.subplots(figsize=(5, 4.2))
    if image is not None:
        image = one_image("image", torch.as_tensor(image))
        image_size = tuple(image.shape[-2:])
        ax.imshow(image[0, 0].numpy(), cmap="gray")
    extent = map_extent(map_size, image_size)
    alpha = 1.0 if image is None else 0.6
    heat = ax.imshow(pmf[0, 0].numpy(), cmap="viridis", alpha=alpha, extent=extent)
    fig.colorbar(heat, ax=ax, label="probability")
    box = glimpse_box(tx, ty, s, image_size=image_size)[0, 0]
    ax.add_patch(box_patch(box, "red", label="glimpse box (tx, ty) ± s"))
    mean_x, mean_y = (box[0] + box[2]).item() / 2, (box[1] + box[3]).item() / 2
    ax.plot([mean_x], [mean_y], "r+", markersize=12, label="mean (tx, ty)")
    ax.set(title=title, xlabel="x (pixels)", ylabel="y (pixels)")
    ax.legend(**LEGEND)  # below the axes, off the map
    fig.tight_layout()
    return fig


def plot_glimpse_sizes(stats: dict[str, dict[str, torch.Tensor]], title: str | None = None):
    """Glimpse box side against digit box side (pixels), one scatter per model's
    :func:`~dham_lib.course.inspect.glimpse_stats` in ``stats`` (notebook 04); the grey line
    is "glimpse side = digit side", points below it glimpses tighter than the digit."""
    if not isinstance(stats, dict) or not stats:
        raise ValueError("stats must be a non-empty dict of name -> glimpse_stats(...)")
    fig, ax = plt.subplots(figsize=(5.4, 4.4))
    for i, (name, numbers) in enumerate(stats.items()):
        digit, side = numbers["digit_side"], numbers["glimpse_side"]
        ax.scatter(digit, side, s=6, alpha=0.45, color=f"C{i}", label=name)
    sides = torch.cat([torch.cat([n["digit_side"], n["glimpse_side"]]) for n in stats.values()])
    low, high = sides.min().item(), sides.max().item()
    ax.plot([low, high], [low, high], color="0.5", linestyle="--", label="glimpse = digit box")
    ax.legend(fontsize=9, markerscale=2)
    ax.grid(alpha=0.3)
    ax.set(
        title=title or "glimpse size against digit size",
        xlabel="true digit box side (canvas pixels)",
        ylabel="glimpse box side (canvas pixels)",
    )
    fig.tight_layout()
    return fig


def plot_canvases(canvases, true_boxes, labels, ncols: int = 6) -> Figure:
    """A grid of canvases ``[B, 1, H, W]`` with their true boxes ``[B, 4]`` (dashed) and
    labels (notebooks 04 and 06)."""
    canvases = _checks.tensor("canvases", torch.as_tensor(canvases).float(), ndim=4)
    true_boxes = _checks.tensor("true_boxes", torch.as_tensor(true_boxes).float(), ndim=2)
    labels = torch.as_tensor(labels)
    if not len(canvases) == len(true_boxes) == len(labels) or true_boxes.shape[1] != 4:
        raise ValueError(
            f"canvases [B, 1, H, W], true_boxes [B, 4] and labels [B] must share B, got "
            f"{tuple(canvases.shape)}, {tuple(true_boxes.shape)}, {tuple(labels.shape)}"
        )
    sides = true_boxes[:, 2] - true_boxes[:, 0] + 1
    titles = [f"label {int(labels[i])}, {sides[i]:.0f} px" for i in range(len(labels))]
    ncols = min(_checks.positive_int("ncols", ncols), len(canvases))
    fig, axes = canvas_grid(canvases, titles, ncols)
    for ax, box in zip(axes, true_boxes, strict=True):
        ax.add_patch(box_patch(box, "lime", "--"))
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------- notebook 05's figures

_MODEL_NAMES = {"pooled_cnn": "CNN", "oracle": "oracle"}
_OUTCOME_STYLE = {
    "read": {"color": "C0", "marker": "o"},
    "misread": {"color": "C1", "marker": "s"},
    "never found": {"color": "C3", "marker": "x"},
}


def plot_noise_ladder(canvases: dict, digits, scale: int = 2) -> Figure:
    """The same canvases at several SNRs, a column per SNR (``canvases``: label -> ``[B, 1, H,
    W]``), a row per digit (``digits``: B labels), notebook 05. Each canvas pixel is drawn as
    ``scale`` × ``scale`` screen pixels at the figure's dpi, nearest neighbour, so the noise
    shows as it is, without the moiré of a resampled grid; every panel shows 0 as black and 1
    (the digit's strokes) as white, noise beyond that range saturating, so the digit keeps
    its shade across SNRs."""
    if not isinstance(canvases, dict) or not canvases:
        raise ValueError("canvases must be a non-empty dict of SNR label -> [B, 1, H, W]")
    grids = [
        _checks.tensor(name, torch.as_tensor(c).float(), ndim=4) for name, c in canvases.items()
    ]
    if len({tuple(grid.shape) for grid in grids}) != 1 or len(digits) != len(grids[0]):
        raise ValueError(
            "every entry of canvases must be [B, 1, H, W] of one shape, B = len(digits)"
        )
    scale = _checks.positive_int("scale", scale)
    shades = {"vmin": 0.0, "vmax": 1.0}  # the digit's range in every panel
    rows, cols, (height, width) = len(digits), len(grids), grids[0].shape[-2:]
    dpi = plt.rcParams["figure.dpi"]
    # Margins in screen pixels: room for the labels left and below, titles above each row.
    left, bottom, top, gap_x, gap_y = 70, 50, 60, 60, 70
    panel_w, panel_h = width * scale, height * scale
    fig_w = left + cols * panel_w + (cols - 1) * gap_x + 10
    fig_h = bottom + top + rows * panel_h + (rows - 1) * gap_y
    fig = plt.figure(figsize=(fig_w / dpi, fig_h / dpi), dpi=dpi)
    for row, digit in enumerate(digits):
        for col, (label, grid) in enumerate(zip(canvases, grids, strict=True)):
            x0 = left + col * (panel_w + gap_x)
            y0 = fig_h - top - (row + 1) * panel_h - row * gap_y
            ax = fig.add_axes((x0 / fig_w, y0 / fig_h, panel_w / fig_w, panel_h / fig_h))
            title = f"digit {int(digit)}, {label}"
            _canvas_panel(ax, grid[row, 0], title, _TYPE, interpolation="nearest", **shades)
    fig.suptitle(
        f"The same digits at falling SNR ({width}×{height} canvases, 1 canvas pixel = "
        f"{scale}×{scale} screen pixels; grey from 0 to 1, noise beyond it saturates)",
        fontsize=_TYPE + 1,
        y=1 - 12 / fig_h,
    )
    return fig


def plot_outcomes(outcomes, threshold: float, fraction: float = 0.9) -> Figure:
    """Each run of :func:`~dham_lib.study.results.attention_outcomes`: its test centre error
    (log scale) against its accuracy as a share of the oracle's, marked by outcome, with the
    two thresholds that define the outcomes (notebook 05); the legend sits below the axes."""
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for name, style in _OUTCOME_STYLE.items():
        runs = outcomes[outcomes["outcome"] == name]
        share = 100 * runs["test_acc"] / runs["oracle_acc"]
        label = f"{name} ({len(runs)} runs)"
        ax.scatter(runs["centre_error"], share, s=22, alpha=0.75, label=label, **style)
    found = f"found: centre error under {threshold:g} px"
    read = f"read: accuracy at least {fraction:.0%} of the oracle's"
    for line, value, style, label in (
        (ax.axvline, threshold, "--", found),
        (ax.axhline, 100 * fraction, ":", read),
    ):
        line(value, color="0.3", linestyle=style, linewidth=1, label=label)
    ax.set_xscale("log")
    label_axes(
        ax,
        "What each DHAM run did on its test canvases",
        "test centre error, mean over canvases (pixels, log scale)",
        "test accuracy / oracle's, same SNR and seed (%)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def plot_runs_by_model(frame, snrs, level: float = 0.95) -> Figure:
    """Test accuracy of every run (grey dots, each shifted sideways by a seeded ±0.08 so
    equal runs show apart) and each model's mean with its Student-t interval (black), a panel
    per SNR in ``snrs``: DHAM's widths, then the other models (notebook 05's CNN under
    noise)."""
    from dham_lib.study.results import MODEL_ORDER, mean_interval, snr_label

    fig, axes = plt.subplots(
        1, len(snrs), figsize=(4.6 * len(snrs), 4.0), sharey=True, squeeze=False
    )
    jitter = np.random.default_rng(0)  # seeded: the figure draws the same every time
    for ax, snr in zip(axes[0], snrs, strict=True):
        runs = frame[frame["snr_db"] == snr]
        groups = [(f"DHAM {int(w)}", r) for w, r in runs[runs["model"] == "dham"].groupby("width")]
        others = runs[runs["model"] != "dham"].groupby("model")
        others = sorted(others, key=lambda pair: MODEL_ORDER.index(pair[0]))
        groups += [(_MODEL_NAMES.get(m, m), r) for m, r in others]
        for i, (_, group) in enumerate(groups):
            accuracy = group["test_acc"].to_numpy(dtype=float)
            x = i + 0.12 + jitter.uniform(-0.08, 0.08, len(accuracy))  # equal runs: apart
            ax.scatter(x, 100 * accuracy, s=12, color="0.55")
            mean, std = accuracy.mean(), accuracy.std(ddof=1) if len(accuracy) > 1 else 0.0
            interval = mean_interval(mean, std, len(accuracy), level, True)
            shown = (100 * v for v in (mean, *interval))
            _errorbars(ax, i - 0.12, *shown, color="black", capsize=3)
        ax.set_xticks(
            range(len(groups)), [name for name, _ in groups], rotation=45, ha="right", fontsize=9
        )
        ax.grid(axis="y", alpha=0.3)
        label_axes(
            ax,
            f"{snr_label(snr)}: every run (grey), mean and {level:.0%} interval",
            "model (DHAM: attention width)",
            "test accuracy (%)",
        )
    fig.tight_layout()
    return fig
