"""Looking inside a trained model: what it attends to, how its glimpses sit (notebooks 04-07).

The helpers leave the :class:`~dham_lib.models.DHAMClassifier` unchanged; boxes are in pixel
coordinates (pixel i's centre at i), like every box in the library.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from dham_lib import _checks
from dham_lib.data import TranslatedMNIST, balanced_order
from dham_lib.dham import DHAM
from dham_lib.metrics import box_centre_error, box_coverage, box_iou
from dham_lib.models import DHAMClassifier
from dham_lib.sampling import glimpse_box


class Attention(NamedTuple):
    """What a trained DHAM classifier does with canvases ``[B, 1, H, W]`` (:func:`attend`).

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


def _instance(name: str, value, kind: type):
    """``value`` if it is a ``kind``, else a TypeError naming the argument."""
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be a {kind.__name__}, got {type(value).__name__}")
    return value


@torch.no_grad()
def attend(model: DHAMClassifier, canvases: torch.Tensor, temperature=None, norm=None) -> Attention:
    """Run ``model`` (in eval mode, restored after) on ``canvases`` ``[B, C, H, W]``: the
    explorers of notebooks 04 and 06 and :func:`glimpse_stats`. A ``temperature`` or ``norm``
    (1 or 2) makes the PMF from the trained logits with a new DHAM for this call only (None
    keeps the model's): sharper (T < 1), flatter (T > 1), or its glimpse sized by the other norm.
    """
    model = _instance("model", model, DHAMClassifier)
    _checks.tensor("canvases", canvases, ndim=4)
    layer = model.dham
    if temperature is not None or norm is not None:
        norm = layer.norm if norm is None else norm
        temperature = layer.temperature if temperature is None else temperature
        layer = DHAM(layer.output_size, norm=norm, temperature=temperature)
    was_training = model.training
    model.eval()
    try:
        canvases = canvases.to(next(model.parameters()).device)
        logits = model.attention(canvases)
        pmf, params = layer.attention(logits)
        glimpses, _ = layer(canvases, logits)
        probabilities = torch.softmax(model.classifier(glimpses), dim=1)
    finally:
        model.train(was_training)
    boxes = glimpse_box(*params, image_size=tuple(canvases.shape[-2:]))
    return Attention(pmf, *params, boxes, glimpses, probabilities)


@torch.no_grad()
def glimpse_stats(
    model: DHAMClassifier,
    dataset: TranslatedMNIST,
    batch_size: int = 256,
    limit: int | None = None,
    norm: int | None = None,
    temperature: float | None = None,
) -> dict[str, torch.Tensor]:
    """Per-canvas numbers of ``model`` (first attention channel) on every item of
    ``dataset``, or on ``limit`` of them with the classes in turn
    (:func:`~dham_lib.data.balanced_order`); notebooks 04, 06 and 07.

    ``norm`` and ``temperature`` as in :func:`attend`. A dict of CPU tensors, ``[N]`` unless
    noted: ``index`` (in ``dataset``), ``label``, ``prediction``, ``correct`` (bool),
    ``boxes`` and ``true_boxes`` ``[N, 4]`` (pixels), ``glimpse_side`` and ``digit_side``
    (pixels, first to last sample's centre), ``iou``, ``coverage``, ``centre_error``
    (pixels), ``p_max`` (the PMF's largest probability), ``ink_share`` (:func:`ink_share`)
    and ``mass_in_box`` (:func:`mass_in_box` of the true box).
    """
    model = _instance("model", model, DHAMClassifier)
    dataset = _instance("dataset", dataset, TranslatedMNIST)
    _checks.positive_int("batch_size", batch_size)
    items = np.arange(len(dataset))
    if limit is not None:
        items = balanced_order(dataset.labels)[: _checks.positive_int("limit", limit)]
    parts = []
    for start in range(0, len(items), batch_size):
        index = torch.as_tensor(items[start : start + batch_size])
        canvases, labels, true_boxes = dataset.batch(index.numpy())
        seen = attend(model, canvases, temperature=temperature, norm=norm)
        boxes, pmf = seen.boxes[:, 0].cpu(), seen.pmf.cpu()
        prediction = seen.probabilities.argmax(dim=1).cpu()
        values = {
            "index": index,
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
            "p_max": pmf[:, 0].flatten(1).amax(dim=1),
            "ink_share": ink_share(canvases, boxes),
            "mass_in_box": mass_in_box(pmf, true_boxes, canvases.shape[-2:])[:, 0],
        }
        parts.append(values)
    return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}


def mass_in_box(pmf: torch.Tensor, boxes: torch.Tensor, image_size) -> torch.Tensor:
    """Share of each PMF's mass on a box of the image: ``[B, K, h, w]``, ``[B, 4]`` → ``[B, K]``
    (notebooks 06 and 07, through :func:`glimpse_stats`).

    The map spans the image as DHAM reads it: map pixel ``(i, j)`` sits at image pixel
    ``(j · (W - 1)/(w - 1), i · (H - 1)/(h - 1))`` and counts when that point lies in the box
    (edges included).
    """
    _checks.tensor("pmf", pmf, ndim=4)
    _one_box_each(boxes, len(pmf), "PMF batch item")
    height, width = _checks.size_pair("image_size", tuple(int(v) for v in image_size))
    h, w = pmf.shape[-2:]
    xs = torch.arange(w, dtype=pmf.dtype) * (width - 1) / max(w - 1, 1)
    ys = torch.arange(h, dtype=pmf.dtype) * (height - 1) / max(h - 1, 1)
    return (pmf * _inside(boxes.to(pmf.dtype), xs, ys)[:, None]).sum(dim=(-2, -1))


def _one_box_each(boxes: torch.Tensor, n: int, what: str) -> None:
    """Check that ``boxes`` is ``[n, 4]``, one box per ``what``."""
    _checks.tensor("boxes", boxes, ndim=2)
    if boxes.shape != (n, 4):
        raise ValueError(
            f"boxes must have shape [{n}, 4] (one per {what}), got {tuple(boxes.shape)}"
        )


def _inside(boxes: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Which points of the grid ``ys × xs`` lie in each box (edges included): ``[N, H, W]``."""
    inside_x = (xs >= boxes[:, 0, None]) & (xs <= boxes[:, 2, None])  # [N, W]
    inside_y = (ys >= boxes[:, 1, None]) & (ys <= boxes[:, 3, None])  # [N, H]
    return (inside_y[:, :, None] & inside_x[:, None, :]).to(xs.dtype)


def ink_share(canvases: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Share of each canvas's intensity on the pixels whose centres lie in its box (edges
    included): ``[B, C, H, W]``, ``[B, 4]`` → ``[B]``, 0 for a canvas without ink
    (notebooks 04 and 06, through :func:`glimpse_stats`)."""
    _checks.tensor("canvases", canvases, ndim=4)
    _one_box_each(boxes, len(canvases), "canvas")
    total = canvases.sum(dim=(1, 2, 3))
    ink = canvases / torch.where(total != 0, total, 1)[:, None, None, None]
    return mass_in_box(ink, boxes.to(ink.dtype), canvases.shape[-2:]).sum(dim=1)


def stride_offsets(size: int, stride: int) -> torch.Tensor:
    """Where DHAM reads each column of an attention map made at ``stride``, minus where it is,
    in image pixels: ``[columns]``, each below ``stride / 2`` in size (notebook 06).

    ``AttentionNet`` average-pools by ``stride`` (``ceil_mode``: a last, partial window keeps
    the far edge), so pooled column k summarises pixels ``k·stride … k·stride + stride - 1``
    (cut at the edge), centred on their mean; DHAM reads its ``ceil(size / stride)`` columns
    as spanning the image, column k at ``k · (size - 1) / (columns - 1)``.
    """
    size = _checks.positive_int("size", size)
    stride = _checks.positive_int("stride", stride)
    columns = -(-size // stride)
    if columns < 2:
        raise ValueError(f"size / stride must give at least 2 map columns, got {columns}")
    k = torch.arange(columns, dtype=torch.float64)
    first = k * stride
    last = torch.clamp(first + stride - 1, max=size - 1)
    return k * (size - 1) / (columns - 1) - (first + last) / 2


def box_logits(boxes: torch.Tensor, image_size: tuple[int, int], height: float = 10.0):
    """Hand-made attention logits, ``height`` inside each box and 0 outside: ``boxes``
    ``[K, 4]`` (pixels) → ``[1, K, H, W]``, one channel per box (notebook 06). With
    ``height = 10`` a pixel inside outweighs one outside ``e^10 ≈ 22,000`` times."""
    boxes = _checks.tensor("boxes", torch.as_tensor(boxes).float(), ndim=2)
    if boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [K, 4], got {tuple(boxes.shape)}")
    h, w = _checks.size_pair("image_size", image_size)
    ys, xs = torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32)
    return (float(height) * _inside(boxes, xs, ys))[None]
