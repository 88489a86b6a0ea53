"""Shared by the figure tests: draw off-screen, close figures, read drawn boxes back."""

import matplotlib
import matplotlib.pyplot as plt
import pytest
from matplotlib.patches import Rectangle


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
