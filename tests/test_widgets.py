"""Answer checks, sliders, the explorers' machinery and the Colab links."""

import base64
import re

import ipywidgets as widgets_lib
import matplotlib.pyplot as plt
import pytest
import torch

from dham_lib import pmf
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


def _softmax(logits, temperature=1.0):
    """A correct spatial softmax, written as notebook 01's exercise asks."""
    b, k, h, w = logits.shape
    return torch.softmax(logits.reshape(b, k, h * w) / temperature, dim=-1).reshape(b, k, h, w)


def _seeded_logits(seed=0, shape=(2, 3, 5, 7)):
    return (2 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed)),)


def _sentinel(x):
    """A reference whose values (123.456 + x) would show in a message that leaked them."""
    return 123.456 + x


def test_check_function_passes_a_correct_candidate(capsys):
    cases = [(*_seeded_logits(0), 1.0), (*_seeded_logits(1, (1, 2, 4, 4)), 0.3)]
    widgets.check_function(_softmax, pmf.spatial_softmax, cases)
    out = capsys.readouterr().out
    assert out.startswith("Correct: _softmax agrees") and "2 inputs (values and gradients)" in out


def _raises(message):
    raise ValueError(message)


@pytest.mark.parametrize(
    "candidate, hint",
    [
        (3.0, "is not a function: it is a float"),
        (lambda x: _raises("boom"), "raised ValueError: boom"),
        (lambda x: (123.456 + x).tolist(), "returns a list, not a tensor"),
        (lambda x: (123.456 + x).sum(-1), "returns shape [2, 3, 5], which is not the shape"),
        (lambda x: (123.456 + x).double(), "returns dtype torch.float64: keep the inputs' dtype"),
        (lambda x: x / 0.0 * 0.0, "nan or inf at 210 of 210 entries"),
        (lambda x: 123.0 + x, "values off at 210 of 210 entries, the largest error 0.46"),
        (lambda x: (123.456 + x).detach(), "its output has no gradient"),
        (lambda x: 123.456 + 2 * x - x.detach(), "the gradient with respect to x is off at 210"),
    ],
    ids=[
        "not-callable",
        "raises",
        "not-a-tensor",
        "shape",
        "dtype",
        "nan",
        "value",
        "no-grad",
        "gradient",
    ],
)
def test_check_function_hints_never_show_the_reference(capsys, candidate, hint):
    with pytest.raises(AssertionError) as error:
        widgets.check_function(candidate, _sentinel, [_seeded_logits(0)], name="yours")
    out = capsys.readouterr().out
    assert out.startswith("Not yet: yours on input 1 of 1 (") and "[2, 3, 5, 7]):" in out, out
    assert hint in out and hint in str(error.value), out
    for text in (out, str(error.value)):  # no number near the reference's 123.456 + x
        numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?(?:e[+-]?\d+)?", text)]
        assert not [n for n in numbers if 100 <= n <= 150], text


def test_check_function_names_the_arguments_and_the_failing_input(capsys):
    def half_wrong(logits, temperature):  # right at T = 1 only
        return _softmax(logits, 1.0)

    cases = [(*_seeded_logits(0), 1.0), (*_seeded_logits(1), 0.5)]
    with pytest.raises(AssertionError, match="half_wrong on input 2"):
        widgets.check_function(half_wrong, pmf.spatial_softmax, cases)
    assert "input 2 of 2 (logits [2, 3, 5, 7], temperature=0.5)" in capsys.readouterr().out


def test_check_function_reports_the_properties_that_fail(capsys):
    def over_columns(logits, temperature):  # a softmax along W only
        return torch.softmax(logits / temperature, dim=-1)

    properties = {
        "does not sum to 1 over H, W": lambda out, logits, t: torch.allclose(
            out.sum(dim=(-2, -1)), torch.ones(out.shape[:2])
        ),
        "is negative somewhere": lambda out, logits, t: bool((out >= 0).all()),
    }
    with pytest.raises(AssertionError, match="does not sum to 1 over H, W"):
        widgets.check_function(
            over_columns, pmf.spatial_softmax, [(*_seeded_logits(0), 1.0)], properties=properties
        )
    assert "is negative" not in capsys.readouterr().out


def _coupled_norm(p):
    """Notebook 01's exercise 2 without the detach: the right values, the wrong gradient."""
    tx, ty = pmf.expected_position(p)
    return (p * pmf.distance_map(p, tx, ty)).sum(dim=(-2, -1))


def test_check_function_catches_a_centre_that_is_not_detached(capsys):
    cases = [_seeded_logits(seed, (2, 2, 6, 5)) for seed in range(3)]
    hint = "the gradient that reaches the logits is not: is the centre detached?"

    def check(norm):
        widgets.check_function(
            lambda logits: norm(pmf.spatial_softmax(logits)),
            lambda logits: pmf.expected_norm(pmf.spatial_softmax(logits)),
            cases,
            name="my_expected_norm",
            grad_hint=hint,
        )

    check(pmf.expected_norm)
    assert capsys.readouterr().out.startswith("Correct: my_expected_norm")
    with pytest.raises(AssertionError, match="is the centre detached"):
        check(_coupled_norm)
    out = capsys.readouterr().out
    assert "input 1 of 3 (logits [2, 2, 6, 5])" in out and "values off" not in out
    assert "the gradient with respect to logits is off" in out
    # Without gradients the same candidate passes: the values alone cannot tell.
    widgets.check_function(
        lambda logits: _coupled_norm(pmf.spatial_softmax(logits)),
        lambda logits: pmf.expected_norm(pmf.spatial_softmax(logits)),
        cases,
        grad=False,
    )


def test_check_function_is_reproducible_and_leaves_the_inputs_alone(capsys):
    cases = [_seeded_logits(0)]
    before = cases[0][0].clone()

    def in_place(x):
        return x.mul_(2.0)  # on its own copy: neither the caller nor the reference sees it

    outs = []
    for _ in range(2):
        with pytest.raises(AssertionError):
            widgets.check_function(in_place, _sentinel, cases, grad=False)
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] and torch.equal(cases[0][0], before)


def test_check_function_bad_arguments():
    with pytest.raises(ValueError, match="inputs"):
        widgets.check_function(_softmax, pmf.spatial_softmax, [])
    with pytest.raises(ValueError, match="inputs"):
        widgets.check_function(_softmax, pmf.spatial_softmax, [torch.zeros(1, 1, 2, 2)])
    with pytest.raises(ValueError, match="atol"):
        widgets.check_function(_softmax, pmf.spatial_softmax, [_seeded_logits()], atol=0)


def test_choice_digest_is_sha256_of_exercise_and_normalised_choice():
    import hashlib

    assert widgets.choice_digest("04-ex6", " B ") == hashlib.sha256(b"04-ex6:b").hexdigest()[:16]
    assert widgets.choice_digest("04-ex6", "b") != widgets.choice_digest("05-ex3", "b")


def test_check_choice_right_wrong_and_not_an_option(capsys):
    options, key = ("a", "b", "c"), widgets.choice_digest("ex", "b")
    widgets.check_choice("B", options, key, exercise="ex", hint="Look at section 8.")
    assert capsys.readouterr().out.strip() == "Correct."
    for wrong in ("a", "c"):
        with pytest.raises(AssertionError):
            widgets.check_choice(wrong, options, key, exercise="ex", hint="Look at section 8.")
        out = capsys.readouterr().out
        # The same hint for each wrong option, and the right letter is never named.
        assert f"'{wrong}' is not it. Look at section 8." in out and "'b'" not in out
    for bad in ("d", 2, None):
        with pytest.raises(AssertionError, match="not one of"):
            widgets.check_choice(bad, options, key, exercise="ex", hint="")
        assert "one of 'a', 'b', 'c'" in capsys.readouterr().out


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


def test_check_function_refuses_a_candidate_that_calls_what_it_should_build(capsys):
    def delegates(logits, temperature):
        return [pmf.spatial_softmax(logits, temperature) for _ in range(1)][0]  # nested code

    cases = [(*_seeded_logits(0), 1.0)]
    with pytest.raises(AssertionError, match="spatial_softmax"):
        widgets.check_function(delegates, pmf.spatial_softmax, cases, forbid=("spatial_softmax",))
    assert "delegates uses spatial_softmax" in capsys.readouterr().out
    widgets.check_function(_softmax, pmf.spatial_softmax, cases, forbid=("spatial_softmax",))
    assert capsys.readouterr().out.startswith("Correct")


def _delegates_through_a_helper(logits, temperature):
    return _calls_the_library(logits, temperature)


def _calls_the_library(logits, temperature):
    return pmf.spatial_softmax(logits, temperature)


def test_check_function_follows_the_candidates_own_helpers(capsys):
    cases = [(*_seeded_logits(0), 1.0)]
    with pytest.raises(AssertionError, match="spatial_softmax"):
        widgets.check_function(
            lambda logits, t: _delegates_through_a_helper(logits, t),
            pmf.spatial_softmax,
            cases,
            forbid=("spatial_softmax",),
        )
