"""Slider functions of notebook 05 (noisy backgrounds): what an SNR looks like, and where
trained models look at a chosen SNR.

Both return :class:`dham_lib.interactive.View`: the figure and the numbers it shows.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import matplotlib.pyplot as plt
import torch
from torch import nn

from dham_lib import _checks
from dham_lib.data import TranslatedMNIST, load_mnist
from dham_lib.experiments import TEST_SEED
from dham_lib.interactive import View
from dham_lib.metrics import box_iou
from dham_lib.viz import plot_glimpses


@functools.lru_cache(maxsize=1)
def _test_digits():
    """The bundled test digits, loaded once per session."""
    return load_mnist("test", source="bundled", verbose=False)


def _snr(snr_db) -> float | None:
    """A finite SNR in dB, or None for a clean canvas."""
    if snr_db is None:
        return None
    if (
        isinstance(snr_db, bool)
        or not isinstance(snr_db, (int, float))
        or not math.isfinite(snr_db)
    ):
        raise ValueError(f"snr_db must be a finite number of dB or None, got {snr_db!r}")
    return float(snr_db)


def measured_snr_db(clean: torch.Tensor, noisy: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """The SNR of each canvas as DESIGN.md defines it, measured: ``[B]`` in dB.

    ``clean`` and ``noisy`` are ``[B, 1, H, W]`` versions of the same items and
    ``boxes`` their ``[B, 4]`` digit boxes: signal power is ``mean(d²)`` over the
    box of the clean canvas, noise power the variance of ``noisy - clean`` where
    the clean canvas has no stroke.
    """
    b, _, h, w = clean.shape
    ys = torch.arange(h)[None, :, None]
    xs = torch.arange(w)[None, None, :]
    x0, y0, x1, y1 = (boxes[:, k, None, None] for k in range(4))
    inside = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    signal = (clean[:, 0] ** 2 * inside).sum(dim=(1, 2)) / inside.sum(dim=(1, 2))
    background = clean[:, 0] == 0
    noise = noisy[:, 0] - clean[:, 0]
    count = background.sum(dim=(1, 2))
    mean = (noise * background).sum(dim=(1, 2)) / count
    power = ((noise - mean[:, None, None]) ** 2 * background).sum(dim=(1, 2)) / (count - 1)
    return 10 * torch.log10(signal / power)


def snr_gallery(snr_db: float | None, n: int = 6, seed: int = 0) -> View:
    """``n`` test canvases at ``snr_db`` (None: clean), each titled with its measured SNR.

    Numbers: the requested SNR, the mean measured SNR and the mean noise σ.
    """
    snr_db = _snr(snr_db)
    n = _checks.positive_int("n", n)
    images, labels = _test_digits()
    noisy = TranslatedMNIST(images[:n], labels[:n], snr_db=snr_db, seed=seed)
    clean = TranslatedMNIST(images[:n], labels[:n], snr_db=None, seed=seed)
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
        ax.set_xlabel("x (pixels)", fontsize=7)
        ax.tick_params(labelsize=6)
    axes[0][0].set_ylabel("y (pixels)", fontsize=7)
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
    canvases at this SNR, computed live.
    """
    if not isinstance(models, Mapping) or not models:
        raise TypeError("models must be a non-empty dict of width -> trained DHAM model")
    if width not in models:
        raise ValueError(f"width must be one of {sorted(models)}, got {width!r}")
    snr_db = _snr(snr_db)
    n = _checks.positive_int("n", n)
    score = _checks.positive_int("score", score)
    model = models[width]
    images, labels = _test_digits()
    count = min(max(n, score), len(labels))
    data = TranslatedMNIST(images[:count], labels[:count], snr_db=snr_db, seed=TEST_SEED)
    canvases, digits, boxes = data.batch(range(count))
    with torch.no_grad():
        prediction = model(canvases)
    predicted = prediction.logits.argmax(dim=1)
    iou = box_iou(prediction.boxes[:, 0], boxes)
    label = "clean" if snr_db is None else f"{snr_db:g} dB"
    fig = plot_glimpses(
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
