"""The classroom's figures: canvas grids and PMFs over images."""

import pytest
import torch

from dham_lib.course import figures
from dham_lib.course.figures import plot_pmf
from dham_lib.sampling import glimpse_box
from tests.figures import (  # noqa: F401 (agg_backend is an autouse fixture)
    agg_backend,
    assert_labelled,
    bar_digits,
    rectangles,
    small_dham,
)


def test_plot_canvases_grid():
    canvases = torch.rand(5, 1, 40, 40)
    boxes = torch.tensor([[2.0, 3.0, 20.0, 21.0]]).repeat(5, 1)
    fig = figures.plot_canvases(canvases, boxes, torch.arange(5), ncols=3)
    assert len(fig.axes) == 6 and fig.axes[0].get_title() == "label 0, 19 px"
    for ax in fig.axes[:5]:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    with pytest.raises(ValueError, match="share B"):
        figures.plot_canvases(canvases, boxes[:3], torch.arange(5))


def test_plot_pmf_marks_the_mean_and_the_box():
    pmf = torch.zeros(30, 40)
    pmf[10:20, 5:15] = 1 / 100
    fig = plot_pmf(pmf, title="a square PMF")
    assert len(fig.axes) == 2  # the heat map and its colour bar
    ax, colourbar = fig.axes
    assert ax.get_title() == "a square PMF"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x (pixels)", "y (pixels)")
    assert colourbar.get_ylabel() == "probability"
    assert_labelled(fig)
    # The legend lies below the x label, off the map, and the title clears the colour bar.
    fig.canvas.draw()
    assert ax.get_legend().get_window_extent().y1 <= ax.xaxis.label.get_window_extent().y0
    assert not ax.title.get_window_extent().overlaps(colourbar.get_window_extent())
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


def _outcome_runs():
    """Two widths at two SNRs, two seeds each, with their oracle: every outcome once."""
    import pandas as pd

    rows = []
    for snr in (float("inf"), 0.0):
        for seed in (0, 1):
            rows.append(("oracle", 0, snr, seed, 0.95, float("nan")))
            rows.append(("dham", 2, snr, seed, 0.90 - 0.3 * seed, 2.0 + 20 * seed))
            rows.append(("dham", 8, snr, seed, 0.94 - 0.2 * seed, 3.0))
    columns = ["model", "width", "snr_db", "seed", "test_acc", "centre_error"]
    return pd.DataFrame(rows, columns=columns)


def test_plot_noise_ladder_draws_canvas_pixels_at_whole_screen_pixels():
    import matplotlib.pyplot as plt

    canvases = {"clean": torch.rand(2, 1, 40, 40), "0 dB": torch.rand(2, 1, 40, 40)}
    fig = figures.plot_noise_ladder(canvases, [3, 7], scale=2)
    assert_labelled(fig)
    assert len(fig.axes) == 4 and fig.axes[1].get_title() == "digit 3, 0 dB"
    dpi = plt.rcParams["figure.dpi"]
    for ax in fig.axes:
        width = ax.get_position().width * fig.get_figwidth() * dpi
        assert width == pytest.approx(80)  # 40 canvas pixels, 2 screen pixels each
        assert ax.get_images()[0].get_interpolation() == "nearest"
    # One grey scale for every panel, the digit's 0 to 1, whatever the noise's range: a
    # digit keeps its shade from SNR to SNR.
    noisy = {"clean": canvases["clean"], "-6 dB": 3 * torch.randn(2, 1, 40, 40)}
    fig = figures.plot_noise_ladder(noisy, [3, 7], scale=2)
    assert all(ax.get_images()[0].get_clim() == (0.0, 1.0) for ax in fig.axes)
    with pytest.raises(ValueError, match="one shape"):
        figures.plot_noise_ladder(canvases, [3])


def test_outcome_figures_are_labelled_and_keep_legends_off_the_data():
    from dham_lib.study import results

    outcomes = results.attention_outcomes(_outcome_runs())
    assert sorted(set(outcomes["outcome"])) == ["misread", "never found", "read"]
    fig = figures.plot_outcomes(outcomes, 9.6)
    assert_labelled(fig)
    ax = fig.axes[0]
    legend = ax.get_legend()
    fig.canvas.draw()
    # The legend lies below the axes: its top is under the axes' bottom.
    assert legend.get_window_extent().y1 <= ax.get_window_extent().y0
    grid = figures.plot_found_by_width(outcomes)
    assert len(grid.axes) == 4 and all(a.get_legend() is None for a in grid.axes)
    found, accuracy = grid.axes[:2], grid.axes[2:]  # the rows share their x axis
    assert_labelled(grid, skip=found)  # the top row leaves the x label to the bottom one
    assert all(ax.get_title() and not ax.get_xlabel() for ax in found) and found[0].get_ylabel()
    assert all(ax.get_xlabel() == "attention width" for ax in accuracy)
    frame = _outcome_runs()
    fig = figures.plot_runs_by_model(frame, (0.0,))
    assert_labelled(fig)
    names = [label.get_text() for label in fig.axes[0].get_xticklabels()]
    assert names == ["DHAM 2", "DHAM 8", "oracle"]
    # Equal runs (the oracle's two) show as two dots: each dot's x is jittered by ±0.08.
    dots = [c.get_offsets() for c in fig.axes[0].collections if len(c.get_offsets())]
    oracle = [xy for xy in dots if all(abs(x - 2.12) <= 0.08 for x, _ in xy)]
    assert len(oracle) == 1 and oracle[0][0][0] != oracle[0][1][0]
