"""Box metrics: how well a glimpse box matches the true digit box (notebook 04). Boxes are
``[..., 4]`` tensors ``x0, y0, x1, y1`` in pixel coordinates (docs/conventions.md)."""

from __future__ import annotations

import torch

from dham_lib import _checks


def _area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _intersection(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    sides = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(0)
    return sides[..., 0] * sides[..., 1]


def _pair(a: torch.Tensor, b: torch.Tensor, names=("a", "b")) -> tuple[torch.Tensor, ...]:
    """Check two tensors of boxes ``[..., 4]`` and broadcast them together."""
    for name, boxes in zip(names, (a, b), strict=True):
        _checks.tensor(name, boxes)
        if boxes.shape[-1] != 4:
            raise ValueError(f"{name} must have shape [..., 4], got {tuple(boxes.shape)}")
        if (boxes[..., 2:] < boxes[..., :2]).any():
            raise ValueError(f"{name} must have x1 >= x0 and y1 >= y0 in every box")
    try:
        return torch.broadcast_tensors(a, b)
    except RuntimeError:
        raise ValueError(
            f"{names[0]} and {names[1]} must broadcast together, got shapes "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        ) from None


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union, elementwise: ``[..., 4]``, ``[..., 4]`` → ``[...]``.

    A pair whose union has zero area scores 0, never NaN.
    """
    a, b = _pair(a, b)
    inter = _intersection(a, b)
    union = _area(a) + _area(b) - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def box_coverage(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Fraction of the true box's area inside the predicted box: ``[..., 4]`` x2 → ``[...]``.

    A loose glimpse can cover the whole digit (coverage 1) with a low IoU.
    """
    pred, true = _pair(pred, true, ("pred", "true"))
    area = _area(true)
    inter = _intersection(pred, true)
    return torch.where(area > 0, inter / area.clamp(min=1e-12), torch.zeros_like(area))


def box_centre_error(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Euclidean distance in pixels between the two boxes' centres: ``[..., 4]`` x2 → ``[...]``."""
    pred, true = _pair(pred, true, ("pred", "true"))
    dxy = (pred[..., :2] + pred[..., 2:] - true[..., :2] - true[..., 2:]) / 2
    return torch.sqrt(dxy[..., 0] ** 2 + dxy[..., 1] ** 2)


def ink_square(images: torch.Tensor, threshold: float = 0.2) -> torch.Tensor:
    """The square that frames each image's ink: ``[B, 1, H, W]`` → ``[B, 4]`` boxes.

    The ink's (pixels above ``threshold``) bounding box, widened to a square about its
    centre: the tightest fair target for a square glimpse, as the data's box includes
    MNIST's empty margins (notebook 04). Clean canvases only; an image without ink is an error.
    """
    _checks.tensor("images", images, ndim=4)
    if images.shape[1] != 1:
        raise ValueError(f"images must have one channel, got shape {tuple(images.shape)}")
    ink = images[:, 0] > threshold
    rows, cols = ink.any(dim=2), ink.any(dim=1)
    blank = torch.nonzero(~rows.any(dim=1)).flatten()
    if blank.numel():
        raise ValueError(
            f"images[{blank[0].item()}] has no pixel above threshold={threshold}; "
            "expected some ink in every image"
        )
    y0, y1 = _first_and_last(rows)
    x0, x1 = _first_and_last(cols)
    half = torch.maximum(x1 - x0, y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return torch.stack([cx - half, cy - half, cx + half, cy + half], dim=-1)


def _first_and_last(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the first and last True of each row of ``[B, N]`` (each has one): ``[B]`` each."""
    last = mask.shape[1] - 1 - mask.flip(1).float().argmax(dim=1)
    return mask.float().argmax(dim=1).float(), last.float()


def measured_snr_db(clean: torch.Tensor, noisy: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """The SNR of each canvas as the course defines it (notebook 05), measured: ``[B]`` in dB.

    ``clean`` and ``noisy`` are ``[B, 1, H, W]`` versions of the same items and
    ``boxes`` their ``[B, 4]`` digit boxes: signal power is ``mean(d²)`` over the
    box of the clean canvas, noise power the variance of ``noisy - clean`` where
    the clean canvas has no stroke.
    """
    ys, xs = torch.arange(clean.shape[2])[:, None], torch.arange(clean.shape[3])
    x0, y0, x1, y1 = (boxes[:, k, None, None] for k in range(4))
    inside = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    signal = (clean[:, 0] ** 2 * inside).sum(dim=(1, 2)) / inside.sum(dim=(1, 2))
    background = clean[:, 0] == 0
    noise = noisy[:, 0] - clean[:, 0]
    count = background.sum(dim=(1, 2))
    mean = (noise * background).sum(dim=(1, 2)) / count
    power = ((noise - mean[:, None, None]) ** 2 * background).sum(dim=(1, 2)) / (count - 1)
    return 10 * torch.log10(signal / power)
