"""Answer checks, sliders, the explorers' machinery and the Colab links."""

import base64

import ipywidgets as widgets_lib
import matplotlib.pyplot as plt
import pytest
import torch

from dham_lib.course import colab, explorers, widgets
from tests.figures import (  # noqa: F401 (agg_backend is an autouse fixture)
    agg_backend,
    assert_labelled,
    bar_digits,
    rectangles,
    small_dham,
)


def test_check_answers_correct(capsys):
    widgets.check_answers({"tx": 0.1, "s": torch.tensor(0.5)}, {"tx": 0.1004, "s": 0.5})
    assert capsys.readouterr().out.startswith("Correct")


def test_check_answers_names_what_is_off(capsys):
    with pytest.raises(AssertionError, match="tx"):
        widgets.check_answers({"tx": 0.2, "ty": 0.0}, {"tx": 0.1, "ty": 0.0, "s": 1.0})
    out = capsys.readouterr().out
    assert "tx: 0.2 is too high" in out and "0.1" not in out  # a hint, never the answer
    assert "s: missing" in out and "ty" not in out
    with pytest.raises(AssertionError, match="too low"):
        widgets.check_answers({"tx": -0.3}, {"tx": 0.1})


def test_check_answers_bad_arguments():
    with pytest.raises(TypeError, match="answers"):
        widgets.check_answers([0.1], {"tx": 0.1})
    with pytest.raises(ValueError, match="atol"):
        widgets.check_answers({"tx": 0.1}, {"tx": 0.1}, atol=0)


def test_format_numbers():
    text = widgets.format_numbers({"tx": 0.12345, "step": 3, "s_L2": -1.0})
    assert text.splitlines() == ["tx   = 0.123", "step = 3", "s_L2 = -1.000"]
    with pytest.raises(TypeError, match="numbers"):
        widgets.format_numbers([1.0])


def test_make_slider_kinds_and_no_continuous_update():
    float_slider = widgets.make_slider("peak x", 0.3, -1, 1, 0.05)
    assert isinstance(float_slider, widgets_lib.FloatSlider)
    assert float_slider.value == pytest.approx(0.3) and not float_slider.continuous_update
    int_slider = widgets.make_slider("step", 0, 0, 99, 1)
    assert isinstance(int_slider, widgets_lib.IntSlider) and not int_slider.continuous_update


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
        widgets.make_slider(*args)


def test_build_explorer_calls_fn_on_each_release():
    calls = []

    def fake(scale, peak):
        calls.append((scale, peak))
        fig, ax = plt.subplots()
        return widgets.View(fig, {"peak": peak})

    peak = widgets.make_slider("peak", 0.0, -1, 1, 0.1)
    box = widgets.build_explorer(fake, fixed={"scale": 2}, peak=peak)
    assert isinstance(box, widgets_lib.VBox)
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
        return widgets.View(fig, {})

    peak = widgets.make_slider("peak", 0.0, -1, 1, 0.1)
    output = widgets.build_explorer(fragile, peak=peak).children[1]
    peak.value = 0.5
    (error,) = output.outputs
    assert error["name"] == "stderr" and "peak must be <= 0, got 0.5" in error["text"]
    peak.value = -0.5
    assert output.outputs[0]["output_type"] == "display_data"  # it recovers


def test_build_explorer_bad_arguments():
    slider = widgets.make_slider("peak", 0.0, -1, 1, 0.1)
    with pytest.raises(TypeError, match="fn"):
        widgets.build_explorer("pmf_explorer", peak=slider)
    with pytest.raises(ValueError, match="sliders"):
        widgets.build_explorer(explorers.pmf_explorer)
    with pytest.raises(TypeError, match="peak_x"):
        widgets.build_explorer(explorers.pmf_explorer, peak_x=0.3)
    with pytest.raises(ValueError, match="fixed"):
        widgets.build_explorer(explorers.pmf_explorer, fixed={"peak_x": 0.1}, peak_x=slider)


def test_show_explorer_displays_a_text_fallback(capsys):
    widgets.show_explorer(
        explorers.pmf_explorer,
        fixed={"spread": 0.2, "temperature": 1.0},
        peak_x=widgets.make_slider("peak x", 0.0, -1, 1, 0.1),
        peak_y=widgets.make_slider("peak y", 0.0, -1, 1, 0.1),
    )
    assert "run this notebook in Jupyter or Colab" in capsys.readouterr().out
    widgets.show_explorer(
        explorers.pmf_explorer,
        fixed={"peak_y": 0.0, "spread": 0.2, "temperature": 1.0},
        fallback="[Serve this page with make app.]",
        peak_x=widgets.make_slider("peak x", 0.0, -1, 1, 0.1),
    )
    assert "[Serve this page with make app.]" in capsys.readouterr().out
    with pytest.raises(ValueError, match="fallback"):
        widgets.show_explorer(explorers.pmf_explorer, fallback="")


def test_colab_links():
    url = colab.colab_url("01_pmf_math.ipynb")
    assert url == (
        "https://colab.research.google.com/github/dham-course/dham-course/blob/main/"
        "notebooks/01_pmf_math.ipynb"
    )
    assert colab.colab_badge("01_pmf_math.ipynb").endswith(f"]({url})")
    student = colab.colab_url("01_pmf_math.ipynb", student=True)
    assert student == url.replace("/notebooks/", "/notebooks/student/")
    assert "https://github.com/dham-course/dham-course" in colab.COLAB_CELL
    for bad in ("01_pmf_math", "notebooks/01_pmf_math.ipynb", 1):
        with pytest.raises(ValueError, match="notebook"):
            colab.colab_url(bad)
