"""The slider callbacks: figures and numbers follow the sliders, bad input fails."""

import base64

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from dham_lib import interactive as ia
from dham_lib.sampling import glimpse_box
from tests.figures import agg_backend, rectangles  # noqa: F401 (agg_backend is an autouse fixture)


def _marker_x(ax, marker: str) -> float:
    """x of the first line drawn with ``marker`` that has data."""
    lines = [ln for ln in ax.lines if ln.get_marker() == marker and len(ln.get_xdata())]
    return float(np.asarray(lines[0].get_xdata())[0])


def _assert_labelled(fig: Figure) -> None:
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), ax


def _canvas() -> torch.Tensor:
    """A 60×80 canvas with a bright 10×10 square at rows 10-19, columns 50-59."""
    canvas = torch.zeros(1, 1, 60, 80)
    canvas[..., 10:20, 50:60] = 1.0
    return canvas


# --------------------------------------------------------------------------- notebook 01


def test_gaussian_logits_peak_and_shape():
    logits = ia.gaussian_logits(0.5, -1.0, 0.2, size=(9, 13), height=3.0)
    assert logits.shape == (1, 1, 9, 13)
    row, col = divmod(int(logits.argmax()), 13)
    assert (row, col) == (0, 9)  # x = 0.5 is column 9 of 13, y = -1 the first row
    assert logits.max().item() == pytest.approx(3.0)


def test_pmf_explorer_mean_follows_peak_x():
    left = ia.pmf_explorer(-0.4, 0.0, 0.15, 1.0)
    right = ia.pmf_explorer(0.4, 0.0, 0.15, 1.0)
    assert isinstance(left.figure, Figure) and isinstance(left.numbers, dict)
    assert right.numbers["tx"] > left.numbers["tx"] + 0.5
    assert right.numbers["ty"] == pytest.approx(left.numbers["ty"], abs=1e-6)
    pmf_ax_left, pmf_ax_right = left.figure.axes[1], right.figure.axes[1]  # after the logits
    assert _marker_x(pmf_ax_right, "+") > _marker_x(pmf_ax_left, "+") + 5  # map pixels
    _assert_labelled(right.figure)


def test_pmf_explorer_colder_gives_a_smaller_box():
    cold = ia.pmf_explorer(0.2, 0.1, 0.2, 0.3)
    warm = ia.pmf_explorer(0.2, 0.1, 0.2, 1.0)
    hot = ia.pmf_explorer(0.2, 0.1, 0.2, 10.0)
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
        ia.pmf_explorer(**args)


# --------------------------------------------------------------------------- notebook 02


def test_bilinear_explorer_weights_and_value():
    view = ia.bilinear_explorer(1.25, 0.5)
    weights = [view.numbers[k] for k in ("w_00", "w_01", "w_10", "w_11")]
    assert sum(weights) == pytest.approx(1.0)
    assert weights == pytest.approx([0.375, 0.125, 0.375, 0.125])
    image = ia.BILINEAR_DEMO_IMAGE
    grid = torch.tensor([[[[1.25 / 3 * 2 - 1, 0.5 / 2 * 2 - 1]]]])
    expected = F.grid_sample(image[None, None], grid, align_corners=True).item()
    assert view.numbers["value"] == pytest.approx(expected, abs=1e-6)
    _assert_labelled(view.figure)


def test_bilinear_explorer_at_a_pixel_centre_and_the_far_edge():
    at_pixel = ia.bilinear_explorer(2.0, 1.0)
    assert at_pixel.numbers["w_00"] == pytest.approx(1.0)
    assert at_pixel.numbers["value"] == pytest.approx(ia.BILINEAR_DEMO_IMAGE[1, 2].item())
    corner = ia.bilinear_explorer(3.0, 2.0)  # the last pixel: no neighbour beyond it is needed
    assert corner.numbers["value"] == pytest.approx(ia.BILINEAR_DEMO_IMAGE[2, 3].item())


@pytest.mark.parametrize("x, y, name", [(-0.1, 1.0, "x"), (1.0, 2.5, "y"), ("1", 1.0, "x")])
def test_bilinear_explorer_bad_coordinates(x, y, name):
    with pytest.raises((ValueError, TypeError), match=f"^{name} "):
        ia.bilinear_explorer(x, y)


def test_glimpse_explorer_tx_moves_the_glimpse_and_box():
    canvas = _canvas()
    left = ia.glimpse_explorer(canvas, -0.5, -0.5, 0.3)
    right = ia.glimpse_explorer(canvas, 0.3, -0.5, 0.3)
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
    _assert_labelled(right.figure)


def test_glimpse_explorer_s_and_true_box():
    canvas = _canvas()
    small = ia.glimpse_explorer(canvas, 0.0, 0.0, 0.2, size=(12, 16))
    large = ia.glimpse_explorer(canvas, 0.0, 0.0, 0.6, size=(12, 16))
    assert small.figure.axes[1].images[0].get_array().shape == (12, 16)
    assert large.numbers["x1"] - large.numbers["x0"] > small.numbers["x1"] - small.numbers["x0"]
    true_box = torch.tensor([50.0, 10.0, 59.0, 19.0])
    tx, ty = (54.5 / 79) * 2 - 1, (14.5 / 59) * 2 - 1
    on_it = ia.glimpse_explorer(canvas, tx, ty, 9 / 79, true_box=true_box)
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
        ia.glimpse_explorer(**args)


# --------------------------------------------------------------------------- notebook 03


def _trajectory(steps=20):
    t = torch.linspace(0, 1, steps)
    params = torch.stack([0.5 * t, -0.3 * t, 0.8 - 0.6 * t], dim=1)
    return params, 1 - t


def test_toy_trajectory_step_follows_the_step():
    params, losses = _trajectory()
    first = ia.toy_trajectory_step(_canvas(), params, losses, 0)
    last = ia.toy_trajectory_step(_canvas(), params, losses, 19)
    assert last.numbers["step"] == 19 and last.numbers["loss"] == pytest.approx(0.0)
    assert last.numbers["tx"] == pytest.approx(0.5) and last.numbers["s"] == pytest.approx(0.2)
    # The box shrinks and moves right; the drawn path grows with the step.
    box0, box1 = rectangles(first.figure.axes[0])[0], rectangles(last.figure.axes[0])[0]
    assert box1[2] - box1[0] < box0[2] - box0[0]
    assert (box1[0] + box1[2]) / 2 > (box0[0] + box0[2]) / 2
    path0, path1 = first.figure.axes[0].lines[0], last.figure.axes[0].lines[0]
    assert len(path0.get_xdata()) == 1 and len(path1.get_xdata()) == 20
    _assert_labelled(last.figure)


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
        ia.toy_trajectory_step(**args)


# --------------------------------------------------------------------------- checks and sliders


def test_check_answers_correct(capsys):
    ia.check_answers({"tx": 0.1, "s": torch.tensor(0.5)}, {"tx": 0.1004, "s": 0.5})
    assert capsys.readouterr().out.startswith("Correct")


def test_check_answers_names_what_is_off(capsys):
    with pytest.raises(AssertionError, match="tx"):
        ia.check_answers({"tx": 0.2, "ty": 0.0}, {"tx": 0.1, "ty": 0.0, "s": 1.0})
    out = capsys.readouterr().out
    assert "tx: you have 0.2000, expected 0.1000" in out
    assert "s: missing" in out and "ty" not in out


def test_check_answers_bad_arguments():
    with pytest.raises(TypeError, match="answers"):
        ia.check_answers([0.1], {"tx": 0.1})
    with pytest.raises(ValueError, match="atol"):
        ia.check_answers({"tx": 0.1}, {"tx": 0.1}, atol=0)


def test_format_numbers():
    text = ia.format_numbers({"tx": 0.12345, "step": 3, "s_L2": -1.0})
    assert text.splitlines() == ["tx   = 0.123", "step = 3", "s_L2 = -1.000"]
    with pytest.raises(TypeError, match="numbers"):
        ia.format_numbers([1.0])


def test_make_slider_kinds_and_no_continuous_update():
    float_slider = ia.make_slider("peak x", 0.3, -1, 1, 0.05)
    assert isinstance(float_slider, widgets.FloatSlider)
    assert float_slider.value == pytest.approx(0.3) and not float_slider.continuous_update
    int_slider = ia.make_slider("step", 0, 0, 99, 1)
    assert isinstance(int_slider, widgets.IntSlider) and not int_slider.continuous_update


@pytest.mark.parametrize(
    "args, name",
    [
        (("", 0.0, -1, 1, 0.1), "description"),
        (("x", 2.0, -1, 1, 0.1), "value"),
        (("x", 0.0, 1, -1, 0.1), "min"),
        (("x", 0.0, -1, 1, 0.0), "step"),
        (("x", "0", -1, 1, 0.1), "value"),
    ],
)
def test_make_slider_bad_arguments(args, name):
    with pytest.raises((ValueError, TypeError), match=name):
        ia.make_slider(*args)


def test_build_explorer_calls_fn_on_each_release():
    calls = []

    def fake(scale, peak):
        calls.append((scale, peak))
        fig, ax = plt.subplots()
        return ia.View(fig, {"peak": peak})

    peak = ia.make_slider("peak", 0.0, -1, 1, 0.1)
    box = ia.build_explorer(fake, fixed={"scale": 2}, peak=peak)
    assert isinstance(box, widgets.VBox)
    assert calls == [(2, 0.0)]  # drawn once on creation
    output = box.children[1]
    first = output.outputs
    peak.value = 0.5
    assert calls[-1] == (2, 0.5)
    assert not plt.get_fignums()  # each figure is closed once shown
    (figure, numbers) = output.outputs  # replaced, not appended to
    assert figure["output_type"] == "display_data"
    assert base64.b64decode(figure["data"]["image/png"]).startswith(b"\x89PNG")
    assert numbers == {"output_type": "stream", "name": "stdout", "text": "peak = 0.500\n"}
    assert first[1]["text"] == "peak = 0.000\n"


def test_an_error_while_a_slider_moves_is_shown_in_the_explorer():
    def fragile(peak):
        if peak > 0:
            raise ValueError(f"peak must be <= 0, got {peak}")
        fig, ax = plt.subplots()
        return ia.View(fig, {})

    peak = ia.make_slider("peak", 0.0, -1, 1, 0.1)
    output = ia.build_explorer(fragile, peak=peak).children[1]
    peak.value = 0.5
    (error,) = output.outputs
    assert error["name"] == "stderr" and "peak must be <= 0, got 0.5" in error["text"]
    peak.value = -0.5
    assert output.outputs[0]["output_type"] == "display_data"  # it recovers


def test_build_explorer_bad_arguments():
    slider = ia.make_slider("peak", 0.0, -1, 1, 0.1)
    with pytest.raises(TypeError, match="fn"):
        ia.build_explorer("pmf_explorer", peak=slider)
    with pytest.raises(ValueError, match="sliders"):
        ia.build_explorer(ia.pmf_explorer)
    with pytest.raises(TypeError, match="peak_x"):
        ia.build_explorer(ia.pmf_explorer, peak_x=0.3)
    with pytest.raises(ValueError, match="fixed"):
        ia.build_explorer(ia.pmf_explorer, fixed={"peak_x": 0.1}, peak_x=slider)


def test_show_explorer_displays_a_text_fallback(capsys):
    ia.show_explorer(
        ia.pmf_explorer,
        fixed={"spread": 0.2, "temperature": 1.0},
        peak_x=ia.make_slider("peak x", 0.0, -1, 1, 0.1),
        peak_y=ia.make_slider("peak y", 0.0, -1, 1, 0.1),
    )
    assert "run this notebook in Jupyter or Colab" in capsys.readouterr().out


def test_colab_links():
    url = ia.colab_url("01_pmf_math.ipynb")
    assert url == (
        "https://colab.research.google.com/github/dham-course/dham-course/blob/main/"
        "notebooks/01_pmf_math.ipynb"
    )
    assert ia.colab_badge("01_pmf_math.ipynb").endswith(f"]({url})")
    student = ia.colab_url("01_pmf_math.ipynb", student=True)
    assert student == url.replace("/notebooks/", "/notebooks/student/")
    assert "https://github.com/dham-course/dham-course" in ia.COLAB_CELL
    for bad in ("01_pmf_math", "notebooks/01_pmf_math.ipynb", 1):
        with pytest.raises(ValueError, match="notebook"):
            ia.colab_url(bad)
