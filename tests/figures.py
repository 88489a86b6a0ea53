"""Shared by the tests of figures and trained models: draw off-screen, read drawn boxes
back, check labels, and small stand-ins for digits and models."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from dham_lib.models import DHAMClassifier


@pytest.fixture(autouse=True)
def agg_backend():
    """Draw off-screen, and close every figure after each test."""
    matplotlib.use("Agg")
    yield
    plt.close("all")


def rectangles(ax) -> list[tuple[float, float, float, float]]:
    """The ``x0, y0, x1, y1`` of every Rectangle patch drawn on ``ax``."""
    rects = [p for p in ax.patches if isinstance(p, Rectangle)]
    return [
        (r.get_x(), r.get_y(), r.get_x() + r.get_width(), r.get_y() + r.get_height()) for r in rects
    ]


MIN_FONT_PT = 9  # the smallest text a figure may hold, readable at the notebooks' dpi


def assert_labelled(fig: Figure, skip=()) -> None:
    """Every panel but colour bars and ``skip`` has a title and both axis labels, and no
    text of the figure (titles, labels, ticks, legends, annotations) is under 8 pt."""
    for ax in fig.axes:
        if ax in skip or ax.get_label() == "<colorbar>":
            continue
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), ax
    small = {
        (text.get_text(), text.get_fontsize())
        for text in fig.findobj(Text)
        if text.get_visible() and text.get_text() and text.get_fontsize() < MIN_FONT_PT
    }
    assert not small, f"texts under {MIN_FONT_PT} pt: {sorted(small)[:5]}"


def bar_digits(n=12):
    """Synthetic 28×28 'digits': a bright bar in each, labels 0..9 cycling."""
    rng = np.random.default_rng(0)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for i in range(n):
        row = rng.integers(6, 22)
        images[i, row - 2 : row + 2, 4:24] = 255
    return images, np.arange(n) % 10


def small_dham(**kwargs):
    """An untrained DHAM classifier of attention width 4 at stride 2, seeded."""
    torch.manual_seed(0)
    return DHAMClassifier(width=4, stride=2, **kwargs)
