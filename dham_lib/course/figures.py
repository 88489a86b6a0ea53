"""The classroom's figures (notebooks 01 to 06), each a matplotlib ``Figure`` (no
``plt.show``), pixel i's centre drawn at i; a training run's and a results table's figures
are in :mod:`dham_lib.study.figures`.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from dham_lib import _checks
from dham_lib.course.widgets import _number
from dham_lib.pmf import expected_norm, expected_position
from dham_lib.sampling import glimpse_box
from dham_lib.study.figures import box_patch, map_extent

# The legend of a slider figure's canvas panel.
LEGEND = {"loc": "upper right", "fontsize": 8, "framealpha": 0.8}


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
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    label_axes(ax, title, f"x ({unit} pixels)", f"y ({unit} pixels)")


def canvas_grid(canvases: torch.Tensor, titles, ncols: int, panel=(2.2, 2.3)):
    """Canvases ``[B, 1, H, W]`` in rows of ``ncols`` panels of ``panel`` inches, titled, in
    small type (notebooks 04 to 06): the figure and the B axes used."""
    nrows = -(-len(canvases) // ncols)
    figsize = (panel[0] * ncols, panel[1] * nrows)
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False)
    for ax in axes.flat[len(canvases) :]:
        ax.axis("off")
    for ax, canvas, title in zip(axes.flat, canvases, titles, strict=False):
        ax.imshow(canvas[0].numpy(), cmap="gray")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("x (pixels)", fontsize=8)
        ax.set_ylabel("y (pixels)", fontsize=8)
        ax.tick_params(labelsize=8)
    return fig, axes.flat[: len(canvases)]


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
    ax.legend(loc="upper right", fontsize=8)
    ax.set(title=title, xlabel="x (pixels)", ylabel="y (pixels)")
    return fig


def plot_glimpse_sizes(stats: dict[str, dict[str, torch.Tensor]], title: str | None = None):
    """Glimpse box side against digit box side (pixels), one scatter per model's
    :func:`~dham_lib.course.inspect.glimpse_stats` in ``stats`` (notebook 04); the grey line
    is "glimpse side = digit side", points below it glimpses tighter than the digit."""
    if not isinstance(stats, dict) or not stats:
        raise ValueError("stats must be a non-empty dict of name -> glimpse_stats(...)")
    fig, ax = plt.subplots(figsize=(5.4, 4.4))
    low, high = math.inf, -math.inf
    for i, (name, numbers) in enumerate(stats.items()):
        digit, side = numbers["digit_side"], numbers["glimpse_side"]
        ax.scatter(digit, side, s=6, alpha=0.45, color=f"C{i}", label=name)
        low = min(low, digit.min().item(), side.min().item())
        high = max(high, digit.max().item(), side.max().item())
    ax.plot([low, high], [low, high], color="0.5", linestyle="--", label="glimpse = digit box")
    ax.legend(fontsize=8, markerscale=2)
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
