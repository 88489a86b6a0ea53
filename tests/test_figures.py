"""Figures: the right panels, labels and boxes, and clear errors for bad input."""

import math

import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from dham_lib.study.figures import MODEL_COLOURS, plot_glimpses, plot_learning_curves
from tests.figures import (  # noqa: F401 (agg_backend is an autouse fixture)
    agg_backend,
    assert_labelled,
    rectangles,
)


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
    assert_labelled(fig)
    top = fig.axes[:3]  # the canvas row
    assert top[0].get_xlabel() == "x (pixels)" and top[1].get_title() == "label 2, pred 7"
    for i, ax in enumerate(top):
        rects = rectangles(ax)
        assert rects[0] == pytest.approx(tuple(boxes[i, 0].tolist()))
        assert rects[1] == pytest.approx(tuple(true_boxes[i].tolist()))
        attention, truth = [p for p in ax.patches if isinstance(p, Rectangle)]
        assert attention.get_edgecolor()[:3] == pytest.approx((1.0, 0.0, 0.0))
        assert truth.get_linestyle() == "--"
    # Pixels drawn nearest-neighbour (noise not smoothed), and a legend under the panels
    # says what the boxes are.
    assert all(ax.get_images()[0].get_interpolation() == "nearest" for ax in fig.axes)
    (legend,) = fig.legends
    assert [text.get_text() for text in legend.get_texts()] == ["glimpse box", "true digit box"]
    fig.canvas.draw()
    assert legend.get_window_extent().y1 <= min(ax.get_tightbbox().y0 for ax in fig.axes)


def test_plot_glimpses_with_two_glimpses_and_n():
    canvases, boxes, glimpses = _batch(b=5, k=2)
    fig = plot_glimpses(canvases, boxes, glimpses, n=4)
    assert len(fig.axes) == 12  # 4 items x (canvas + 2 glimpses)
    assert_labelled(fig)
    assert len(rectangles(fig.axes[0])) == 2
    assert rectangles(fig.axes[0])[1] == pytest.approx(tuple(boxes[0, 1].tolist()))
    assert [text.get_text() for text in fig.legends[0].get_texts()] == [
        "glimpse 0 box",
        "glimpse 1 box",
    ]
    named = plot_glimpses(canvases, boxes, glimpses, n=1, glimpse_names=["L2", "L1"])
    assert [ax.get_title() for ax in named.axes[1:]] == ["L2", "L1"]
    with pytest.raises(ValueError, match="glimpse_names must be 2 strings"):
        plot_glimpses(canvases, boxes, glimpses, glimpse_names=["L2"])


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


def _history(iou=True, centre=False):
    history = {
        "epoch": [1, 2, 3],
        "train_loss": [2.0, 1.0, 0.5],
        "test_loss": [2.1, 1.2, 0.7],
        "train_acc": [0.3, 0.6, 0.9],
        "test_acc": [0.25, 0.55, 0.8],
    }
    if iou:
        history["test_iou"] = [0.1, 0.3, 0.5]
    if centre:
        history["test_centre_error"] = [30.0, 12.0, 2.5]
    return history


@pytest.mark.parametrize(
    ("iou", "centre", "panels"), [(False, False, 2), (True, False, 3), (True, True, 4)]
)
def test_plot_learning_curves_panels(iou, centre, panels):
    fig = plot_learning_curves(_history(iou, centre))
    assert len(fig.axes) == panels
    assert_labelled(fig)
    acc = fig.axes[1]
    assert acc.get_ylabel() == "accuracy (%)"
    assert list(acc.lines[0].get_ydata()) == pytest.approx([30, 60, 90])
    assert [line.get_label() for line in acc.lines] == ["train", "validation"]
    assert all(ax.get_xlabel() == "epoch" for ax in fig.axes)
    if centre:
        assert fig.axes[3].get_ylabel() == "centre error (pixels)"
        assert list(fig.axes[3].lines[0].get_ydata()) == [30.0, 12.0, 2.5]


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


def test_mean_interval_is_students_t():
    from dham_lib.study.results import mean_interval

    low, high = mean_interval(0.95, 0.01, 3)  # t(0.975, 2 df) = 4.3027 from the tables
    assert high - 0.95 == pytest.approx(4.3027 * 0.01 / math.sqrt(3), rel=1e-4)
    assert 0.95 - low == pytest.approx(high - 0.95)
    assert mean_interval(0.9, 0.0, 1) == (0.9, 0.9)  # one seed: no spread to judge by
    assert mean_interval(0.5, 0.1, 2, share=True) == (0.0, 1.0)  # 0.5 ± 0.898, clipped


def test_plot_model_comparison_points_with_intervals_and_no_oracle_box():
    from dham_lib.study.figures import plot_model_comparison

    summary = pd.DataFrame(
        {
            "model": ["cnn", "dham", "oracle"],
            "n": [3, 3, 3],
            "test_acc_mean": [0.951, 0.961, 0.970],
            "test_acc_std": [0.004, 0.003, 0.002],
            "iou_mean": [math.nan, 0.30, 1.0],
            "iou_std": [math.nan, 0.02, 0.0],
        }
    )
    fig = plot_model_comparison(summary, metrics=("test_acc", "iou"))
    accuracy, iou = fig.axes
    assert_labelled(fig)
    # One point per model that has the metric, none for the CNN's IoU or the oracle's.
    assert len(accuracy.lines) >= 3 and accuracy.get_ylim()[0] > 90  # the axis spans the data
    plotted = [line.get_ydata()[0] for line in iou.lines if len(line.get_xdata()) == 1]
    assert 1.0 not in plotted and any(abs(y - 0.30) < 1e-9 for y in plotted)
    # What is left out is said under the axis, never printed across the panel's data.
    assert "not shown: cnn, oracle" in iou.get_xlabel() and not iou.texts
    assert "not shown" not in accuracy.get_xlabel()
    # A panel keeps no empty slot for a model it leaves out: DHAM alone, at 0.
    assert [t.get_text() for t in iou.get_xticklabels()] == ["dham"]
    assert iou.get_xlim() == (-0.5, 0.5) and iou.lines[0].get_xdata()[0] == 0
    # Each model has its one colour in every panel.
    colours = [line.get_color() for line in accuracy.lines if line.get_marker() == "o"]
    assert colours == ["C5", "C0", "C1"] and iou.lines[0].get_color() == "C0"


def test_plot_model_comparison_shares_the_accuracy_axis_and_takes_titles():
    from dham_lib.study.figures import plot_model_comparison

    summary = pd.DataFrame(
        {
            "model": ["dham", "oracle"],
            "n": [3, 3],
            "test_acc_mean": [0.96, 0.98],
            "test_acc_std": [0.004, 0.002],
            "acc_canvas200_mean": [0.35, 0.97],
            "acc_canvas200_std": [0.05, 0.003],
        }
    )
    titles = {"test_acc": "accuracy on 120×120 canvases (%)"}
    fig = plot_model_comparison(summary, ("test_acc", "acc_canvas200"), titles=titles)
    small, large = fig.axes
    assert_labelled(fig)
    # All accuracies: one y axis, so a 2-point spread looks smaller than a 60-point fall.
    assert small.get_ylim() == large.get_ylim() and small.get_ylim()[0] < 40
    assert small.get_title() == titles["test_acc"]
    assert large.get_title() == "accuracy on 200×200 canvases (%)"
    # Without titles, the usual one.
    plain = plot_model_comparison(summary, ("test_acc",)).axes[0]
    assert plain.get_title() == "test accuracy (%)"


def test_plot_model_comparison_tells_widths_of_one_model_apart():
    from dham_lib.study.figures import plot_model_comparison

    summary = pd.DataFrame(
        {
            "model": ["dham", "pooled_cnn", "pooled_cnn"],
            "width": [16, 8, 16],
            "n": [5, 3, 5],
            "test_acc_mean": [0.955, 0.938, 0.940],
            "test_acc_std": [0.007, 0.012, 0.012],
        }
    )
    (accuracy,) = plot_model_comparison(summary, metrics=("test_acc",)).axes
    labels = [text.get_text() for text in accuracy.get_xticklabels()]
    assert labels == ["dham", "pooled_cnn w8", "pooled_cnn w16"]
    # The two widths of the CNN share its colour and differ in marker.
    points = [line for line in accuracy.lines if line.get_marker() in ("o", "s")]
    assert [(p.get_color(), p.get_marker()) for p in points] == [
        ("C0", "o"),
        ("C4", "o"),
        ("C4", "s"),
    ]


def _flops_points():
    rows = []
    for side, dham_flops, cnn_flops in ((120, 30.0, 90.0), (480, 114.0, 1500.0)):
        for label, flops, acc in (("dham", dham_flops, 0.95), ("pooled_cnn w16", cnn_flops, 0.94)):
            rows.append((label, side, flops, acc, acc - 0.02, acc + 0.01, "mean of all seeds"))
            rows.append(
                (
                    label,
                    side,
                    flops,
                    acc + 0.01,
                    acc - 0.005,
                    acc + 0.02,
                    "seed chosen on validation",
                )
            )
    columns = ["label", "canvas", "mflop", "acc", "low", "high", "kind"]
    return pd.DataFrame(rows, columns=columns)


def test_plot_accuracy_against_flops_panels_points_and_legend_off_the_data():
    from dham_lib.study.figures import plot_accuracy_against_flops

    fig = plot_accuracy_against_flops(_flops_points())
    assert_labelled(fig)
    means_small, means_large, chosen_small, chosen_large = fig.axes  # a row per kind
    assert means_small.get_title() == "120×120 canvases: mean of all seeds"
    assert chosen_large.get_title() == "480×480 canvases: seed chosen on validation"
    assert means_large.get_xscale() == "log"
    # Two models a panel, each a point with its interval (errorbar: the point, then caps).
    points = [line for line in means_large.lines if line.get_marker() == "o"]
    assert [p.get_xdata()[0] for p in points] == [114.0, 1500.0]
    assert points[0].get_ydata()[0] == pytest.approx(95.0)
    assert [p.get_color() for p in points] == [MODEL_COLOURS["dham"], MODEL_COLOURS["pooled_cnn"]]
    # Each row's axis spans its own intervals; the legend lies outside every panel.
    assert means_small.get_ylim() == pytest.approx((92.0 - 1, 96.0 + 1))
    assert chosen_small.get_ylim() == pytest.approx((93.5 - 1, 97.0 + 1))
    assert all(ax.get_legend() is None for ax in fig.axes) and fig.legends
    # An interval that ends at 100% keeps its cap inside the frame.
    capped = plot_accuracy_against_flops(_flops_points().assign(high=1.0))
    assert capped.axes[0].get_ylim()[1] == pytest.approx(101.0)


def test_plot_accuracy_against_flops_rejects_bad_points():
    from dham_lib.study.figures import plot_accuracy_against_flops

    with pytest.raises(ValueError, match="at least one row"):
        plot_accuracy_against_flops(_flops_points().drop(columns="mflop"))
    with pytest.raises(ValueError, match="unknown kinds"):
        plot_accuracy_against_flops(_flops_points().assign(kind="best seed on test"))


def test_plot_error_against_flops_points_intervals_and_published_lines():
    from dham_lib.study.figures import plot_error_against_flops

    ours = pd.DataFrame(
        {
            "model": ["dham", "oracle"],
            "mflop": [2.5, 2.2],
            "error": [2.7, 1.3],
            "low": [2.2, math.nan],  # the oracle: one seed, no interval
            "high": [3.2, math.nan],
        }
    )
    published = pd.DataFrame({"model": ["ST-CNN", "RAM"], "error": [1.7, 4.04]})
    fig = plot_error_against_flops(ours, published)
    assert_labelled(fig)
    (ax,) = fig.axes
    assert ax.get_xscale() == ax.get_yscale() == "log"
    points = [line for line in ax.lines if line.get_marker() == "o"]
    assert [(p.get_xdata()[0], p.get_ydata()[0]) for p in points] == [(2.5, 2.7), (2.2, 1.3)]
    assert [p.get_color() for p in points] == [MODEL_COLOURS["dham"], MODEL_COLOURS["oracle"]]
    bars = [c for c in ax.collections if len(c.get_segments())]  # only DHAM's interval
    assert len(bars) == 1 and bars[0].get_segments()[0][:, 1].tolist() == [2.2, 3.2]
    lines = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert sorted(line.get_ydata()[0] for line in lines) == [1.7, 4.04]
    assert {t.get_text() for t in ax.texts} == {"ST-CNN: 1.7%", "RAM: 4.04%"}
    for text in ax.texts:  # each label at the right end of its line, inside the axes
        x, y = ax.transAxes.inverted().transform(text.get_window_extent().p1)
        assert 0.9 < x <= 1.0 and 0 < y < 1
    low, high = ax.get_ylim()
    assert low < 1.3 and high > 4.04  # every point and line is in view


def test_plot_error_against_flops_rejects_missing_columns():
    from dham_lib.study.figures import plot_error_against_flops

    published = pd.DataFrame({"model": ["RAM"], "error": [4.04]})
    with pytest.raises(ValueError, match="at least one row"):
        plot_error_against_flops(pd.DataFrame({"model": ["dham"]}), published)
    ours = pd.DataFrame({"model": ["d"], "mflop": [1.0], "error": [2.0], "low": [1], "high": [3]})
    with pytest.raises(ValueError, match="published"):
        plot_error_against_flops(ours, published.drop(columns="error"))
