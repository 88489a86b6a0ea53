"""The notebooks' answer checks and sliders (notebooks 01 to 07 and the app).

The checks print hints, never the expected values (those that would give an answer away are in
:mod:`dham_lib.course.answers`). A slider function (:mod:`dham_lib.course.explorers`) returns a
:class:`View`; a notebook calls it once with the default values, so the figure shows on GitHub
too, then wires it to sliders (ipywidgets 7.7 on Colab, or 8.x)::

    view = pmf_explorer(peak_x=0.3, peak_y=-0.2, spread=0.15, temperature=1.0)
    print(format_numbers(view.numbers))
    show_explorer(pmf_explorer, peak_x=make_slider("peak x", 0.3, -1, 1, 0.05), ...)
"""

from __future__ import annotations

import base64
import functools
import hashlib
import inspect
import io
import math
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from dham_lib import _checks

WIDGET_FALLBACK = (
    "[Sliders: run this notebook in Jupyter or Colab to move them; "
    "the figure above shows their default values.]"
)


class View(NamedTuple):
    """What every slider function of notebooks 01 to 06 returns: the figure and its numbers."""

    figure: Figure
    numbers: dict[str, float]


def _number(name: str, value, low: float | None = None, high: float | None = None) -> float:
    """A finite real number (or one-element tensor), optionally within ``[low, high]``."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value}")
    return float(value)


def format_numbers(numbers: Mapping[str, float], digits: int = 3) -> str:
    """One line ``name = value`` per entry, ``digits`` decimals (ints as they are): how
    notebooks 01 to 06 print a :class:`View`'s numbers."""
    if not isinstance(numbers, Mapping):
        raise TypeError(f"numbers must be a dict of name -> number, got {type(numbers).__name__}")
    width = max((len(str(k)) for k in numbers), default=0)
    return "\n".join(
        f"{name:<{width}} = {value if isinstance(value, int) else f'{float(value):.{digits}f}'}"
        for name, value in numbers.items()
    )


def check_answers(
    answers: Mapping[str, float], expected: Mapping[str, float], atol: float = 1e-3
) -> None:
    """Compare a student's numbers (or one-element tensors) with the expected ones (notebook 02
    and :mod:`dham_lib.course.answers`): "Correct: ..." when all are within ``atol``, else a hint
    for each that is too high, too low or missing, never the value, and ``AssertionError``."""
    if not isinstance(answers, Mapping) or not isinstance(expected, Mapping):
        raise TypeError("answers and expected must be dicts of name -> number")
    atol = _checks.positive("atol", atol)
    hints = []
    for name, want in expected.items():
        if answers.get(name) is None:
            hints.append(f"{name}: missing")
            continue
        try:
            got = float(answers[name])
        except (TypeError, ValueError):
            hints.append(f"{name}: {answers[name]!r} is not a number")
            continue
        if not abs(got - float(want)) <= atol:
            hints.append(f"{name}: {got:.4g} is too {'high' if got > float(want) else 'low'}")
    if hints:
        print("Not yet (the others are right):\n  " + "\n  ".join(hints))
        raise AssertionError(f"{len(hints)} of {len(expected)} answers are off: {hints}")
    agree = "the answer agrees" if len(expected) == 1 else f"all {len(expected)} answers agree"
    print(f"Correct: {agree} (within {atol:g}).")


def choice_digest(exercise: str, choice: str) -> str:
    """What a check cell of notebooks 04 to 07 holds in place of a multiple-choice answer: the
    first 16 hex digits of the SHA-256 of ``"<exercise>:<choice>"`` (``choice`` stripped, lower
    case), so the same letter in two exercises has two digests."""
    return hashlib.sha256(f"{exercise}:{str(choice).strip().lower()}".encode()).hexdigest()[:16]


def check_choice(
    answer: str, options: Sequence[str], digest: str, *, exercise: str, hint: str
) -> None:
    """Check a multiple-choice answer against ``choice_digest(exercise, right answer)``
    (notebooks 04 to 07): "Correct.", or ``hint`` for every wrong option alike (so it names
    none) and ``AssertionError``; an answer not in ``options`` is told the options."""
    if not isinstance(answer, str) or answer.strip().lower() not in options:
        print(f"Not yet: answer with one of {', '.join(map(repr, options))} (a string).")
        raise AssertionError(f"{answer!r} is not one of {list(options)}")
    if choice_digest(exercise, answer) != digest:
        print(f"Not yet: {answer.strip().lower()!r} is not it. {hint}")
        raise AssertionError(f"{answer!r} is not the answer")
    print("Correct.")


class _Agreement(NamedTuple):
    """What :func:`check_function` counts as agreeing with the reference."""

    atol: float  # and a relative tolerance of 1e-4
    properties: Mapping[str, Callable[..., bool]]
    grad: bool
    grad_hint: str
    weights: torch.Generator  # draws the w of Σ w · output, whose gradients are compared


def check_function(
    candidate: Callable,
    reference: Callable,
    inputs: Sequence[tuple],
    *,
    name: str | None = None,
    atol: float = 1e-5,
    properties: Mapping[str, Callable[..., bool]] | None = None,
    grad: bool = True,
    grad_hint: str = "the values are right but the gradient is not",
    forbid: Sequence[str] = (),
) -> None:
    """Compare a student's function with the library's on each input (argument tuples, e.g.
    ``(logits [B, K, H, W], 0.5)``, copied afresh for each): the build exercises of notebooks
    01 (``my_spatial_softmax``, ``my_expected_norm``), 02 (``my_axis_weights``), 03 (``my_dham``).

    The output must match the reference's shape and dtype, within ``atol + 1e-4·|reference|``;
    with ``grad``, so must the gradients of ``Σ w · output`` (``w`` seeded random) with
    respect to each floating-point tensor argument, or the student reads ``grad_hint``.
    ``properties`` maps a hint to a test ``f(output, *args) -> bool``, reported when the values
    are off; a candidate that refers to a name in ``forbid`` is refused unrun. The first input
    that fails prints hints, never a value of the reference, and raises ``AssertionError``.
    """
    name = name or getattr(candidate, "__name__", "your function")
    check_own_code(candidate, forbid, name)
    if not inputs or not all(isinstance(args, tuple) for args in inputs):
        raise ValueError("inputs must be a non-empty list of argument tuples")
    try:
        names = list(inspect.signature(candidate).parameters)
    except (TypeError, ValueError):  # not a function, or one without a signature
        names = []
    names += [f"argument {i}" for i in range(len(names) + 1, max(map(len, inputs)) + 1)]
    weights = torch.Generator().manual_seed(0)
    agree = _Agreement(_checks.positive("atol", atol), properties or {}, grad, grad_hint, weights)
    for number, args in enumerate(inputs, start=1):
        hints = _function_hints(candidate, reference, args, names, agree)
        if hints:
            shown = ", ".join(
                f"{n} {list(a.shape)}" if isinstance(a, torch.Tensor) else f"{n}={a!r}"
                for n, a in zip(names, args, strict=False)
            )
            print(f"Not yet: {name} on input {number} of {len(inputs)} ({shown}):")
            print("  " + "\n  ".join(hints))
            raise AssertionError(f"{name} on input {number}: " + "; ".join(hints))
    checked = "values and gradients" if grad else "values"
    print(f"Correct: {name} agrees with the reference on all {len(inputs)} inputs ({checked}).")


def check_own_code(function: Callable, forbid: Sequence[str], name: str | None = None) -> None:
    """Refuse (a hint, ``AssertionError``) a build exercise's answer whose code, or that of the
    functions beside it that it calls, refers to a name in ``forbid`` (notebooks 01 to 04)."""
    name = name or getattr(function, "__name__", "your function")
    called = sorted(set(forbid) & _names_used(function))
    if called:
        hint = "build it from the pieces the exercise names"
        print(f"Not yet: {name} uses {', '.join(called)}; {hint}.")
        raise AssertionError(f"{name} uses {called}")


def _names_used(function, seen: set | None = None) -> set[str]:
    """The global and attribute names of ``function``'s code and nested code, with those of
    the functions defined beside it (a notebook's own) that it calls."""
    seen = set() if seen is None else seen
    if not inspect.isfunction(function) or function in seen:
        return set()
    seen.add(function)
    codes, names = [function.__code__], set()
    while codes:
        code = codes.pop()
        names |= set(code.co_names)
        codes += [constant for constant in code.co_consts if inspect.iscode(constant)]
    for name in list(names):
        other = function.__globals__.get(name)
        if inspect.isfunction(other) and other.__globals__ is function.__globals__:
            names |= _names_used(other, seen)
    return names


def _copies(args: tuple, grad: bool) -> list:
    """Fresh copies of the tensor arguments (leaves, with ``grad``)."""
    return [
        a.detach().clone().requires_grad_(grad and a.is_floating_point())
        if isinstance(a, torch.Tensor)
        else a
        for a in args
    ]


def _function_hints(candidate, reference, args, names, agree: _Agreement) -> list[str]:
    """What is wrong with ``candidate(*args)`` against ``reference(*args)``; [] if nothing."""
    if not callable(candidate):
        return [f"is not a function: it is a {type(candidate).__name__}"]
    ref_args, cand_args = _copies(args, agree.grad), _copies(args, agree.grad)
    want = reference(*ref_args)
    try:
        got = candidate(*cand_args)
    except Exception as error:  # the student's bug: shown, not raised
        return [f"raised {type(error).__name__}" + (f": {error}" if str(error) else "")]
    hints = _output_hints(got, want, args, agree)
    if hints or not (agree.grad and want.requires_grad):
        return hints
    if not got.requires_grad:
        return ["its output has no gradient (.detach(), .item(), NumPy or torch.no_grad()?)"]
    # The gradients of Σ weight · output, zeros where the output does not depend on an input.
    leaves = [i for i, a in enumerate(ref_args) if isinstance(a, torch.Tensor) and a.requires_grad]
    weight = torch.randn(want.shape, generator=agree.weights, dtype=want.dtype)
    grad = functools.partial(torch.autograd.grad, allow_unused=True, materialize_grads=True)
    want_grads = grad((want * weight).sum(), [ref_args[i] for i in leaves])
    try:
        got_grads = grad((got * weight).sum(), [cand_args[i] for i in leaves])
    except Exception as error:
        return [f"its gradient raised {type(error).__name__}: {error}"]
    return [
        f"{agree.grad_hint} (the gradient with respect to {names[i]} is off at {off})"
        for i, g, w in zip(leaves, got_grads, want_grads, strict=True)
        if (off := _where_off(g, w, agree))
    ]


def _output_hints(got, want: torch.Tensor, args, agree: _Agreement) -> list[str]:
    """What is wrong with the candidate's output ``got`` against the reference's ``want``."""
    if not isinstance(got, torch.Tensor):
        return [f"returns a {type(got).__name__}, not a tensor"]
    if got.shape != want.shape:
        return [f"returns shape {list(got.shape)}, which is not the shape asked for"]
    if got.dtype != want.dtype:
        dtypes = sorted({str(a.dtype) for a in args if isinstance(a, torch.Tensor)})
        return [f"returns dtype {got.dtype}: keep the inputs' dtype ({', '.join(dtypes)})"]
    broken = int((~torch.isfinite(got) & torch.isfinite(want)).sum())
    if broken:
        return [f"nan or inf at {broken} of {got.numel()} entries: an overflow, or 0 / 0?"]
    off = _where_off(got.detach(), want.detach(), agree)
    if not off:
        return []
    failed = [text for text, test in agree.properties.items() if not test(got.detach(), *args)]
    return [f"values off at {off}", *failed]


def _where_off(got: torch.Tensor, want: torch.Tensor, agree: _Agreement) -> str:
    """'3 of 70 entries, the largest error 0.21 at index [0, 1, 2, 4]', or '' if all agree."""
    off = ~torch.isclose(got, want, rtol=1e-4, atol=agree.atol)
    if not off.any():
        return ""
    error = (got - want).abs()
    index = [int(i) for i in np.unravel_index(int(error.argmax()), tuple(error.shape))]
    largest = f"the largest error {error.max().item():.2g} at index {index}"
    return f"{int(off.sum())} of {off.numel()} entries, {largest}"


def make_slider(description: str, value: float, min: float, max: float, step: float):  # noqa: A002
    """A slider of ipywidgets 7.7 and 8.x that reports its value only when released, for the
    explorers of notebooks 01 to 06 and the app: an ``IntSlider`` when ``value``, ``min``,
    ``max`` and ``step`` are all ints, else a ``FloatSlider``."""
    import ipywidgets as widgets

    if not isinstance(description, str) or not description:
        raise ValueError(f"description must be a non-empty str, got {description!r}")
    low, high = _number("min", min), _number("max", max)
    if not low < high:
        raise ValueError(f"min must be < max, got min={min}, max={max}")
    _number("value", value, low, high)
    if not _number("step", step) > 0:
        raise ValueError(f"step must be > 0, got {step}")
    numbers = {"value": value, "min": min, "max": max, "step": step}
    options = {
        "description": description,
        "continuous_update": False,
        "style": {"description_width": "initial"},
        "layout": widgets.Layout(width="330px"),
        **numbers,
    }
    if all(isinstance(v, int) for v in numbers.values()):
        return widgets.IntSlider(**options)
    return widgets.FloatSlider(readout_format=".2f", **options)


def _stream(name: str, text: str) -> dict:
    """A Jupyter stream output (``stdout`` or ``stderr``)."""
    return {"output_type": "stream", "name": name, "text": text}


def _view_outputs(fn: Callable[..., View], view: View) -> tuple[dict, ...]:
    """``fn``'s ``view`` as Jupyter outputs: its figure as a PNG (then closed), then its numbers
    as printed text."""
    if not isinstance(view, View):
        raise TypeError(f"{fn.__name__} must return a View, got {type(view).__name__}")
    buffer = io.BytesIO()
    try:
        view.figure.savefig(buffer, format="png", bbox_inches="tight")
    finally:
        plt.close(view.figure)
    png = base64.b64encode(buffer.getvalue()).decode("ascii")
    data = {"image/png": png, "text/plain": repr(view.figure)}
    outputs = [{"output_type": "display_data", "data": data, "metadata": {}}]
    if view.numbers:
        outputs.append(_stream("stdout", format_numbers(view.numbers) + "\n"))
    return tuple(outputs)


def build_explorer(fn: Callable[..., View], fixed: Mapping | None = None, **sliders):
    """The widget that :func:`show_explorer` shows: ``sliders`` (keyword = argument of ``fn``)
    above the figure and numbers of ``fn(**fixed, **slider_values)``, a :class:`View` (its
    figure closed once drawn), redrawn when a slider is released; an error shows in its place.

    The outputs are set directly: capturing them with ``interactive_output`` made Voilà wait out
    its cell timeout in 2 of 5 runs of ``make app`` (0 of 5 this way).
    """
    import ipywidgets as widgets

    if not callable(fn):
        raise TypeError(f"fn must be a callable returning a View, got {type(fn).__name__}")
    if not sliders:
        raise ValueError("sliders must name at least one slider, got none")
    for name, slider in sliders.items():
        if not isinstance(slider, widgets.ValueWidget):
            raise TypeError(f"slider {name!r} must be an ipywidgets slider, got {slider!r}")
    fixed = dict(fixed or {})
    clash = sorted(set(fixed) & set(sliders))
    if clash:
        raise ValueError(f"fixed and sliders must not share arguments, got both for {clash}")
    output = widgets.Output()

    def draw() -> tuple[dict, ...]:
        values = {name: slider.value for name, slider in sliders.items()}
        return _view_outputs(fn, fn(**fixed, **values))

    def redraw(change) -> None:
        try:
            output.outputs = draw()
        except Exception as error:  # a bad slider value must not kill the explorer
            text = "".join(traceback.format_exception_only(type(error), error))
            output.outputs = (_stream("stderr", text),)

    output.outputs = draw()  # the first drawing raises: a bad starting value is a bug
    for slider in sliders.values():
        slider.observe(redraw, names="value")
    controls = widgets.HBox(list(sliders.values()), layout=widgets.Layout(flex_flow="row wrap"))
    return widgets.VBox([controls, output])


def show_explorer(
    fn: Callable[..., View],
    fixed: Mapping | None = None,
    fallback: str = WIDGET_FALLBACK,
    **sliders,
) -> None:
    """Display :func:`build_explorer`'s widget: every slider of notebooks 01 to 06 and the
    app. Where widgets cannot run (GitHub, a static site) it reads as ``fallback``, a short
    note (by default, pointing at the figure of the default values drawn above it)."""
    from IPython.display import display

    if not isinstance(fallback, str) or not fallback:
        raise ValueError(f"fallback must be a non-empty str, got {fallback!r}")
    box = build_explorer(fn, fixed, **sliders)
    # The same view reference ipywidgets 7.7 and 8.x display for a widget.
    view = {"version_major": 2, "version_minor": 0, "model_id": box.model_id}
    display({"text/plain": fallback, "application/vnd.jupyter.widget-view+json": view}, raw=True)
