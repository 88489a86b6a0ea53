"""Figures: the right panels, labels and boxes, and clear errors for bad input."""

import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from dham_lib.sampling import glimpse_box
from dham_lib.viz import plot_glimpses, plot_learning_curves, plot_pmf
from tests.figures import agg_backend, rectangles  # noqa: F401 (agg_backend is an autouse fixture)


def _assert_labelled(fig: Figure, skip=()) -> None:
    for ax in fig.axes:
        if ax in skip:
            continue
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


def _batch(b=3, k=1):
    torch.manual_seed(0)
    canvases = torch.rand(b, 1, 60, 80)
    boxes = torch.tensor([[10.0, 5.0, 37.0, 32.0]]).repeat(b, k, 1) + torch.arange(k)[:, None]
    glimpses = torch.rand(b, k, 1, 28, 28)
    return canvases, boxes, glimpses


def test_plot_glimpses_draws_each_box():
    canvases, boxes, glimpses = _batch()
    true_boxes = torch.tensor([[12.0, 6.0, 36.0, 30.0]]).repeat(3, 1)
    fig = plot_glimpses(
        canvases,
        boxes[:, 0],
        glimpses,
        labels=torch.tensor([1, 2, 3]),
        predictions=torch.tensor([1, 7, 3]),
        true_boxes=true_boxes,
    )
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 6  # n = 3 items (fewer than 8), canvas row + glimpse row
    _assert_labelled(fig)
    top = fig.axes[:3]  # the canvas row
    assert top[0].get_xlabel() == "x (pixels)" and top[1].get_title() == "label 2, pred 7"
    for i, ax in enumerate(top):
        rects = rectangles(ax)
        assert rects[0] == pytest.approx(tuple(boxes[i, 0].tolist()))
        assert rects[1] == pytest.approx(tuple(true_boxes[i].tolist()))
        attention, truth = [p for p in ax.patches if isinstance(p, Rectangle)]
        assert attention.get_edgecolor()[:3] == pytest.approx((1.0, 0.0, 0.0))
        assert truth.get_linestyle() == "--"


def test_plot_glimpses_with_two_glimpses_and_n():
    canvases, boxes, glimpses = _batch(b=5, k=2)
    fig = plot_glimpses(canvases, boxes, glimpses, n=4)
    assert len(fig.axes) == 12  # 4 items x (canvas + 2 glimpses)
    _assert_labelled(fig)
    assert len(rectangles(fig.axes[0])) == 2
    assert rectangles(fig.axes[0])[1] == pytest.approx(tuple(boxes[0, 1].tolist()))


def test_plot_glimpses_rejects_bad_input():
    canvases, boxes, glimpses = _batch()
    with pytest.raises(ValueError, match="canvases"):
        plot_glimpses(canvases[:, 0], boxes, glimpses)
    with pytest.raises(ValueError, match=r"boxes 2"):
        plot_glimpses(canvases, boxes[:2], glimpses)
    with pytest.raises(ValueError, match=r"labels 4"):
        plot_glimpses(canvases, boxes, glimpses, labels=torch.arange(4))
    with pytest.raises(ValueError, match=r"boxes .*K = 2"):
        plot_glimpses(canvases, boxes, torch.rand(3, 2, 1, 28, 28))
    with pytest.raises(ValueError, match="n must"):
        plot_glimpses(canvases, boxes, glimpses, n=0)


def test_plot_pmf_marks_the_mean_and_the_box():
    pmf = torch.zeros(30, 40)
    pmf[10:20, 5:15] = 1 / 100
    fig = plot_pmf(pmf, title="a square PMF")
    assert len(fig.axes) == 2  # the heat map and its colour bar
    ax, colourbar = fig.axes
    assert ax.get_title() == "a square PMF"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x (pixels)", "y (pixels)")
    assert colourbar.get_ylabel() == "probability"
    # The mean of the square is its centre pixel coordinate (9.5, 14.5).
    mean = [line for line in ax.lines if line.get_marker() == "+"][0]
    assert (mean.get_xdata()[0], mean.get_ydata()[0]) == pytest.approx((9.5, 14.5))
    (rect,) = rectangles(ax)
    assert (rect[0] + rect[2]) / 2 == pytest.approx(9.5)
    assert (rect[1] + rect[3]) / 2 == pytest.approx(14.5)


def test_plot_pmf_over_an_image_uses_image_pixels():
    pmf = torch.full((1, 1, 15, 20), 1 / 300)
    image = torch.rand(60, 80)
    fig = plot_pmf(pmf, tx=0.5, ty=torch.tensor(-0.25), s=torch.tensor([[0.2]]), image=image)
    ax = fig.axes[0]
    expected = glimpse_box(torch.tensor(0.5), torch.tensor(-0.25), torch.tensor(0.2), (60, 80))
    assert rectangles(ax)[0] == pytest.approx(tuple(expected.tolist()))
    heat = ax.get_images()[1]
    # The map's corner pixel centres sit on the image's: 0 and 79 across, 0 and 59 down.
    left, right, bottom, top = heat.get_extent()
    step_x, step_y = 79 / 19, 59 / 14
    assert (left + step_x / 2, right - step_x / 2) == pytest.approx((0, 79))
    assert (top + step_y / 2, bottom - step_y / 2) == pytest.approx((0, 59))


def test_plot_pmf_rejects_bad_input():
    with pytest.raises(ValueError, match="pmf"):
        plot_pmf(torch.full((2, 5, 5), 1 / 25))
    with pytest.raises(ValueError, match="pmf must sum to 1"):
        plot_pmf(torch.ones(5, 5))
    with pytest.raises(ValueError, match="tx, ty and s"):
        plot_pmf(torch.full((5, 5), 1 / 25), tx=0.0)
    with pytest.raises(ValueError, match="image"):
        plot_pmf(torch.full((5, 5), 1 / 25), image=torch.rand(1, 3, 5, 5))


def _history(iou=True):
    history = {
        "epoch": [1, 2, 3],
        "train_loss": [2.0, 1.0, 0.5],
        "test_loss": [2.1, 1.2, 0.7],
        "train_acc": [0.3, 0.6, 0.9],
        "test_acc": [0.25, 0.55, 0.8],
    }
    if iou:
        history["test_iou"] = [0.1, 0.3, 0.5]
    return history


@pytest.mark.parametrize(("iou", "panels"), [(False, 2), (True, 3)])
def test_plot_learning_curves_panels(iou, panels):
    fig = plot_learning_curves(_history(iou))
    assert len(fig.axes) == panels
    _assert_labelled(fig)
    acc = fig.axes[1]
    assert acc.get_ylabel() == "accuracy (%)"
    assert list(acc.lines[0].get_ydata()) == pytest.approx([30, 60, 90])
    assert all(ax.get_xlabel() == "epoch" for ax in fig.axes)


def test_plot_learning_curves_rejects_bad_history():
    with pytest.raises(ValueError, match="test_acc"):
        plot_learning_curves({k: v for k, v in _history().items() if k != "test_acc"})
    with pytest.raises(ValueError, match="one length"):
        plot_learning_curves({**_history(), "test_loss": [1.0]})
    with pytest.raises(ValueError, match=r"history\['train_acc'\] must be fractions"):
        plot_learning_curves({**_history(), "train_acc": [30, 60, 90]})
    with pytest.raises(TypeError, match="history"):
        plot_learning_curves([1, 2, 3])


def test_learning_curves_without_a_box_skip_the_iou_panel():
    history = {
        "epoch": [1, 2],
        "train_loss": [2.0, 1.0],
        "test_loss": [2.1, 1.2],
        "train_acc": [0.2, 0.6],
        "test_acc": [0.2, 0.5],
        "test_iou": [float("nan"), float("nan")],
    }
    assert len(plot_learning_curves(history).axes) == 2


def test_sweep_heatmap_cells_and_labels():
    from dham_lib.viz import plot_sweep_heatmap

    summary = [
        {
            "model": "dham",
            "width": w,
            "snr_db": snr,
            "n": 2,
            "test_acc_mean": 0.5,
            "test_acc_std": 0.1,
        }
        for w in (2, 8)
        for snr in (None, 6.0, 0.0)
    ]
    summary.append(
        {
            "model": "oracle",
            "width": 0,
            "snr_db": None,
            "n": 2,
            "test_acc_mean": 0.9,
            "test_acc_std": 0.0,
        }
    )
    fig = plot_sweep_heatmap(summary)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["clean", "6", "0"]
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert sum("50.0" in t.get_text() for t in ax.texts) == 6
    with pytest.raises(ValueError, match="metric"):
        plot_sweep_heatmap(summary, metric="speed")
