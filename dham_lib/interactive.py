"""The notebooks' sliders, answer checks and Colab links (notebooks 01 to 03, and later ones).

Every slider callback here is a pure function of its slider values that returns a
:class:`View`: the matplotlib ``Figure`` it draws and the numbers it shows, a dict
of floats. A notebook calls it once with the default values (so the figure shows
on GitHub too, where widgets do not), then wires it to sliders::

    view = pmf_explorer(peak_x=0.3, peak_y=-0.2, spread=0.15, temperature=1.0)
    print(format_numbers(view.numbers))
    show_explorer(
        pmf_explorer,
        peak_x=make_slider("peak x", 0.3, -1, 1, 0.05),
        ...
    )

The callbacks take normalised coordinates (-1 and +1 are the centres of the first
and last pixel) and draw in pixel coordinates (the centre of pixel i is at i), as
everywhere in ``dham_lib``. The widgets use only what ipywidgets 7.7 (Colab) and
8.x share; figures are plain inline matplotlib (no ipympl, which Colab lacks).
"""

from __future__ import annotations

import base64
import io
import math
import traceback
from collections.abc import Callable, Mapping
from typing import NamedTuple

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from dham_lib import _checks
from dham_lib.pmf import expected_norm, expected_position, pixel_axis, spatial_softmax
from dham_lib.sampling import bilinear_sample, glimpse, glimpse_box, to_normalised, to_pixels
from dham_lib.viz import _box_patch

REPOSITORY = "https://github.com/dham-course/dham-course"
BRANCH = "main"

# The first code cell of every notebook, word for word (tests/test_notebooks.py checks it).
# DHAM_FORCE_COLAB=1 runs it outside Colab and DHAM_REPO_URL points it at another
# clone, so the cell can be tried offline.
COLAB_CELL = f"""\
# On Colab only: fetch the course and install it beside Colab's own PyTorch (never reinstalled).
import os
import sys

IN_COLAB = "google.colab" in sys.modules or os.environ.get("DHAM_FORCE_COLAB") == "1"
if IN_COLAB and not os.path.isdir("../dham_lib"):  # not yet inside the course's notebooks/
    REPO_URL = os.environ.get("DHAM_REPO_URL", "{REPOSITORY}")
    if not os.path.isdir("dham-course"):
        !git clone --quiet --depth 1 {{REPO_URL}} dham-course
    # Colab's torch already satisfies torch>=2.2, so pip leaves it as it is.
    %pip install --quiet --editable dham-course
    sys.path.insert(0, os.path.abspath("dham-course"))  # importable without a restart
    %cd dham-course/notebooks"""

WIDGET_FALLBACK = (
    "[Sliders: run this notebook in Jupyter or Colab to move them; "
    "the figure above shows their default values.]"
)


class View(NamedTuple):
    """What every slider callback returns: the figure and the numbers it shows."""

    figure: Figure
    numbers: dict[str, float]


# --------------------------------------------------------------------------- links


def colab_url(notebook: str, student: bool = False) -> str:
    """The "Open in Colab" address of ``notebooks/<notebook>`` on the course's main branch,
    or of its student edition ``notebooks/student/<notebook>``."""
    if not isinstance(notebook, str) or not notebook.endswith(".ipynb") or "/" in notebook:
        raise ValueError(f"notebook must be a file name like '01_pmf_math.ipynb', got {notebook!r}")
    repo = REPOSITORY.removeprefix("https://github.com/")
    folder = "notebooks/student" if student else "notebooks"
    return f"https://colab.research.google.com/github/{repo}/blob/{BRANCH}/{folder}/{notebook}"


def colab_badge(notebook: str, student: bool = False) -> str:
    """The Markdown of the "Open in Colab" badge for the notebook (or its student edition)."""
    badge = "https://colab.research.google.com/assets/colab-badge.svg"
    return f"[![Open In Colab]({badge})]({colab_url(notebook, student)})"


# --------------------------------------------------------------------------- numbers and checks


def format_numbers(numbers: Mapping[str, float], digits: int = 3) -> str:
    """One line ``name = value`` per entry, values with ``digits`` decimals (ints as they are)."""
    if not isinstance(numbers, Mapping):
        raise TypeError(f"numbers must be a dict of name -> number, got {type(numbers).__name__}")
    width = max((len(str(k)) for k in numbers), default=0)
    lines = []
    for name, value in numbers.items():
        shown = str(value) if isinstance(value, int) else f"{float(value):.{digits}f}"
        lines.append(f"{name:<{width}} = {shown}")
    return "\n".join(lines)


def check_answers(
    answers: Mapping[str, float], expected: Mapping[str, float], atol: float = 1e-3
) -> None:
    """Compare a student's numbers with the expected ones; print a verdict and assert.

    Prints "Correct: ..." when every answer is within ``atol`` of its expected
    value; otherwise prints, for each answer that is off or missing, what it is
    and what was expected, and raises ``AssertionError``. Answers may be numbers,
    one-element tensors or arrays.
    """
    if not isinstance(answers, Mapping) or not isinstance(expected, Mapping):
        raise TypeError("answers and expected must be dicts of name -> number")
    atol = _checks.positive("atol", atol)
    problems = []
    for name, want in expected.items():
        if name not in answers or answers[name] is None:
            problems.append(f"{name}: missing (expected {float(want):.4f})")
            continue
        try:
            got = float(answers[name])
        except (TypeError, ValueError):
            problems.append(f"{name}: {answers[name]!r} is not a number")
            continue
        if not abs(got - float(want)) <= atol:
            problems.append(f"{name}: you have {got:.4f}, expected {float(want):.4f}")
    if problems:
        print("Not yet:\n  " + "\n  ".join(problems))
        raise AssertionError(f"{len(problems)} of {len(expected)} answers are off: {problems}")
    agree = "the answer agrees" if len(expected) == 1 else f"all {len(expected)} answers agree"
    print(f"Correct: {agree} (within {atol:g}).")


# --------------------------------------------------------------------------- sliders


def make_slider(
    description: str,
    value: float,
    min: float,  # noqa: A002 - the ipywidgets name
    max: float,  # noqa: A002
    step: float,
    readout_format: str | None = None,
):
    """A slider that reports its value only when released (``continuous_update=False``).

    An ``IntSlider`` when ``value``, ``min``, ``max`` and ``step`` are all ints,
    else a ``FloatSlider``. Works with ipywidgets 7.7 and 8.x.
    """
    import ipywidgets as widgets

    if not isinstance(description, str) or not description:
        raise ValueError(f"description must be a non-empty str, got {description!r}")
    numbers = {"value": value, "min": min, "max": max, "step": step}
    for name, number in numbers.items():
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise TypeError(f"{name} must be a number, got {number!r}")
        if not math.isfinite(number):
            raise ValueError(f"{name} must be finite, got {number}")
    if not min < max:
        raise ValueError(f"min must be < max, got min={min}, max={max}")
    if not min <= value <= max:
        raise ValueError(f"value must lie in [min, max] = [{min}, {max}], got {value}")
    if not step > 0:
        raise ValueError(f"step must be > 0, got {step}")
    options = {
        "description": description,
        "continuous_update": False,
        "style": {"description_width": "initial"},
        "layout": widgets.Layout(width="330px"),
        **numbers,
    }
    if all(isinstance(v, int) for v in numbers.values()):
        return widgets.IntSlider(**options)
    return widgets.FloatSlider(readout_format=readout_format or ".2f", **options)


def view_outputs(view: View) -> tuple[dict, ...]:
    """``view`` as Jupyter outputs: its figure as a PNG, then its numbers as printed text."""
    buffer = io.BytesIO()
    view.figure.savefig(buffer, format="png", bbox_inches="tight")
    png = base64.b64encode(buffer.getvalue()).decode("ascii")
    outputs = [
        {
            "output_type": "display_data",
            "data": {"image/png": png, "text/plain": repr(view.figure)},
            "metadata": {},
        }
    ]
    if view.numbers:
        text = format_numbers(view.numbers) + "\n"
        outputs.append({"output_type": "stream", "name": "stdout", "text": text})
    return tuple(outputs)


def _error_outputs(error: Exception) -> tuple[dict, ...]:
    text = "".join(traceback.format_exception_only(type(error), error))
    return ({"output_type": "stream", "name": "stderr", "text": text},)


def build_explorer(fn: Callable[..., View], fixed: Mapping | None = None, **sliders):
    """Wire ``sliders`` (keyword = argument of ``fn``) to ``fn`` and return the widget.

    ``fn(**fixed, **slider_values)`` must return a :class:`View`; its figure and
    numbers replace the ``Output`` widget's contents whenever a slider is released.
    The figure is closed once drawn, so moving a slider does not pile up open figures;
    an error raised while a slider moves is shown in place of the figure.

    The outputs are set on the widget directly rather than captured with
    ``interactive_output``: that capture, inside the executing cell, made nbclient (so
    Voilà and nbconvert) wait out its whole cell timeout in 2 of 5 runs of the
    ``make app`` page (0 of 5 this way), with the kernel idle.
    """
    import ipywidgets as widgets

    if not callable(fn):
        raise TypeError(f"fn must be a callable returning a View, got {type(fn).__name__}")
    if not sliders:
        raise ValueError("sliders must name at least one slider, got none")
    for name, slider in sliders.items():
        if not isinstance(slider, widgets.ValueWidget):
            raise TypeError(f"slider {name!r} must be an ipywidgets slider, got {slider!r}")
    fixed = dict(fixed or {})
    clash = sorted(set(fixed) & set(sliders))
    if clash:
        raise ValueError(f"fixed and sliders must not share arguments, got both for {clash}")

    output = widgets.Output()

    def draw() -> tuple[dict, ...]:
        view = fn(**fixed, **{name: slider.value for name, slider in sliders.items()})
        if not isinstance(view, View):
            raise TypeError(f"{fn.__name__} must return a View, got {type(view).__name__}")
        try:
            return view_outputs(view)
        finally:
            plt.close(view.figure)

    def redraw(change) -> None:
        try:
            output.outputs = draw()
        except Exception as error:  # a bad slider value must not kill the explorer
            output.outputs = _error_outputs(error)

    output.outputs = draw()  # the first drawing raises: a bad starting value is a bug
    for slider in sliders.values():
        slider.observe(redraw, names="value")
    controls = widgets.HBox(list(sliders.values()), layout=widgets.Layout(flex_flow="row wrap"))
    return widgets.VBox([controls, output])


def show_explorer(fn: Callable[..., View], fixed: Mapping | None = None, **sliders) -> None:
    """Build the explorer (see :func:`build_explorer`) and display it.

    Where widgets cannot run (GitHub, a static site) the output reads as a short
    note instead of the widget's long text form.
    """
    from IPython.display import display

    box = build_explorer(fn, fixed, **sliders)
    bundle = {
        "text/plain": WIDGET_FALLBACK,
        # The same view reference ipywidgets 7.7 and 8.x display for a widget.
        "application/vnd.jupyter.widget-view+json": {
            "version_major": 2,
            "version_minor": 0,
            "model_id": box.model_id,
        },
    }
    display(bundle, raw=True)


# --------------------------------------------------------------------------- checks of inputs


def _number(name: str, value, low: float | None = None, high: float | None = None) -> float:
    """A finite real number, optionally within ``[low, high]``."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value}")
    return float(value)


def _image(name: str, value) -> torch.Tensor:
    """One grey image ``[H, W]``, ``[1, H, W]`` or ``[1, 1, H, W]`` as float ``[1, 1, H, W]``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() not in (2, 3, 4) or value.shape[:-2].numel() != 1:
        raise ValueError(
            f"{name} must be one grey image [H, W], [1, H, W] or [1, 1, H, W], "
            f"got shape {tuple(value.shape)}"
        )
    value = value.detach().cpu().float().reshape(1, 1, *value.shape[-2:])
    _checks.tensor(name, value)
    if min(value.shape[-2:]) < 2:
        raise ValueError(f"{name} must be at least 2×2 pixels, got shape {tuple(value.shape)}")
    return value


def _label(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)


# --------------------------------------------------------------------------- notebook 01


def gaussian_logits(
    peak_x: float,
    peak_y: float,
    spread: float,
    size: tuple[int, int] = (24, 24),
    height: float = 8.0,
) -> torch.Tensor:
    """A logits map with one Gaussian bump: ``[1, 1, h, w]``, float64 (notebook 01).

    ``logits = height · exp(-d² / (2 spread²))``, with ``d`` the distance from the
    peak ``(peak_x, peak_y)``; all in normalised coordinates. The map is 0 far
    from the bump, so the background keeps some probability, which the
    temperature then amplifies or suppresses.
    """
    peak_x = _number("peak_x", peak_x, -1.0, 1.0)
    peak_y = _number("peak_y", peak_y, -1.0, 1.0)
    spread = _checks.positive("spread", spread)
    height = _number("height", height)
    h, w = _checks.size_pair("size", size)
    like = torch.zeros((), dtype=torch.float64)
    xs, ys = pixel_axis(w, like), pixel_axis(h, like)
    d2 = (xs[None, :] - peak_x) ** 2 + (ys[:, None] - peak_y) ** 2
    return (height * torch.exp(-d2 / (2 * spread**2)))[None, None]


def pmf_explorer(
    peak_x: float,
    peak_y: float,
    spread: float,
    temperature: float,
    size: tuple[int, int] = (24, 24),
) -> View:
    """Logits bump → PMF → mean and glimpse boxes, for notebook 01's sliders.

    Draws the logits of :func:`gaussian_logits` and the PMF
    ``softmax(logits / temperature)`` ``[h, w]``, with the mean ``(tx, ty)`` and the
    glimpse boxes ``(tx, ty) ± s`` for the L2 (solid) and L1 (dashed) norms, in map
    pixels. Numbers: ``tx, ty, s_L1, s_L2`` (normalised) and ``p_max``.
    """
    temperature = _checks.positive("temperature", temperature)
    logits = gaussian_logits(peak_x, peak_y, spread, size)
    pmf = spatial_softmax(logits, temperature)
    tx, ty = expected_position(pmf)
    s1, s2 = expected_norm(pmf, p=1), expected_norm(pmf, p=2)
    h, w = logits.shape[-2:]
    fig, (ax_logits, ax_pmf) = plt.subplots(1, 2, figsize=(9.2, 4.0))
    image = ax_logits.imshow(logits[0, 0].numpy(), cmap="magma")
    fig.colorbar(image, ax=ax_logits, label="logit", shrink=0.85)
    _label(ax_logits, "logits: a Gaussian bump", "x (map pixels)", "y (map pixels)")
    image = ax_pmf.imshow(pmf[0, 0].numpy(), cmap="viridis", vmin=0)
    fig.colorbar(image, ax=ax_pmf, label="probability", shrink=0.85)
    box2 = glimpse_box(tx, ty, s2, image_size=(h, w))[0, 0]
    box1 = glimpse_box(tx, ty, s1, image_size=(h, w))[0, 0]
    ax_pmf.add_patch(_box_patch(box2, "red"))
    ax_pmf.add_patch(_box_patch(box1, "orange", "--"))
    mean = to_pixels(tx, w).item(), to_pixels(ty, h).item()
    ax_pmf.plot(*mean, "r+", markersize=14, markeredgewidth=2, label="mean (tx, ty)")
    ax_pmf.plot([], [], "r-", label=f"L2 box, s = {s2.item():.2f}")
    ax_pmf.plot([], [], color="orange", linestyle="--", label=f"L1 box, s = {s1.item():.2f}")
    ax_pmf.legend(loc="lower left", fontsize=7, framealpha=0.8)
    # A margin around the map, grey, so a box that reaches past the map shows as such.
    ax_pmf.set_facecolor("0.85")
    ax_pmf.set_xlim(-0.5 - w / 4, w - 0.5 + w / 4)
    ax_pmf.set_ylim(h - 0.5 + h / 4, -0.5 - h / 4)
    title = f"PMF = softmax(logits / T), T = {temperature:g}"
    _label(ax_pmf, title, "x (map pixels)", "y (map pixels)")
    fig.tight_layout()
    numbers = {
        "tx": tx.item(),
        "ty": ty.item(),
        "s_L1": s1.item(),
        "s_L2": s2.item(),
        "p_max": pmf.max().item(),
    }
    return View(fig, numbers)


# --------------------------------------------------------------------------- notebook 02

# A small image with distinct pixel values, so each neighbour's share is visible.
BILINEAR_DEMO_IMAGE = torch.tensor(
    [
        [0.0, 0.2, 0.4, 0.1],
        [0.3, 1.0, 0.6, 0.2],
        [0.1, 0.5, 0.9, 0.7],
    ]
)


def bilinear_explorer(x: float, y: float, image: torch.Tensor | None = None) -> View:
    """One bilinear sample at pixel coordinates ``(x, y)`` of a small image (notebook 02).

    ``image`` is ``[H, W]`` (default :data:`BILINEAR_DEMO_IMAGE`, 3×4). Draws the
    image with its pixel values, the sample point and its four neighbours, each
    labelled with its weight. Numbers: the weights ``w_00`` (top left), ``w_01``
    (top right), ``w_10``, ``w_11`` and the sampled ``value`` (from
    ``bilinear_sample``). ``x`` must lie in ``[0, W-1]``, ``y`` in ``[0, H-1]``.
    """
    image = _image("image", BILINEAR_DEMO_IMAGE if image is None else image)
    h, w = image.shape[-2:]
    x = _number("x", x, 0.0, w - 1.0)
    y = _number("y", y, 0.0, h - 1.0)
    x0, y0 = min(math.floor(x), w - 2), min(math.floor(y), h - 2)
    fx, fy = x - x0, y - y0
    weights = {
        (y0, x0): (1 - fy) * (1 - fx),
        (y0, x0 + 1): (1 - fy) * fx,
        (y0 + 1, x0): fy * (1 - fx),
        (y0 + 1, x0 + 1): fy * fx,
    }
    grid = torch.tensor([[[[to_normalised(x, w), to_normalised(y, h)]]]])
    value = bilinear_sample(image, grid)[0, 0, 0, 0].item()
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    shown = ax.imshow(image[0, 0].numpy(), cmap="gray", vmin=0, vmax=1)
    fig.colorbar(shown, ax=ax, label="pixel value", shrink=0.8)
    for (row, col), pixel in ((rc, image[0, 0, rc[0], rc[1]].item()) for rc in _cells(h, w)):
        colour = "black" if pixel > 0.5 else "white"
        ax.text(col, row - 0.3, f"{pixel:.1f}", ha="center", va="center", color=colour, fontsize=8)
    for (row, col), weight in weights.items():
        ax.plot([x, col], [y, row], "-", color="tab:orange", linewidth=0.5 + 4 * weight)
        ax.plot([col], [row], "s", color="tab:orange", markersize=5)
        label = {"ha": "center", "va": "center", "fontsize": 8, "color": "tab:orange"}
        box = {"facecolor": "white", "alpha": 0.85, "pad": 1}
        ax.text(col, row + 0.28, f"w = {weight:.2f}", bbox=box, **label)
    ax.plot([x], [y], "o", color="tab:red", markersize=8)
    title = f"bilinear sample at (x, y) = ({x:.2f}, {y:.2f}): value {value:.3f}"
    _label(ax, title, "x (pixels)", "y (pixels)")
    fig.tight_layout()
    numbers = {f"w_{r - y0}{c - x0}": wt for (r, c), wt in weights.items()}
    numbers["value"] = value
    return View(fig, numbers)


def _cells(h: int, w: int):
    return [(row, col) for row in range(h) for col in range(w)]


def glimpse_explorer(
    canvas: torch.Tensor,
    tx: float,
    ty: float,
    s: float,
    size: tuple[int, int] = (28, 28),
    true_box: torch.Tensor | None = None,
) -> View:
    """The canvas with the glimpse box ``(tx, ty) ± s`` beside the glimpse itself (notebook 02).

    ``canvas`` is one grey image ``[H, W]``, ``[1, H, W]`` or ``[1, 1, H, W]``;
    ``tx, ty, s`` are normalised (``s > 0``); the glimpse is ``size = (h, w)``
    pixels, sampled with border padding. ``true_box`` (``[4]``, pixels) is drawn
    dashed. Numbers: ``x0, y0, x1, y1`` of the box (pixels), the glimpse's mean
    intensity ``ink`` and, with ``true_box``, the ``IoU`` of the two boxes.
    """
    from dham_lib.metrics import box_iou

    canvas = _image("canvas", canvas)
    tx, ty, s = _number("tx", tx), _number("ty", ty), _checks.positive("s", s)
    params = [torch.tensor([[v]]) for v in (tx, ty, s)]
    crop = glimpse(canvas, *params, size=size)[0, 0, 0]
    height, width = canvas.shape[-2:]
    box = glimpse_box(*params, image_size=(height, width))[0, 0]
    fig, (ax_canvas, ax_glimpse) = plt.subplots(
        1, 2, figsize=(8.6, 4.0), gridspec_kw={"width_ratios": [1.25, 1]}
    )
    ax_canvas.imshow(canvas[0, 0].numpy(), cmap="gray")
    ax_canvas.add_patch(_box_patch(box, "red"))
    ax_canvas.plot(*((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), "r+", markersize=10)
    numbers = dict(zip(("x0", "y0", "x1", "y1"), box.tolist(), strict=True))
    if true_box is not None:
        true_box = _checks.tensor("true_box", torch.as_tensor(true_box).float(), ndim=1)
        if true_box.shape != (4,):
            raise ValueError(f"true_box must have shape [4], got {tuple(true_box.shape)}")
        ax_canvas.add_patch(_box_patch(true_box, "lime", "--"))
        ax_canvas.plot([], [], color="lime", linestyle="--", label="true digit box")
        numbers["IoU"] = box_iou(box, true_box).item()
    ax_canvas.plot([], [], "r-", label="glimpse box")
    ax_canvas.legend(loc="upper right", fontsize=7, framealpha=0.8)
    ax_canvas.set_xlim(-0.5, width - 0.5)
    ax_canvas.set_ylim(height - 0.5, -0.5)
    title = f"canvas {height}×{width}: tx = {tx:+.2f}, ty = {ty:+.2f}, s = {s:.2f}"
    _label(ax_canvas, title, "x (canvas pixels)", "y (canvas pixels)")
    ax_glimpse.imshow(crop.numpy(), cmap="gray")
    h, w = crop.shape
    _label(ax_glimpse, f"glimpse {h}×{w}", "x (glimpse pixels)", "y (glimpse pixels)")
    fig.tight_layout()
    numbers["ink"] = crop.mean().item()
    return View(fig, numbers)


# --------------------------------------------------------------------------- notebook 03


def toy_trajectory_step(
    canvas: torch.Tensor,
    params: torch.Tensor,
    losses: torch.Tensor,
    step: int,
    size: tuple[int, int] = (28, 28),
) -> View:
    """One step of notebook 03's toy optimisation: box, centre path, glimpse and loss curve.

    ``canvas`` is one grey image (``[H, W]`` to ``[1, 1, H, W]``); ``params``
    ``[T, 3]`` holds ``(tx, ty, s)`` before each of the T steps and ``losses``
    ``[T]`` the loss there; ``step`` is in ``0 … T-1``. Draws the canvas with the
    path of the box centre up to ``step`` and the box at ``step``, the glimpse
    (``size``) there, and the loss curve with ``step`` marked. Numbers: ``step``,
    ``loss``, ``tx``, ``ty``, ``s``.
    """
    canvas = _image("canvas", canvas)
    params = _checks.tensor("params", torch.as_tensor(params).detach().cpu().float(), ndim=2)
    losses = _checks.tensor("losses", torch.as_tensor(losses).detach().cpu().float(), ndim=1)
    if params.shape[1] != 3 or len(losses) != len(params):
        raise ValueError(
            f"params must be [T, 3] and losses [T] with one T, got {tuple(params.shape)} "
            f"and {tuple(losses.shape)}"
        )
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < len(params):
        raise ValueError(f"step must be an int in [0, {len(params) - 1}], got {step!r}")
    height, width = canvas.shape[-2:]
    tx, ty, s = (params[step, i].reshape(1, 1) for i in range(3))
    box = glimpse_box(tx, ty, s, image_size=(height, width))[0, 0]
    crop = glimpse(canvas, tx, ty, s, size=size)[0, 0, 0]
    path_x = to_pixels(params[: step + 1, 0], width)
    path_y = to_pixels(params[: step + 1, 1], height)

    fig, (ax_canvas, ax_glimpse, ax_loss) = plt.subplots(
        1, 3, figsize=(12.0, 3.9), gridspec_kw={"width_ratios": [1.2, 1, 1.2]}
    )
    ax_canvas.imshow(canvas[0, 0].numpy(), cmap="gray")
    ax_canvas.plot(
        path_x, path_y, ".-", color="tab:cyan", markersize=3, linewidth=1, label="box centre path"
    )
    ax_canvas.plot(path_x[:1], path_y[:1], "o", color="tab:cyan", label="start")
    ax_canvas.add_patch(_box_patch(box, "red"))
    ax_canvas.plot([], [], "r-", label=f"box at step {step}")
    ax_canvas.legend(loc="upper right", fontsize=7, framealpha=0.8)
    ax_canvas.set_xlim(-0.5, width - 0.5)
    ax_canvas.set_ylim(height - 0.5, -0.5)
    _label(ax_canvas, f"canvas, step {step}", "x (canvas pixels)", "y (canvas pixels)")
    ax_glimpse.imshow(crop.numpy(), cmap="gray")
    _label(ax_glimpse, f"glimpse at step {step}", "x (glimpse pixels)", "y (glimpse pixels)")
    ax_loss.plot(range(len(losses)), losses.numpy(), color="tab:blue")
    ax_loss.plot([step], [losses[step].item()], "o", color="red")
    ax_loss.grid(alpha=0.3)
    _label(ax_loss, "loss during the descent", "Adam step", "loss")
    fig.tight_layout()
    numbers = {
        "step": step,
        "loss": losses[step].item(),
        "tx": tx.item(),
        "ty": ty.item(),
        "s": s.item(),
    }
    return View(fig, numbers)


__all__ = [
    "BILINEAR_DEMO_IMAGE",
    "COLAB_CELL",
    "REPOSITORY",
    "View",
    "bilinear_explorer",
    "build_explorer",
    "check_answers",
    "colab_badge",
    "colab_url",
    "format_numbers",
    "gaussian_logits",
    "glimpse_explorer",
    "make_slider",
    "pmf_explorer",
    "show_explorer",
    "toy_trajectory_step",
]
