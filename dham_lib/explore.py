"""Looking inside trained models: slider views, glimpse statistics, results (notebooks 04, 06).

Notebooks 01 to 03 explore the DHAM layer with hand-made inputs
(:mod:`dham_lib.interactive`); notebooks 04 and 06 look at trained models. The
helpers here read a trained :class:`~dham_lib.models.DHAMClassifier` without
changing it (a test-time temperature builds a new DHAM instead of touching the
model's), and every slider callback returns a :class:`~dham_lib.interactive.View`:
the figure and the numbers it shows. Figures are drawn in canvas pixels, where
the centre of pixel i is at i, like every box in the library.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from dham_lib import _checks
from dham_lib.data import TranslatedMNIST
from dham_lib.dham import DHAM
from dham_lib.experiments import SCALE, TEST_SEED, Cell, make_dataset
from dham_lib.interactive import View, _label
from dham_lib.metrics import box_centre_error, box_coverage, box_iou
from dham_lib.models import DHAMClassifier
from dham_lib.results import load_results, summarise
from dham_lib.sampling import glimpse_box
from dham_lib.train import evaluate
from dham_lib.viz import _box_patch, _map_extent

# Where `make reproduce` (python -m dham_lib sweep ... --out) writes clean.csv and sweep.csv.
RESULTS_DIR = Path(__file__).resolve().parent.parent / "data" / "results"
# The order in which the models are compared: no attention, learned affine attention,
# DHAM, then the upper bound that is told where the digit is.
MODEL_ORDER = ("cnn", "stn", "dham", "oracle")
COMPARISON_METRICS = (
    "test_acc",
    "iou",
    "coverage",
    "centre_error",
    "train_seconds",
    "acc_canvas160",
    "acc_canvas200",
)


class Attention(NamedTuple):
    """What a trained DHAM classifier does with a batch of canvases ``[B, 1, H, W]``.

    pmf ``[B, K, H', W']``; tx, ty, s ``[B, K]`` (normalised); boxes ``[B, K, 4]``
    (pixels); glimpses ``[B, K, C, h, w]``; probabilities ``[B, classes]``.
    """

    pmf: torch.Tensor
    tx: torch.Tensor
    ty: torch.Tensor
    s: torch.Tensor
    boxes: torch.Tensor
    glimpses: torch.Tensor
    probabilities: torch.Tensor


def _dham_model(model) -> DHAMClassifier:
    if not isinstance(model, DHAMClassifier):
        raise TypeError(f"model must be a DHAMClassifier, got {type(model).__name__}")
    return model


@torch.no_grad()
def attend(
    model: DHAMClassifier,
    canvases: torch.Tensor,
    temperature: float | None = None,
    norm: int | None = None,
):
    """Run ``model`` on ``canvases`` ``[B, C, H, W]`` and return everything it computed.

    ``temperature`` and ``norm`` (1 or 2) replace the model's softmax temperature
    and scale norm for this call only (None keeps the model's): the attention
    logits are the trained network's, only the PMF made from them is sharper
    (T < 1) or flatter (T > 1), or its glimpse sized by the other norm. Returns
    :class:`Attention`. The model is put in eval mode for the call and restored.
    """
    model = _dham_model(model)
    _checks.tensor("canvases", canvases, ndim=4)
    layer = model.dham
    if temperature is not None or norm is not None:
        layer = DHAM(
            layer.output_size,
            norm=layer.norm if norm is None else norm,
            temperature=layer.temperature if temperature is None else temperature,
        )
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        canvases = canvases.to(device)
        logits = model.attention(canvases)
        pmf, params = layer.attention(logits)
        glimpses, _ = layer(canvases, logits)
        probabilities = torch.softmax(model.classifier(glimpses), dim=1)
    finally:
        model.train(was_training)
    boxes = glimpse_box(params.tx, params.ty, params.s, image_size=tuple(canvases.shape[-2:]))
    return Attention(pmf, params.tx, params.ty, params.s, boxes, glimpses, probabilities)


def _index(index, n: int) -> int:
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
        raise ValueError(f"index must be an int in [0, {n - 1}], got {index!r}")
    return index


def _dataset(dataset) -> TranslatedMNIST:
    if not isinstance(dataset, TranslatedMNIST):
        raise TypeError(f"dataset must be a TranslatedMNIST, got {type(dataset).__name__}")
    return dataset


def attention_explorer(
    model: DHAMClassifier, dataset: TranslatedMNIST, index: int, temperature: float = 1.0
) -> View:
    """One canvas through the trained model: box, PMF, glimpse and class probabilities.

    ``dataset`` item ``index`` goes through ``model`` with the PMF made at
    ``temperature`` (the model was trained at 1). Four panels: the canvas with
    the attention box (red) and the true digit box (dashed green); the PMF over
    the canvas; the 28×28 glimpse; the ten class probabilities. Numbers:
    ``label``, ``prediction``, ``confidence`` (its probability), ``tx, ty, s``
    (normalised), ``side_px`` (the glimpse box's side), ``IoU``, ``coverage``
    and ``centre_error_px`` against the true box.
    """
    model, dataset = _dham_model(model), _dataset(dataset)
    index = _index(index, len(dataset))
    canvas, label, true_box = dataset.batch([index])
    seen = attend(model, canvas, temperature)
    return _attention_view(canvas, int(label[0]), true_box[0], seen, title=f"canvas {index}")


def _attention_view(
    canvas: torch.Tensor, label: int, true_box: torch.Tensor, seen: Attention, title: str
) -> View:
    """The four-panel figure of :func:`attention_explorer` for one canvas ``[1, 1, H, W]``."""
    height, width = canvas.shape[-2:]
    box = seen.boxes[0, 0].cpu()
    pmf = seen.pmf[0, 0].cpu()
    probabilities = seen.probabilities[0].cpu()
    prediction = int(probabilities.argmax())
    fig, axes = plt.subplots(
        1, 4, figsize=(14.0, 3.6), gridspec_kw={"width_ratios": [1, 1.2, 1, 1.1]}
    )
    ax_canvas, ax_pmf, ax_glimpse, ax_classes = axes
    ax_canvas.imshow(canvas[0, 0].cpu().numpy(), cmap="gray")
    ax_canvas.add_patch(_box_patch(true_box, "lime", "--"))
    ax_canvas.add_patch(_box_patch(box, "red"))
    ax_canvas.plot([], [], "r-", label="attention box")
    ax_canvas.plot([], [], color="lime", linestyle="--", label="true digit box")
    ax_canvas.legend(loc="upper right", fontsize=6, framealpha=0.8)
    ax_canvas.set_xlim(-0.5, width - 0.5)
    ax_canvas.set_ylim(height - 0.5, -0.5)
    _label(ax_canvas, f"{title}: label {label}", "x (canvas pixels)", "y (canvas pixels)")

    ax_pmf.imshow(canvas[0, 0].cpu().numpy(), cmap="gray")
    extent = _map_extent(tuple(pmf.shape), (height, width))
    heat = ax_pmf.imshow(pmf.numpy(), cmap="viridis", alpha=0.65, extent=extent)
    fig.colorbar(heat, ax=ax_pmf, label="probability", shrink=0.85)
    ax_pmf.add_patch(_box_patch(box, "red"))
    ax_pmf.set_xlim(-0.5, width - 0.5)
    ax_pmf.set_ylim(height - 0.5, -0.5)
    h_map, w_map = pmf.shape
    _label(ax_pmf, f"attention PMF ({h_map}×{w_map} map)", "x (canvas pixels)", "y (canvas pixels)")

    ax_glimpse.imshow(seen.glimpses[0, 0, 0].cpu().numpy(), cmap="gray")
    h, w = seen.glimpses.shape[-2:]
    _label(ax_glimpse, f"glimpse {h}×{w}", "x (glimpse pixels)", "y (glimpse pixels)")

    colours = ["C0"] * len(probabilities)
    colours[prediction] = "C3" if prediction != label else "C2"
    ax_classes.bar(range(len(probabilities)), probabilities.numpy(), color=colours)
    ax_classes.set_xticks(range(len(probabilities)))
    ax_classes.set_ylim(0, 1)
    ax_classes.grid(axis="y", alpha=0.3)
    verdict = "right" if prediction == label else "wrong"
    _label(ax_classes, f"prediction {prediction} ({verdict})", "class", "probability")
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
    model = _dham_model(model)
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
    seen = attend(model, canvases)
    title = f"canvas {index}, {n_clutter} pieces"
    return _attention_view(canvases, int(label[0]), true_box[0], seen, title=title)


@torch.no_grad()
def glimpse_stats(
    model: DHAMClassifier,
    dataset: TranslatedMNIST,
    batch_size: int = 256,
    limit: int | None = None,
    norm: int | None = None,
    temperature: float | None = None,
) -> dict[str, torch.Tensor]:
    """Per-canvas numbers of ``model`` on the items of ``dataset`` (first attention channel).

    Every item, or the first ``limit`` ones; ``norm`` and ``temperature`` as in
    :func:`attend`.

    Returns a dict of CPU tensors, each ``[N]`` unless noted: ``label``,
    ``prediction``, ``correct`` (bool), ``boxes`` and ``true_boxes`` ``[N, 4]``
    (pixels), ``glimpse_side`` and ``digit_side`` (box sides in pixels, from the
    first to the last sample's centre), ``iou``, ``coverage``, ``centre_error``
    (pixels), ``p_max`` (the PMF's largest probability) and ``ink_share``: the
    share of the canvas's total intensity at pixel centres inside the glimpse box
    (on a clean canvas, the share of the digit's ink that the glimpse holds),
    and ``mass_in_box``, the share of the PMF's mass on the true digit box.
    """
    model, dataset = _dham_model(model), _dataset(dataset)
    _checks.positive_int("batch_size", batch_size)
    n = len(dataset) if limit is None else min(_checks.positive_int("limit", limit), len(dataset))
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, n, batch_size):
        canvases, labels, true_boxes = dataset.batch(range(start, min(start + batch_size, n)))
        seen = attend(model, canvases, temperature=temperature, norm=norm)
        boxes = seen.boxes[:, 0].cpu()
        prediction = seen.probabilities.argmax(dim=1).cpu()
        values = {
            "label": labels,
            "prediction": prediction,
            "correct": prediction == labels,
            "boxes": boxes,
            "true_boxes": true_boxes,
            "glimpse_side": boxes[:, 2] - boxes[:, 0],
            "digit_side": true_boxes[:, 2] - true_boxes[:, 0],
            "iou": box_iou(boxes, true_boxes),
            "coverage": box_coverage(boxes, true_boxes),
            "centre_error": box_centre_error(boxes, true_boxes),
            "p_max": seen.pmf[:, 0].flatten(1).amax(dim=1).cpu(),
            "ink_share": ink_share(canvases, boxes),
            "mass_in_box": mass_in_box(seen.pmf.cpu(), true_boxes, canvases.shape[-2:])[:, 0],
        }
        for key, value in values.items():
            parts.setdefault(key, []).append(value)
    return {key: torch.cat(value) for key, value in parts.items()}


def mass_in_box(pmf: torch.Tensor, boxes: torch.Tensor, image_size) -> torch.Tensor:
    """Share of each PMF's mass on a box of the image: ``[B, K, h, w]``, ``[B, 4]`` → ``[B, K]``.

    The map spans the image as DHAM reads it: map pixel ``(i, j)`` sits at image
    pixel ``(j · (W - 1)/(w - 1), i · (H - 1)/(h - 1))``, and counts when that point
    lies in the box (pixel coordinates, edges included).
    """
    _checks.tensor("pmf", pmf, ndim=4)
    _checks.tensor("boxes", boxes, ndim=2)
    if boxes.shape != (len(pmf), 4):
        raise ValueError(
            f"boxes must have shape [{len(pmf)}, 4] (one per PMF batch item), "
            f"got {tuple(boxes.shape)}"
        )
    height, width = _checks.size_pair("image_size", tuple(int(v) for v in image_size))
    h, w = pmf.shape[-2:]
    xs = torch.arange(w, dtype=pmf.dtype) * (width - 1) / max(w - 1, 1)
    ys = torch.arange(h, dtype=pmf.dtype) * (height - 1) / max(h - 1, 1)
    boxes = boxes.to(pmf.dtype)
    inside_x = (xs >= boxes[:, 0, None]) & (xs <= boxes[:, 2, None])  # [B, w]
    inside_y = (ys >= boxes[:, 1, None]) & (ys <= boxes[:, 3, None])  # [B, h]
    mask = (inside_y[:, :, None] & inside_x[:, None, :])[:, None].to(pmf.dtype)
    return (pmf * mask).sum(dim=(-2, -1))


def ink_share(canvases: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Share of each canvas's intensity inside its box: ``[B, C, H, W]``, ``[B, 4]`` → ``[B]``.

    A pixel counts as inside when its centre lies in the box (pixel coordinates,
    edges included). A canvas without ink (total 0) scores 0.
    """
    _checks.tensor("canvases", canvases, ndim=4)
    _checks.tensor("boxes", boxes, ndim=2)
    if boxes.shape != (len(canvases), 4):
        raise ValueError(
            f"boxes must have shape [{len(canvases)}, 4] (one per canvas), got {tuple(boxes.shape)}"
        )
    height, width = canvases.shape[-2:]
    xs = torch.arange(width, dtype=boxes.dtype, device=boxes.device)
    ys = torch.arange(height, dtype=boxes.dtype, device=boxes.device)
    inside_x = (xs >= boxes[:, 0, None]) & (xs <= boxes[:, 2, None])  # [B, W]
    inside_y = (ys >= boxes[:, 1, None]) & (ys <= boxes[:, 3, None])  # [B, H]
    mask = (inside_y[:, :, None] & inside_x[:, None, :])[:, None].to(canvases.dtype)
    total = canvases.sum(dim=(1, 2, 3))
    inside = (canvases * mask).sum(dim=(1, 2, 3))
    return torch.where(total != 0, inside / torch.where(total != 0, total, 1), 0.0)


def plot_glimpse_sizes(stats: dict[str, dict[str, torch.Tensor]], title: str | None = None):
    """Glimpse box side against digit box side, one scatter per model (pixels, both axes).

    ``stats`` maps a model's name to its :func:`glimpse_stats`. The grey line is
    "glimpse side = digit side"; points below it are glimpses tighter than the
    digit's square.
    """
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
    """A grid of canvases ``[B, 1, H, W]`` with their true boxes ``[B, 4]`` (dashed) and labels."""
    canvases = _checks.tensor("canvases", torch.as_tensor(canvases).float(), ndim=4)
    true_boxes = _checks.tensor("true_boxes", torch.as_tensor(true_boxes).float(), ndim=2)
    labels = torch.as_tensor(labels)
    if not len(canvases) == len(true_boxes) == len(labels) or true_boxes.shape[1] != 4:
        raise ValueError(
            f"canvases [B, 1, H, W], true_boxes [B, 4] and labels [B] must share B, got "
            f"{tuple(canvases.shape)}, {tuple(true_boxes.shape)}, {tuple(labels.shape)}"
        )
    ncols = min(_checks.positive_int("ncols", ncols), len(canvases))
    nrows = -(-len(canvases) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.2 * ncols, 2.3 * nrows), squeeze=False)
    for ax in axes.flat[len(canvases) :]:
        ax.axis("off")
    for i, ax in enumerate(axes.flat[: len(canvases)]):
        ax.imshow(canvases[i, 0].numpy(), cmap="gray")
        ax.add_patch(_box_patch(true_boxes[i], "lime", "--"))
        side = (true_boxes[i, 2] - true_boxes[i, 0]).item() + 1
        ax.set_title(f"label {int(labels[i])}, {side:.0f} px", fontsize=8)
        ax.set_xlabel("x (pixels)", fontsize=7)
        ax.set_ylabel("y (pixels)", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return fig


def model_summary(
    path: str | os.PathLike,
    snr_db: float | None = None,
    background: str = "noise",
    width: int | None = None,
    metrics: tuple[str, ...] = COMPARISON_METRICS,
) -> list[dict]:
    """Mean ± std over seeds of each model in a results CSV, in :data:`MODEL_ORDER`.

    Keeps the rows at ``snr_db`` (None: clean) with ``background``, and for DHAM
    only attention ``width`` (None: every width, one entry each). A missing file
    or one without such rows gives ``[]``, so a notebook can run while the sweep
    that fills the file is still going. Entries are those of
    :func:`dham_lib.results.summarise` (``n`` is the number of seeds).
    """
    if not os.path.exists(path):
        return []
    rows = [
        row
        for row in load_results(path)
        if row["snr_db"] == snr_db
        and row["background"] == background
        and (width is None or row["model"] != "dham" or row["width"] == width)
    ]
    summary = summarise(rows, metrics=metrics)

    def order(entry):
        model = entry["model"]
        rank = MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER)
        return rank, entry["width"]

    return sorted(summary, key=order)


def evaluate_canvases(
    model, cell: Cell, sides=(120, 160, 200), batch_size: int = 128
) -> list[dict[str, float]]:
    """Score ``model`` on the cell's test digits drawn on canvases of each side in ``sides``.

    The digits keep their pixel size (``make_dataset(cell, "test", canvas=side)``),
    so a larger canvas means more empty background around the same digits. One
    dict per side: ``canvas`` and the metrics of :func:`dham_lib.train.evaluate`.
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"cell must be a dham_lib.experiments.Cell, got {type(cell).__name__}")
    scores = []
    for side in sides:
        _checks.positive_int("side", side)
        metrics = evaluate(model, make_dataset(cell, "test", canvas=side), batch_size=batch_size)
        scores.append({"canvas": side, **metrics})
    return scores


def stride_offsets(size: int, stride: int) -> torch.Tensor:
    """Where DHAM reads each column of an attention map made at ``stride``, minus where it is.

    ``AttentionNet`` average-pools the image by ``stride`` (``ceil_mode``, so a
    last, partial window keeps the far edge) and DHAM reads its ``ceil(size /
    stride)`` columns as spanning the image, column k at ``k · (size - 1) /
    (columns - 1)`` pixels. The pooled column really summarises image pixels
    ``k·stride … k·stride + stride - 1`` (cut at the edge), centred on their mean.
    Returns the difference in image pixels, ``[columns]``; its size stays below
    ``stride / 2``.
    """
    size = _checks.positive_int("size", size)
    stride = _checks.positive_int("stride", stride)
    columns = -(-size // stride)
    if columns < 2:
        raise ValueError(f"size / stride must give at least 2 map columns, got {columns}")
    k = torch.arange(columns, dtype=torch.float64)
    read = k * (size - 1) / (columns - 1)
    first = k * stride
    last = torch.clamp(first + stride - 1, max=size - 1)
    return read - (first + last) / 2


def box_logits(boxes: torch.Tensor, image_size: tuple[int, int], height: float = 10.0):
    """Hand-made attention logits: ``height`` inside each box, 0 outside (notebook 06).

    ``boxes`` ``[K, 4]`` in pixels → logits ``[1, K, H, W]``, one channel per box,
    so that DHAM with K channels glimpses each box. With ``height = 10`` each
    pixel inside outweighs one outside ``e^10 ≈ 22,000`` times.
    """
    boxes = _checks.tensor("boxes", torch.as_tensor(boxes).float(), ndim=2)
    if boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [K, 4], got {tuple(boxes.shape)}")
    h, w = _checks.size_pair("image_size", image_size)
    ys, xs = torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32)
    inside_x = (xs >= boxes[:, 0, None]) & (xs <= boxes[:, 2, None])  # [K, W]
    inside_y = (ys >= boxes[:, 1, None]) & (ys <= boxes[:, 3, None])  # [K, H]
    inside = inside_y[:, :, None] & inside_x[:, None, :]
    return (float(height) * inside.float())[None]


__all__ = [
    "COMPARISON_METRICS",
    "MODEL_ORDER",
    "RESULTS_DIR",
    "Attention",
    "attend",
    "attention_explorer",
    "box_logits",
    "clutter_explorer",
    "evaluate_canvases",
    "glimpse_stats",
    "ink_share",
    "mass_in_box",
    "model_summary",
    "plot_canvases",
    "plot_glimpse_sizes",
    "stride_offsets",
]
