"""The notebooks' slider functions: figures and numbers follow the sliders, bad input fails."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from dham_lib.course import explorers, widgets
from dham_lib.course.explorers import attention_at_snr, snr_gallery
from dham_lib.data import TranslatedMNIST
from dham_lib.models import build_model
from dham_lib.sampling import glimpse_box
from tests.figures import (  # noqa: F401 (agg_backend is an autouse fixture)
    agg_backend,
    assert_labelled,
    bar_digits,
    rectangles,
    small_dham,
)


def _marker_x(ax, marker: str) -> float:
    """x of the first line drawn with ``marker`` that has data."""
    lines = [ln for ln in ax.lines if ln.get_marker() == marker and len(ln.get_xdata())]
    return float(np.asarray(lines[0].get_xdata())[0])


def _canvas() -> torch.Tensor:
    """A 60×80 canvas with a bright 10×10 square at rows 10-19, columns 50-59."""
    canvas = torch.zeros(1, 1, 60, 80)
    canvas[..., 10:20, 50:60] = 1.0
    return canvas


def test_gaussian_logits_peak_and_shape():
    logits = explorers.gaussian_logits(0.5, -1.0, 0.2, size=(9, 13), height=3.0)
    assert logits.shape == (1, 1, 9, 13)
    row, col = divmod(int(logits.argmax()), 13)
    assert (row, col) == (0, 9)  # x = 0.5 is column 9 of 13, y = -1 the first row
    assert logits.max().item() == pytest.approx(3.0)


def test_pmf_explorer_mean_follows_peak_x():
    left = explorers.pmf_explorer(-0.4, 0.0, 0.15, 1.0)
    right = explorers.pmf_explorer(0.4, 0.0, 0.15, 1.0)
    assert isinstance(left.figure, Figure) and isinstance(left.numbers, dict)
    assert right.numbers["tx"] > left.numbers["tx"] + 0.5
    assert right.numbers["ty"] == pytest.approx(left.numbers["ty"], abs=1e-6)
    pmf_ax_left, pmf_ax_right = left.figure.axes[1], right.figure.axes[1]  # after the logits
    assert _marker_x(pmf_ax_right, "+") > _marker_x(pmf_ax_left, "+") + 5  # map pixels
    assert_labelled(right.figure)


def test_pmf_explorer_colder_gives_a_smaller_box():
    cold = explorers.pmf_explorer(0.2, 0.1, 0.2, 0.3)
    warm = explorers.pmf_explorer(0.2, 0.1, 0.2, 1.0)
    hot = explorers.pmf_explorer(0.2, 0.1, 0.2, 10.0)
    assert cold.numbers["s_L2"] < warm.numbers["s_L2"] < hot.numbers["s_L2"]
    assert cold.numbers["p_max"] > warm.numbers["p_max"] > hot.numbers["p_max"]
    # The drawn L2 box (the first rectangle) shrinks with the temperature too.
    width = [rectangles(v.figure.axes[1])[0] for v in (cold, hot)]
    assert width[0][2] - width[0][0] < width[1][2] - width[1][0]
    # Hot: nearly uniform, so the L2 scale nears 0.765 of the half-side and the L1 scale 1.
    assert hot.numbers["s_L2"] == pytest.approx(0.76, abs=0.05)
    assert hot.numbers["s_L1"] > hot.numbers["s_L2"]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"peak_x": 1.5}, "peak_x"),
        ({"peak_y": float("nan")}, "peak_y"),
        ({"spread": 0.0}, "spread"),
        ({"temperature": -1.0}, "temperature"),
        ({"size": (1, 5)}, "size"),
    ],
)
def test_pmf_explorer_bad_arguments(kwargs, name):
    args = {"peak_x": 0.0, "peak_y": 0.0, "spread": 0.2, "temperature": 1.0, **kwargs}
    with pytest.raises((ValueError, TypeError), match=name):
        explorers.pmf_explorer(**args)


def test_bilinear_explorer_weights_and_value():
    view = explorers.bilinear_explorer(1.25, 0.5)
    weights = [view.numbers[k] for k in ("w_00", "w_01", "w_10", "w_11")]
    assert sum(weights) == pytest.approx(1.0)
    assert weights == pytest.approx([0.375, 0.125, 0.375, 0.125])
    image = explorers.BILINEAR_DEMO_IMAGE
    grid = torch.tensor([[[[1.25 / 3 * 2 - 1, 0.5 / 2 * 2 - 1]]]])
    expected = F.grid_sample(image[None, None], grid, align_corners=True).item()
    assert view.numbers["value"] == pytest.approx(expected, abs=1e-6)
    assert_labelled(view.figure)


def test_bilinear_explorer_at_a_pixel_centre_and_the_far_edge():
    at_pixel = explorers.bilinear_explorer(2.0, 1.0)
    assert at_pixel.numbers["w_00"] == pytest.approx(1.0)
    assert at_pixel.numbers["value"] == pytest.approx(explorers.BILINEAR_DEMO_IMAGE[1, 2].item())
    # The last pixel: no neighbour beyond it is needed.
    corner = explorers.bilinear_explorer(3.0, 2.0)
    assert corner.numbers["value"] == pytest.approx(explorers.BILINEAR_DEMO_IMAGE[2, 3].item())


@pytest.mark.parametrize("x, y, name", [(-0.1, 1.0, "x"), (1.0, 2.5, "y"), ("1", 1.0, "x")])
def test_bilinear_explorer_bad_coordinates(x, y, name):
    with pytest.raises((ValueError, TypeError), match=f"^{name} "):
        explorers.bilinear_explorer(x, y)


def test_glimpse_explorer_tx_moves_the_glimpse_and_box():
    canvas = _canvas()
    left = explorers.glimpse_explorer(canvas, -0.5, -0.5, 0.3)
    right = explorers.glimpse_explorer(canvas, 0.3, -0.5, 0.3)
    assert right.numbers["x0"] > left.numbers["x0"]
    assert right.numbers["y0"] == pytest.approx(left.numbers["y0"])
    glimpse_left = left.figure.axes[1].images[0].get_array()
    glimpse_right = right.figure.axes[1].images[0].get_array()
    assert glimpse_left.shape == glimpse_right.shape == (28, 28)
    assert not np.allclose(glimpse_left, glimpse_right)
    # The right-hand box overlaps the bright square, the left one sees only background.
    assert right.numbers["ink"] > 0.1 and left.numbers["ink"] == 0.0
    box = glimpse_box(torch.tensor(0.3), torch.tensor(-0.5), torch.tensor(0.3), (60, 80))
    assert rectangles(right.figure.axes[0])[0] == pytest.approx(box.tolist())
    assert_labelled(right.figure)


def test_glimpse_explorer_s_and_true_box():
    canvas = _canvas()
    small = explorers.glimpse_explorer(canvas, 0.0, 0.0, 0.2, size=(12, 16))
    large = explorers.glimpse_explorer(canvas, 0.0, 0.0, 0.6, size=(12, 16))
    assert small.figure.axes[1].images[0].get_array().shape == (12, 16)
    assert large.numbers["x1"] - large.numbers["x0"] > small.numbers["x1"] - small.numbers["x0"]
    true_box = torch.tensor([50.0, 10.0, 59.0, 19.0])
    tx, ty = (54.5 / 79) * 2 - 1, (14.5 / 59) * 2 - 1
    on_it = explorers.glimpse_explorer(canvas, tx, ty, 9 / 79, true_box=true_box)
    # Square in normalised units: 9 px wide but 9·59/79 = 6.7 px tall on this 60×80 canvas.
    assert on_it.numbers["IoU"] == pytest.approx(6.72 / 9, abs=0.01)
    assert len(rectangles(on_it.figure.axes[0])) == 2  # glimpse box and the dashed true box


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"s": 0.0}, "s"),
        ({"tx": float("inf")}, "tx"),
        ({"canvas": torch.zeros(2, 1, 8, 8)}, "canvas"),
        ({"canvas": np.zeros((8, 8))}, "canvas"),
        ({"size": (28,)}, "size"),
        ({"true_box": torch.zeros(3)}, "true_box"),
    ],
)
def test_glimpse_explorer_bad_arguments(kwargs, name):
    args = {"canvas": _canvas(), "tx": 0.0, "ty": 0.0, "s": 0.5, **kwargs}
    with pytest.raises((ValueError, TypeError), match=name):
        explorers.glimpse_explorer(**args)


def test_toy_trajectory_step_follows_the_step():
    params, losses = _trajectory()
    first = explorers.toy_trajectory_step(_canvas(), params, losses, 0)
    last = explorers.toy_trajectory_step(_canvas(), params, losses, 19)
    assert last.numbers["step"] == 19 and last.numbers["loss"] == pytest.approx(0.0)
    assert last.numbers["tx"] == pytest.approx(0.5) and last.numbers["s"] == pytest.approx(0.2)
    # The box shrinks and moves right; the drawn path grows with the step.
    box0, box1 = rectangles(first.figure.axes[0])[0], rectangles(last.figure.axes[0])[0]
    assert box1[2] - box1[0] < box0[2] - box0[0]
    assert (box1[0] + box1[2]) / 2 > (box0[0] + box0[2]) / 2
    path0, path1 = first.figure.axes[0].lines[0], last.figure.axes[0].lines[0]
    assert len(path0.get_xdata()) == 1 and len(path1.get_xdata()) == 20
    assert_labelled(last.figure)


@pytest.mark.parametrize(
    "change, name",
    [
        ({"step": 20}, "step"),
        ({"step": -1}, "step"),
        ({"step": 1.0}, "step"),
        ({"params": torch.zeros(20, 2)}, "params"),
        ({"losses": torch.zeros(19)}, "losses"),
    ],
)
def test_toy_trajectory_step_bad_arguments(change, name):
    params, losses = _trajectory()
    args = {"canvas": _canvas(), "params": params, "losses": losses, "step": 3, **change}
    with pytest.raises((ValueError, TypeError), match=name):
        explorers.toy_trajectory_step(**args)


def _trajectory(steps=20):
    t = torch.linspace(0, 1, steps)
    params = torch.stack([0.5 * t, -0.3 * t, 0.8 - 0.6 * t], dim=1)
    return params, 1 - t


def test_attention_explorer_view_and_numbers():
    images, labels = bar_digits()
    dataset = TranslatedMNIST(images, labels, canvas=60, seed=1)
    view = explorers.attention_explorer(small_dham(), dataset, index=2, temperature=1.0)
    assert isinstance(view, widgets.View) and isinstance(view.figure, Figure)
    assert_labelled(view.figure)
    # The canvas panel's legend lies below its x label, off the canvas.
    ax_canvas = view.figure.axes[0]
    view.figure.canvas.draw()
    legend_top = ax_canvas.get_legend().get_window_extent().y1
    assert legend_top <= ax_canvas.xaxis.label.get_window_extent().y0
    numbers = view.numbers
    assert numbers["label"] == int(labels[2])
    assert 0 <= numbers["prediction"] <= 9 and 0 < numbers["confidence"] <= 1
    _, _, true_box = dataset[2]
    # The untrained model's uniform PMF gives the centred box of half-side ~0.77.
    assert abs(numbers["tx"]) < 1e-5 and abs(numbers["ty"]) < 1e-5
    assert numbers["side_px"] == pytest.approx(numbers["s"] * 59, rel=1e-5)
    assert 0 <= numbers["IoU"] <= numbers["coverage"] <= 1
    with pytest.raises(ValueError, match="index"):
        explorers.attention_explorer(small_dham(), dataset, index=len(dataset))


def test_clutter_explorer_keeps_the_digit_and_adds_pieces():
    images, labels = bar_digits()
    model = small_dham()
    few = explorers.clutter_explorer(model, images, labels, index=0, n_clutter=0, canvas=60)
    many = explorers.clutter_explorer(model, images, labels, index=0, n_clutter=20, canvas=60)
    assert few.numbers["label"] == many.numbers["label"] == int(labels[0])
    canvas_few = few.figure.axes[0].images[0].get_array()
    canvas_many = many.figure.axes[0].images[0].get_array()
    assert canvas_many.sum() > canvas_few.sum()  # more ink from the pieces
    assert many.figure.axes[0].get_title().startswith("canvas 0, 20 pieces: label")
    with pytest.raises(ValueError, match="n_clutter"):
        explorers.clutter_explorer(model, images, labels, index=0, n_clutter=-1)


def test_gallery_follows_the_slider():
    quiet, loud = snr_gallery(12.0).numbers, snr_gallery(-3.0).numbers
    assert quiet["mean measured SNR (dB)"] == pytest.approx(12.0, abs=1.0)
    assert loud["mean measured SNR (dB)"] == pytest.approx(-3.0, abs=1.0)
    assert loud["mean noise sigma"] > 4 * quiet["mean noise sigma"]
    clean = snr_gallery(None)
    assert clean.numbers["mean noise sigma"] == 0 and math.isinf(
        clean.numbers["requested SNR (dB)"]
    )
    assert clean.figure.axes[0].get_xlabel() == "x (pixels)"
    # At the notebooks' 80 dpi and the default 100, each canvas pixel gets at least one
    # screen pixel, nearest neighbour: no moiré from a resampled grid.
    for dpi in (80, 100):
        with plt.rc_context({"figure.dpi": dpi}):
            fig = snr_gallery(0.0).figure
        fig.canvas.draw()
        for ax in fig.axes:
            assert ax.images[0].get_interpolation() == "nearest"
            box = ax.get_window_extent()
            assert min(box.width, box.height) >= 120


def test_attention_at_snr_runs_the_chosensmall_dham():
    torch.manual_seed(0)
    models = {2: build_model("dham", width=2, uniform_start=False), 8: build_model("dham", width=8)}
    for m in models.values():
        m.eval()
    a = attention_at_snr(models, 2, 6.0, n=4, score=32)
    b = attention_at_snr(models, 8, 6.0, n=4, score=32)
    assert a.numbers["width"] == 2 and b.numbers["width"] == 8
    # The uniform start of the width-8 model centres its box; the random one does not.
    assert a.numbers["mean IoU"] != b.numbers["mean IoU"]
    noisier = attention_at_snr(models, 2, -3.0, n=4, score=32)
    assert noisier.numbers != a.numbers
    assert 0 <= a.numbers["accuracy on 32 canvases (%)"] <= 100


@pytest.mark.parametrize(
    ("kwargs", "error", "word"),
    [
        ({"width": 4}, ValueError, "width"),
        ({"snr_db": float("nan")}, ValueError, "snr_db"),
        ({"snr_db": "6"}, TypeError, "snr_db"),
        ({"n": 0}, ValueError, "n"),
    ],
)
def test_bad_arguments(kwargs, error, word):
    args = {
        "models": {2: build_model("dham", width=2)},
        "width": 2,
        "snr_db": 6.0,
        "n": 2,
        "score": 8,
    }
    args.update(kwargs)
    with pytest.raises(error, match=word):
        attention_at_snr(**args)
