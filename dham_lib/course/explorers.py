"""The slider functions of every notebook: pure functions of the slider values.

Each returns a :class:`~dham_lib.course.widgets.View`, the figure it draws and the numbers
it shows, and its docstring names its notebook: 01 (a PMF from a logits bump), 02 (one
bilinear sample; a glimpse of a canvas), 03 (a step of a toy descent), 04 and 06 (one
canvas through a trained model, with clutter), 05 (canvases at an SNR; trained models at
an SNR). They take normalised coordinates (-1 and +1 are the centres of the first and
last pixel) and draw in pixel coordinates (the centre of pixel i is at i).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import matplotlib.pyplot as plt
import torch
from torch import nn

from dham_lib import _checks
from dham_lib.course.figures import box_patch, label_axes, plot_attention
from dham_lib.course.inspect import attend
from dham_lib.course.widgets import View
from dham_lib.data import TranslatedMNIST, balanced_order, load_mnist
from dham_lib.metrics import box_centre_error, box_coverage, box_iou, measured_snr_db
from dham_lib.models import DHAMClassifier
from dham_lib.pmf import expected_norm, expected_position, pixel_axis, spatial_softmax
from dham_lib.sampling import bilinear_sample, glimpse, glimpse_box, to_normalised, to_pixels
from dham_lib.study import figures
from dham_lib.study.runs import SCALE, TEST_SEED


@functools.lru_cache(maxsize=1)
def _test_digits():
    """The bundled test digits, loaded once per session."""
    return load_mnist("test", source="bundled", verbose=False)


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
    label_axes(ax_logits, "logits: a Gaussian bump", "x (map pixels)", "y (map pixels)")
    image = ax_pmf.imshow(pmf[0, 0].numpy(), cmap="viridis", vmin=0)
    fig.colorbar(image, ax=ax_pmf, label="probability", shrink=0.85)
    box2 = glimpse_box(tx, ty, s2, image_size=(h, w))[0, 0]
    box1 = glimpse_box(tx, ty, s1, image_size=(h, w))[0, 0]
    ax_pmf.add_patch(box_patch(box2, "red", label=f"L2 box, s = {s2.item():.2f}"))
    ax_pmf.add_patch(box_patch(box1, "orange", "--", label=f"L1 box, s = {s1.item():.2f}"))
    mean = to_pixels(tx, w).item(), to_pixels(ty, h).item()
    ax_pmf.plot(*mean, "r+", markersize=14, markeredgewidth=2, label="mean (tx, ty)")
    ax_pmf.legend(loc="lower left", fontsize=8, framealpha=0.8)
    # A margin around the map, grey, so a box that reaches past the map shows as such.
    ax_pmf.set_facecolor("0.85")
    ax_pmf.set_xlim(-0.5 - w / 4, w - 0.5 + w / 4)
    ax_pmf.set_ylim(h - 0.5 + h / 4, -0.5 - h / 4)
    title = f"PMF = softmax(logits / T), T = {temperature:g}"
    label_axes(ax_pmf, title, "x (map pixels)", "y (map pixels)")
    fig.tight_layout()
    numbers = {
        "tx": tx.item(),
        "ty": ty.item(),
        "s_L1": s1.item(),
        "s_L2": s2.item(),
        "p_max": pmf.max().item(),
    }
    return View(fig, numbers)


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
    label_axes(ax, title, "x (pixels)", "y (pixels)")
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
    ax_canvas.add_patch(box_patch(box, "red", label="glimpse box"))
    ax_canvas.plot(*((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), "r+", markersize=10)
    numbers = dict(zip(("x0", "y0", "x1", "y1"), box.tolist(), strict=True))
    if true_box is not None:
        true_box = _checks.tensor("true_box", torch.as_tensor(true_box).float(), ndim=1)
        if true_box.shape != (4,):
            raise ValueError(f"true_box must have shape [4], got {tuple(true_box.shape)}")
        ax_canvas.add_patch(box_patch(true_box, "lime", "--", label="true digit box"))
        numbers["IoU"] = box_iou(box, true_box).item()
    ax_canvas.legend(loc="upper right", fontsize=8, framealpha=0.8)
    ax_canvas.set_xlim(-0.5, width - 0.5)
    ax_canvas.set_ylim(height - 0.5, -0.5)
    title = f"canvas {height}×{width}: tx = {tx:+.2f}, ty = {ty:+.2f}, s = {s:.2f}"
    label_axes(ax_canvas, title, "x (canvas pixels)", "y (canvas pixels)")
    ax_glimpse.imshow(crop.numpy(), cmap="gray")
    h, w = crop.shape
    label_axes(ax_glimpse, f"glimpse {h}×{w}", "x (glimpse pixels)", "y (glimpse pixels)")
    fig.tight_layout()
    numbers["ink"] = crop.mean().item()
    return View(fig, numbers)


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
    ax_canvas.add_patch(box_patch(box, "red", label=f"box at step {step}"))
    ax_canvas.legend(loc="upper right", fontsize=8, framealpha=0.8)
    ax_canvas.set_xlim(-0.5, width - 0.5)
    ax_canvas.set_ylim(height - 0.5, -0.5)
    label_axes(ax_canvas, f"canvas, step {step}", "x (canvas pixels)", "y (canvas pixels)")
    ax_glimpse.imshow(crop.numpy(), cmap="gray")
    label_axes(ax_glimpse, f"glimpse at step {step}", "x (glimpse pixels)", "y (glimpse pixels)")
    ax_loss.plot(range(len(losses)), losses.numpy(), color="tab:blue")
    ax_loss.plot([step], [losses[step].item()], "o", color="red")
    ax_loss.grid(alpha=0.3)
    label_axes(ax_loss, "loss during the descent", "Adam step", "loss")
    fig.tight_layout()
    numbers = {
        "step": step,
        "loss": losses[step].item(),
        "tx": tx.item(),
        "ty": ty.item(),
        "s": s.item(),
    }
    return View(fig, numbers)


def _index(index, n: int) -> int:
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
        raise ValueError(f"index must be an int in [0, {n - 1}], got {index!r}")
    return index


def attention_explorer(model: DHAMClassifier, dataset, index: int, temperature: float = 1.0):
    """One canvas through the trained model: box, PMF, glimpse and class probabilities (04).

    ``dataset`` (a :class:`~dham_lib.data.TranslatedMNIST`) item ``index`` goes through
    ``model`` with the PMF made at ``temperature`` (the model was trained at 1); the
    figure is :func:`~dham_lib.course.figures.plot_attention`'s. Numbers: ``label``,
    ``prediction``, ``confidence`` (its probability), ``tx, ty, s`` (normalised),
    ``side_px`` (the glimpse box's side), ``IoU``, ``coverage`` and ``centre_error_px``
    against the true box.
    """
    if not isinstance(dataset, TranslatedMNIST):
        raise TypeError(f"dataset must be a TranslatedMNIST, got {type(dataset).__name__}")
    index = _index(index, len(dataset))
    canvas, label, true_box = dataset.batch([index])
    return _attention_view(
        model, canvas, int(label[0]), true_box[0], temperature, f"canvas {index}"
    )


def clutter_explorer(
    model: DHAMClassifier,
    images,
    labels,
    index: int,
    n_clutter: int,
    canvas: int = 120,
    seed: int = TEST_SEED,
) -> View:
    """Where a model looks on a cluttered canvas (notebook 06): :func:`attention_explorer`'s view.

    Builds the test canvases of ``images, labels`` (the course's scale range and
    ``seed``) with ``n_clutter`` 8×8 pieces of other digits each, and shows item
    ``index``. The digit's size and place do not depend on ``n_clutter`` (the
    data draw the geometry first), so the slider adds clutter around one digit.
    """
    if isinstance(n_clutter, bool) or not isinstance(n_clutter, int) or n_clutter < 0:
        raise ValueError(f"n_clutter must be an int >= 0, got {n_clutter!r}")
    dataset = TranslatedMNIST(
        images,
        labels,
        canvas=canvas,
        scale=SCALE,
        background="clutter",
        n_clutter=n_clutter,
        seed=seed,
    )
    index = _index(index, len(dataset))
    canvases, label, true_box = dataset.batch([index])
    title = f"canvas {index}, {n_clutter} pieces"
    return _attention_view(model, canvases, int(label[0]), true_box[0], None, title)


def _attention_view(model, canvas, label: int, true_box, temperature, title: str) -> View:
    """``attend`` on one canvas ``[1, 1, H, W]``: the four-panel figure and its numbers."""
    seen = attend(model, canvas, temperature)
    fig = plot_attention(canvas, label, true_box, seen, title)
    box = seen.boxes[0, 0].cpu()
    probabilities = seen.probabilities[0].cpu()
    prediction = int(probabilities.argmax())
    numbers = {
        "label": label,
        "prediction": prediction,
        "confidence": probabilities[prediction].item(),
        "tx": seen.tx[0, 0].item(),
        "ty": seen.ty[0, 0].item(),
        "s": seen.s[0, 0].item(),
        "side_px": (box[2] - box[0]).item(),
        "IoU": box_iou(box, true_box).item(),
        "coverage": box_coverage(box, true_box).item(),
        "centre_error_px": box_centre_error(box, true_box).item(),
    }
    return View(fig, numbers)


def snr_gallery(snr_db: float | None, n: int = 6, seed: int = 0) -> View:
    """``n`` test canvases (classes in turn) at ``snr_db`` (None: clean), titled with their SNR.

    Numbers: the requested SNR, the mean measured SNR and the mean noise σ.
    """
    snr_db = _checks.snr_db("snr_db", snr_db)
    n = _checks.positive_int("n", n)
    images, labels = _test_digits()
    picks = balanced_order(labels)[:n]
    noisy = TranslatedMNIST(images[picks], labels[picks], snr_db=snr_db, seed=seed)
    clean = TranslatedMNIST(images[picks], labels[picks], snr_db=None, seed=seed)
    canvases, digits, boxes = noisy.batch(range(n))
    clean_canvases = clean.batch(range(n))[0]
    fig, axes = plt.subplots(1, n, figsize=(2.1 * n, 2.6), squeeze=False)
    numbers = {"requested SNR (dB)": math.inf if snr_db is None else snr_db}
    if snr_db is None:
        measured = torch.full((n,), math.inf)
    else:
        measured = measured_snr_db(clean_canvases, canvases, boxes)
    for i, ax in enumerate(axes[0]):
        ax.imshow(canvases[i, 0].numpy(), cmap="gray")
        shown = "clean" if snr_db is None else f"{measured[i]:.1f} dB"
        ax.set_title(f"digit {digits[i].item()}, {shown}", fontsize=8)
        ax.set_xlabel("x (pixels)", fontsize=8)
        ax.tick_params(labelsize=8)
    axes[0][0].set_ylabel("y (pixels)", fontsize=8)
    label = "clean" if snr_db is None else f"SNR {snr_db:g} dB"
    fig.suptitle(f"120×120 test canvases, {label}")
    fig.tight_layout()
    numbers["mean measured SNR (dB)"] = float(measured.mean())
    numbers["mean noise sigma"] = float(noisy.sigma.mean())
    return View(fig, numbers)


def attention_at_snr(
    models: Mapping[int, nn.Module], width: int, snr_db: float | None, n: int = 6, score: int = 256
) -> View:
    """Where the DHAM of attention width ``width`` looks on test canvases at ``snr_db``.

    ``models`` maps widths to trained ``DHAMClassifier`` models. The figure shows
    ``n`` canvases with the attention box (red) and the true box (dashed), next to
    the glimpses; the numbers are the accuracy and mean IoU on ``score`` test
    canvases at this SNR, computed live. The test digits are taken with the classes in
    turn (:func:`~dham_lib.data.balanced_order`), so any subset is class-balanced.
    """
    if not isinstance(models, Mapping) or not models:
        raise TypeError("models must be a non-empty dict of width -> trained DHAM model")
    if width not in models:
        raise ValueError(f"width must be one of {sorted(models)}, got {width!r}")
    snr_db = _checks.snr_db("snr_db", snr_db)
    n = _checks.positive_int("n", n)
    score = _checks.positive_int("score", score)
    model = models[width]
    images, labels = _test_digits()
    count = min(max(n, score), len(labels))
    picks = balanced_order(labels)[:count]
    data = TranslatedMNIST(images[picks], labels[picks], snr_db=snr_db, seed=TEST_SEED)
    canvases, digits, boxes = data.batch(range(count))
    with torch.no_grad():
        prediction = model(canvases)
    predicted = prediction.logits.argmax(dim=1)
    iou = box_iou(prediction.boxes[:, 0], boxes)
    label = "clean" if snr_db is None else f"{snr_db:g} dB"
    fig = figures.plot_glimpses(
        canvases[:n],
        prediction.boxes[:n],
        prediction.glimpses[:n],
        labels=digits[:n],
        predictions=predicted[:n],
        true_boxes=boxes[:n],
        n=n,
    )
    fig.suptitle(f"DHAM, attention width {width}, on canvases at {label}", y=1.03)
    numbers = {
        "width": int(width),
        f"accuracy on {count} canvases (%)": float((predicted == digits).float().mean() * 100),
        "mean IoU": float(iou.mean()),
    }
    return View(fig, numbers)
