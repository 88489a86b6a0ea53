"""The slider functions of notebooks 01 to 06 and the app: pure functions of the slider values.

Each returns a :class:`~dham_lib.course.widgets.View` (its figure and numbers). They take
normalised coordinates (-1 and +1 are the centres of the first and last pixel) and draw in
pixel coordinates (pixel i's centre at i).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import matplotlib.pyplot as plt
import torch
from torch import nn

from dham_lib import _checks
from dham_lib.course.figures import LEGEND, canvas_grid, draw_image, label_axes, one_image
from dham_lib.course.inspect import attend
from dham_lib.course.widgets import View, _number
from dham_lib.data import TranslatedMNIST, balanced_order, load_mnist
from dham_lib.metrics import box_centre_error, box_coverage, box_iou, measured_snr_db
from dham_lib.models import DHAMClassifier
from dham_lib.pmf import expected_norm, expected_position, pixel_axis, spatial_softmax
from dham_lib.sampling import bilinear_sample, glimpse, glimpse_box, to_normalised, to_pixels
from dham_lib.study.figures import box_patch, map_extent, plot_glimpses
from dham_lib.study.runs import SCALE, TEST_SEED

# A small image with distinct pixel values, so each neighbour's share is visible.
BILINEAR_DEMO_IMAGE = torch.tensor(
    [[0.0, 0.2, 0.4, 0.1], [0.3, 1.0, 0.6, 0.2], [0.1, 0.5, 0.9, 0.7]]
)


@functools.lru_cache(maxsize=1)
def _test_digits():
    """The bundled test digits, loaded once per session."""
    return load_mnist("test", source="bundled", verbose=False)


def _test_canvases(count: int, snr_db: float | None, seed: int) -> TranslatedMNIST:
    """The first ``count`` bundled test digits, classes in turn, on canvases at ``snr_db``."""
    images, labels = _test_digits()
    picks = balanced_order(labels)[:count]
    return TranslatedMNIST(images[picks], labels[picks], snr_db=snr_db, seed=seed)


def _index(name: str, index, n: int) -> int:
    """``index`` if it is an int in ``[0, n - 1]``."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
        raise ValueError(f"{name} must be an int in [0, {n - 1}], got {index!r}")
    return index


def _heat(fig, ax, values: torch.Tensor, label: str, **style) -> None:
    """``values`` ``[H, W]`` as a heat map on ``ax`` with a colour bar named ``label``."""
    fig.colorbar(ax.imshow(values.numpy(), **style), ax=ax, label=label, shrink=0.85)


def gaussian_logits(peak_x: float, peak_y: float, spread: float, size=(24, 24), height=8.0):
    """A logits map with one Gaussian bump, ``[1, 1, h, w]`` float64 (notebook 01):
    ``height · exp(-d² / (2 spread²))``, ``d`` the distance from ``(peak_x, peak_y)``, all
    normalised. It is 0 far from the bump, so the background keeps some probability, which
    the temperature amplifies or suppresses."""
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
    peak_x: float, peak_y: float, spread: float, temperature: float, size=(24, 24)
) -> View:
    """Logits bump → PMF → mean and glimpse boxes (notebook 01).

    Draws :func:`gaussian_logits` and the PMF ``softmax(logits / temperature)`` ``[h, w]``
    with its mean ``(tx, ty)`` and the boxes ``(tx, ty) ± s`` of the L2 (solid) and L1
    (dashed) norms, in map pixels. Numbers: ``tx, ty, s_L1, s_L2`` (normalised), ``p_max``.
    """
    temperature = _checks.positive("temperature", temperature)
    logits = gaussian_logits(peak_x, peak_y, spread, size)
    pmf = spatial_softmax(logits, temperature)
    tx, ty = expected_position(pmf)
    s1, s2 = expected_norm(pmf, p=1), expected_norm(pmf, p=2)
    h, w = logits.shape[-2:]
    fig, (ax_logits, ax_pmf) = plt.subplots(1, 2, figsize=(9.2, 4.0))
    _heat(fig, ax_logits, logits[0, 0], "logit", cmap="magma")
    label_axes(ax_logits, "logits: a Gaussian bump", "x (map pixels)", "y (map pixels)")
    _heat(fig, ax_pmf, pmf[0, 0], "probability", cmap="viridis", vmin=0)
    for s, colour, style, norm in ((s2, "red", "-", "L2"), (s1, "orange", "--", "L1")):
        box = glimpse_box(tx, ty, s, image_size=(h, w))[0, 0]
        ax_pmf.add_patch(box_patch(box, colour, style, label=f"{norm} box, s = {s.item():.2f}"))
    mean = to_pixels(tx, w).item(), to_pixels(ty, h).item()
    ax_pmf.plot(*mean, "r+", markersize=14, markeredgewidth=2, label="mean (tx, ty)")
    ax_pmf.legend(loc="lower left", fontsize=9, framealpha=0.8)
    # A margin around the map, grey, so a box that reaches past the map shows as such.
    ax_pmf.set_facecolor("0.85")
    ax_pmf.set_xlim(-0.5 - w / 4, w - 0.5 + w / 4)
    ax_pmf.set_ylim(h - 0.5 + h / 4, -0.5 - h / 4)
    title = f"PMF = softmax(logits / T), T = {temperature:g}"
    label_axes(ax_pmf, title, "x (map pixels)", "y (map pixels)")
    fig.tight_layout()
    numbers = dict(tx=tx.item(), ty=ty.item(), s_L1=s1.item(), s_L2=s2.item())
    return View(fig, {**numbers, "p_max": pmf.max().item()})


def bilinear_explorer(x: float, y: float) -> View:
    """One bilinear sample of :data:`BILINEAR_DEMO_IMAGE` (3×4) at pixel coordinates ``x`` in
    ``[0, 3]``, ``y`` in ``[0, 2]`` (notebook 02): the image with its pixel values, the point
    and its four neighbours with their weights. Numbers: the weights ``w_00`` (top left),
    ``w_01`` (top right), ``w_10``, ``w_11`` and the sampled ``value`` (``bilinear_sample``).
    """
    image = BILINEAR_DEMO_IMAGE[None, None]
    h, w = image.shape[-2:]
    x, y = _number("x", x, 0.0, w - 1.0), _number("y", y, 0.0, h - 1.0)
    x0, y0 = min(math.floor(x), w - 2), min(math.floor(y), h - 2)
    fx, fy = x - x0, y - y0
    along_y, along_x = (1 - fy, fy), (1 - fx, fx)
    weights = {(y0 + r, x0 + c): along_y[r] * along_x[c] for r in (0, 1) for c in (0, 1)}
    grid = torch.tensor([[[[to_normalised(x, w), to_normalised(y, h)]]]])
    value = bilinear_sample(image, grid)[0, 0, 0, 0].item()
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    _heat(fig, ax, image[0, 0], "pixel value", cmap="gray", vmin=0, vmax=1)
    centred = {"ha": "center", "va": "center", "fontsize": 9}
    for row, pixels in enumerate(image[0, 0].tolist()):
        for col, pixel in enumerate(pixels):
            colour = "black" if pixel > 0.5 else "white"
            ax.text(col, row - 0.3, f"{pixel:.1f}", color=colour, **centred)
    box = {"facecolor": "white", "alpha": 0.85, "pad": 1}
    for (row, col), weight in weights.items():
        ax.plot([x, col], [y, row], "-", color="tab:orange", linewidth=0.5 + 4 * weight)
        ax.plot([col], [row], "s", color="tab:orange", markersize=5)
        ax.text(col, row + 0.28, f"w = {weight:.2f}", color="tab:orange", bbox=box, **centred)
    ax.plot([x], [y], "o", color="tab:red", markersize=8)
    title = f"bilinear sample at (x, y) = ({x:.2f}, {y:.2f}): value {value:.3f}"
    label_axes(ax, title, "x (pixels)", "y (pixels)")
    fig.tight_layout()
    numbers = {f"w_{r - y0}{c - x0}": wt for (r, c), wt in weights.items()}
    return View(fig, {**numbers, "value": value})


def glimpse_explorer(
    canvas: torch.Tensor, tx: float, ty: float, s: float, size=(28, 28), true_box=None
) -> View:
    """The canvas (one grey image, ``[H, W]`` to ``[1, 1, H, W]``) with the glimpse box
    ``(tx, ty) ± s`` (normalised) beside the glimpse of ``size`` pixels (notebook 02).

    ``true_box`` (``[4]``, pixels) is drawn dashed. Numbers: the box ``x0, y0, x1, y1``
    (pixels), the glimpse's mean intensity ``ink`` and, with ``true_box``, their ``IoU``.
    """
    canvas = one_image("canvas", canvas)
    tx, ty, s = _number("tx", tx), _number("ty", ty), _checks.positive("s", s)
    params = [torch.tensor([[v]]) for v in (tx, ty, s)]
    crop = glimpse(canvas, *params, size=size)[0, 0, 0]
    height, width = canvas.shape[-2:]
    box = glimpse_box(*params, image_size=(height, width))[0, 0]
    fig, (ax_canvas, ax_glimpse) = plt.subplots(1, 2, figsize=(8.6, 4.0), width_ratios=[1.25, 1])
    title = f"canvas {height}×{width}: tx = {tx:+.2f}, ty = {ty:+.2f}, s = {s:.2f}"
    draw_image(ax_canvas, canvas, title)
    ax_canvas.add_patch(box_patch(box, "red", label="glimpse box"))
    ax_canvas.plot(*((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), "r+", markersize=10)
    numbers = dict(zip(("x0", "y0", "x1", "y1"), box.tolist(), strict=True))
    if true_box is not None:
        true_box = _checks.tensor("true_box", torch.as_tensor(true_box).float(), ndim=1)
        if true_box.shape != (4,):
            raise ValueError(f"true_box must have shape [4], got {tuple(true_box.shape)}")
        ax_canvas.add_patch(box_patch(true_box, "lime", "--", label="true digit box"))
        numbers["IoU"] = box_iou(box, true_box).item()
    ax_canvas.legend(**LEGEND)
    draw_image(ax_glimpse, crop, f"glimpse {crop.shape[0]}×{crop.shape[1]}", "glimpse")
    fig.tight_layout()
    return View(fig, {**numbers, "ink": crop.mean().item()})


def toy_trajectory_step(
    canvas: torch.Tensor, params: torch.Tensor, losses: torch.Tensor, step: int, size=(28, 28)
) -> View:
    """Step ``step`` (``0 … T-1``) of notebook 03's toy descent: the canvas (one grey image)
    with the path of the box centre so far and the box, the glimpse (``size``) there, and the
    loss curve.

    ``params`` ``[T, 3]`` holds ``(tx, ty, s)`` before each step and ``losses`` ``[T]`` the
    loss there. Numbers: ``step``, ``loss``, ``tx``, ``ty``, ``s``.
    """
    canvas = one_image("canvas", canvas)
    params = _checks.tensor("params", torch.as_tensor(params).detach().cpu().float(), ndim=2)
    losses = _checks.tensor("losses", torch.as_tensor(losses).detach().cpu().float(), ndim=1)
    if params.shape[1] != 3 or len(losses) != len(params):
        raise ValueError(
            f"params must be [T, 3] and losses [T] with one T, got {tuple(params.shape)} "
            f"and {tuple(losses.shape)}"
        )
    step = _index("step", step, len(params))
    height, width = canvas.shape[-2:]
    tx, ty, s = (params[step, i].reshape(1, 1) for i in range(3))
    box = glimpse_box(tx, ty, s, image_size=(height, width))[0, 0]
    path = to_pixels(params[: step + 1, 0], width), to_pixels(params[: step + 1, 1], height)
    fig, (ax_canvas, ax_glimpse, ax_loss) = plt.subplots(
        1, 3, figsize=(12.0, 3.9), width_ratios=[1.2, 1, 1.2]
    )
    draw_image(ax_canvas, canvas, f"canvas, step {step}")
    line = {"color": "tab:cyan", "markersize": 3, "linewidth": 1}
    ax_canvas.plot(*path, ".-", label="box centre path", **line)
    ax_canvas.plot(path[0][:1], path[1][:1], "o", color="tab:cyan", label="start")
    ax_canvas.add_patch(box_patch(box, "red", label=f"box at step {step}"))
    ax_canvas.legend(**LEGEND)
    crop = glimpse(canvas, tx, ty, s, size=size)
    draw_image(ax_glimpse, crop, f"glimpse at step {step}", "glimpse")
    ax_loss.plot(range(len(losses)), losses.numpy(), color="tab:blue")
    ax_loss.plot([step], [losses[step].item()], "o", color="red")
    ax_loss.grid(alpha=0.3)
    label_axes(ax_loss, "loss during the descent", "Adam step", "loss")
    fig.tight_layout()
    numbers = {"step": step, "loss": losses[step].item()}
    return View(fig, {**numbers, "tx": tx.item(), "ty": ty.item(), "s": s.item()})


def attention_explorer(model: DHAMClassifier, dataset, index: int, temperature: float = 1.0):
    """Item ``index`` of ``dataset`` (a :class:`~dham_lib.data.TranslatedMNIST`) through the
    trained ``model``, its PMF made at ``temperature`` (trained at 1; None keeps the model's),
    in four panels (notebook 04): the canvas with the attention box (red) and the true box
    (dashed green), the PMF over the canvas, the glimpse and the class probabilities.

    Numbers: ``label``, ``prediction``, ``confidence`` (its probability), ``tx, ty, s``
    (normalised), ``side_px`` (the glimpse box's side) and, against the true box, ``IoU``,
    ``coverage`` and ``centre_error_px``.
    """
    if not isinstance(dataset, TranslatedMNIST):
        raise TypeError(f"dataset must be a TranslatedMNIST, got {type(dataset).__name__}")
    canvas, labels, true_boxes = dataset.batch([_index("index", index, len(dataset))])
    label, true_box, title = int(labels[0]), true_boxes[0], f"canvas {index}"
    if dataset.background == "clutter":
        title += f", {dataset.n_clutter} pieces"
    seen = attend(model, canvas, temperature)
    box, pmf = seen.boxes[0, 0].cpu(), seen.pmf[0, 0].cpu()
    probabilities, glimpses = seen.probabilities[0].cpu(), seen.glimpses[0, 0].cpu()
    prediction = int(probabilities.argmax())
    fig, (ax_canvas, ax_pmf, ax_glimpse, ax_classes) = plt.subplots(
        1, 4, figsize=(14.0, 3.6), width_ratios=[1, 1.2, 1, 1.1]
    )
    draw_image(ax_canvas, canvas, f"{title}: label {label}")
    ax_canvas.add_patch(box_patch(true_box, "lime", "--", label="true digit box"))
    ax_canvas.add_patch(box_patch(box, "red", label="attention box"))
    ax_canvas.legend(**LEGEND)
    draw_image(ax_pmf, canvas, f"attention PMF ({pmf.shape[0]}×{pmf.shape[1]} map)")
    extent = map_extent(tuple(pmf.shape), tuple(canvas.shape[-2:]))
    _heat(fig, ax_pmf, pmf, "probability", cmap="viridis", alpha=0.65, extent=extent)
    ax_pmf.add_patch(box_patch(box, "red"))
    side = f"{glimpses.shape[-2]}×{glimpses.shape[-1]}"
    draw_image(ax_glimpse, glimpses, f"glimpse {side}", "glimpse")
    colours = ["C0"] * len(probabilities)
    colours[prediction] = "C3" if prediction != label else "C2"
    ax_classes.bar(range(len(probabilities)), probabilities.numpy(), color=colours)
    ax_classes.set(xticks=range(len(probabilities)), ylim=(0, 1))
    ax_classes.grid(axis="y", alpha=0.3)
    verdict = "right" if prediction == label else "wrong"
    label_axes(ax_classes, f"prediction {prediction} ({verdict})", "class", "probability")
    fig.tight_layout()
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


def clutter_explorer(
    model: DHAMClassifier, images, labels, index: int, n_clutter: int, canvas=120, seed=TEST_SEED
) -> View:
    """:func:`attention_explorer`'s view of item ``index`` of the test canvases of ``images,
    labels`` (the course's scale range, ``seed``) with ``n_clutter`` 8×8 pieces of other
    digits each (notebook 06). The data draw the digit's size and place first, so the slider
    adds clutter around one digit."""
    n_clutter = _checks.non_negative_int("n_clutter", n_clutter)
    clutter = {"background": "clutter", "n_clutter": n_clutter}
    dataset = TranslatedMNIST(images, labels, canvas=canvas, scale=SCALE, seed=seed, **clutter)
    return attention_explorer(model, dataset, index, None)


def snr_gallery(snr_db: float | None, n: int = 6, seed: int = 0) -> View:
    """``n`` test canvases (classes in turn) at ``snr_db`` (None: clean), titled with their
    SNR, three to a row, each canvas pixel at least one screen pixel at the figure's dpi and
    drawn nearest-neighbour, so the noise shows without moiré (notebook 05). Numbers: the
    requested SNR, the mean measured SNR and the mean noise σ.
    """
    snr_db = _checks.snr_db("snr_db", snr_db)
    n = _checks.positive_int("n", n)
    noisy = _test_canvases(n, snr_db, seed)
    canvases, digits, boxes = noisy.batch(range(n))
    if snr_db is None:
        measured = torch.full((n,), math.inf)
    else:
        clean = _test_canvases(n, None, seed).batch(range(n))[0]
        measured = measured_snr_db(clean, canvases, boxes)
    shown = ["clean" if snr_db is None else f"{snr:.1f} dB" for snr in measured.tolist()]
    titles = [f"digit {digit}, {snr}" for digit, snr in zip(digits.tolist(), shown, strict=True)]
    # A panel (inches): the canvas's pixels plus about an inch for its labels and title.
    height, width = canvases.shape[-2:]
    dpi = plt.rcParams["figure.dpi"]
    panel = (width / dpi + 0.9, height / dpi + 1.0)
    fig, _ = canvas_grid(canvases, titles, min(n, 3), panel, interpolation="nearest")
    fig.suptitle(f"120×120 test canvases, {'clean' if snr_db is None else f'SNR {snr_db:g} dB'}")
    fig.tight_layout()
    numbers = {"requested SNR (dB)": math.inf if snr_db is None else snr_db}
    numbers["mean measured SNR (dB)"] = float(measured.mean())
    return View(fig, {**numbers, "mean noise sigma": float(noisy.sigma.mean())})


def attention_at_snr(
    models: Mapping[int, nn.Module], width: int, snr_db: float | None, n: int = 6, score: int = 256
) -> View:
    """Where the DHAM of attention width ``width`` (``models`` maps widths to trained
    ``DHAMClassifier`` models) looks on ``n`` test canvases at ``snr_db``: attention box (red),
    true box (dashed) and glimpses (notebook 05 and the app's page).

    Numbers: the accuracy and mean IoU on ``score`` test canvases at this SNR, computed live,
    the digits taken with the classes in turn, so any subset is class-balanced.
    """
    if not isinstance(models, Mapping) or not models:
        raise TypeError("models must be a non-empty dict of width -> trained DHAM model")
    if width not in models:
        raise ValueError(f"width must be one of {sorted(models)}, got {width!r}")
    snr_db = _checks.snr_db("snr_db", snr_db)
    n = _checks.positive_int("n", n)
    score = _checks.positive_int("score", score)
    count = min(max(n, score), len(_test_digits()[1]))
    canvases, digits, boxes = _test_canvases(count, snr_db, TEST_SEED).batch(range(count))
    with torch.no_grad():
        prediction = models[width](canvases)
    predicted = prediction.logits.argmax(dim=1)
    shown = canvases[:n], prediction.boxes[:n], prediction.glimpses[:n]
    fig = plot_glimpses(*shown, digits[:n], predicted[:n], true_boxes=boxes[:n], n=n)
    label = "clean" if snr_db is None else f"{snr_db:g} dB"
    fig.suptitle(f"DHAM, attention width {width}, on canvases at {label}", y=1.03)
    numbers = {
        "width": int(width),
        f"accuracy on {count} canvases (%)": float((predicted == digits).float().mean() * 100),
        "mean IoU": float(box_iou(prediction.boxes[:, 0], boxes).mean()),
    }
    return View(fig, numbers)
