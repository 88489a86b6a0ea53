"""The notebooks' sliders and answer checks (every notebook from 01 on).

Every slider function is a pure function of its slider values that returns a
:class:`View`: the matplotlib ``Figure`` it draws and the numbers it shows, a dict
of floats (the functions themselves are in :mod:`dham_lib.course.explorers`). A
notebook calls one once with the default values (so the figure shows on GitHub too,
where widgets do not), then wires it to sliders::

    view = pmf_explorer(peak_x=0.3, peak_y=-0.2, spread=0.15, temperature=1.0)
    print(format_numbers(view.numbers))
    show_explorer(pmf_explorer, peak_x=make_slider("peak x", 0.3, -1, 1, 0.05), ...)

The widgets use only what ipywidgets 7.7 (Colab) and 8.x share; figures are plain
inline matplotlib (no ipympl, which Colab lacks).
"""

from __future__ import annotations

import base64
import io
import math
import traceback
from collections.abc import Callable, Mapping
from typing import NamedTuple

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from dham_lib import _checks

WIDGET_FALLBACK = (
    "[Sliders: run this notebook in Jupyter or Colab to move them; "
    "the figure above shows their default values.]"
)


class View(NamedTuple):
    """What every slider callback returns: the figure and the numbers it shows."""

    figure: Figure
    numbers: dict[str, float]


def format_numbers(numbers: Mapping[str, float], digits: int = 3) -> str:
    """One line ``name = value`` per entry, values with ``digits`` decimals (ints as they are)."""
    if not isinstance(numbers, Mapping):
        raise TypeError(f"numbers must be a dict of name -> number, got {type(numbers).__name__}")
    width = max((len(str(k)) for k in numbers), default=0)
    lines = []
    for name, value in numbers.items():
        shown = str(value) if isinstance(value, int) else f"{float(value):.{digits}f}"
        lines.append(f"{name:<{width}} = {shown}")
    return "\n".join(lines)


def check_answers(
    answers: Mapping[str, float], expected: Mapping[str, float], atol: float = 1e-3
) -> None:
    """Compare a student's numbers with the expected ones; print a verdict and assert.

    Prints "Correct: ..." when every answer is within ``atol`` of its expected
    value; otherwise prints a hint for each answer that is off (too high or too low) or
    missing, never the expected value itself, and raises ``AssertionError``. Answers may
    be numbers, one-element tensors or arrays.
    """
    if not isinstance(answers, Mapping) or not isinstance(expected, Mapping):
        raise TypeError("answers and expected must be dicts of name -> number")
    atol = _checks.positive("atol", atol)
    hints = []
    for name, want in expected.items():
        if name not in answers or answers[name] is None:
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


def make_slider(
    description: str,
    value: float,
    min: float,  # noqa: A002 - the ipywidgets name
    max: float,  # noqa: A002
    step: float,
    readout_format: str | None = None,
):
    """A slider that reports its value only when released (``continuous_update=False``).

    An ``IntSlider`` when ``value``, ``min``, ``max`` and ``step`` are all ints,
    else a ``FloatSlider``. Works with ipywidgets 7.7 and 8.x.
    """
    import ipywidgets as widgets

    if not isinstance(description, str) or not description:
        raise ValueError(f"description must be a non-empty str, got {description!r}")
    numbers = {"value": value, "min": min, "max": max, "step": step}
    for name, number in numbers.items():
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise TypeError(f"{name} must be a number, got {number!r}")
        if not math.isfinite(number):
            raise ValueError(f"{name} must be finite, got {number}")
    if not min < max:
        raise ValueError(f"min must be < max, got min={min}, max={max}")
    if not min <= value <= max:
        raise ValueError(f"value must lie in [min, max] = [{min}, {max}], got {value}")
    if not step > 0:
        raise ValueError(f"step must be > 0, got {step}")
    options = {
        "description": description,
        "continuous_update": False,
        "style": {"description_width": "initial"},
        "layout": widgets.Layout(width="330px"),
        **numbers,
    }
    if all(isinstance(v, int) for v in numbers.values()):
        return widgets.IntSlider(**options)
    return widgets.FloatSlider(readout_format=readout_format or ".2f", **options)


def view_outputs(view: View) -> tuple[dict, ...]:
    """``view`` as Jupyter outputs: its figure as a PNG, then its numbers as printed text."""
    buffer = io.BytesIO()
    view.figure.savefig(buffer, format="png", bbox_inches="tight")
    png = base64.b64encode(buffer.getvalue()).decode("ascii")
    outputs = [
        {
            "output_type": "display_data",
            "data": {"image/png": png, "text/plain": repr(view.figure)},
            "metadata": {},
        }
    ]
    if view.numbers:
        text = format_numbers(view.numbers) + "\n"
        outputs.append({"output_type": "stream", "name": "stdout", "text": text})
    return tuple(outputs)


def _error_outputs(error: Exception) -> tuple[dict, ...]:
    text = "".join(traceback.format_exception_only(type(error), error))
    return ({"output_type": "stream", "name": "stderr", "text": text},)


def build_explorer(fn: Callable[..., View], fixed: Mapping | None = None, **sliders):
    """Wire ``sliders`` (keyword = argument of ``fn``) to ``fn`` and return the widget.

    ``fn(**fixed, **slider_values)`` must return a :class:`View`; its figure and
    numbers replace the ``Output`` widget's contents whenever a slider is released.
    The figure is closed once drawn, so moving a slider does not pile up open figures;
    an error raised while a slider moves is shown in place of the figure.

    The outputs are set on the widget directly rather than captured with
    ``interactive_output``: that capture, inside the executing cell, made nbclient (so
    Voilà and nbconvert) wait out its whole cell timeout in 2 of 5 runs of the
    ``make app`` page (0 of 5 this way), with the kernel idle.
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
        view = fn(**fixed, **{name: slider.value for name, slider in sliders.items()})
        if not isinstance(view, View):
            raise TypeError(f"{fn.__name__} must return a View, got {type(view).__name__}")
        try:
            return view_outputs(view)
        finally:
            plt.close(view.figure)

    def redraw(change) -> None:
        try:
            output.outputs = draw()
        except Exception as error:  # a bad slider value must not kill the explorer
            output.outputs = _error_outputs(error)

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
    """Build the explorer (see :func:`build_explorer`) and display it.

    Where widgets cannot run (GitHub, a static site) the output reads as ``fallback``,
    a short note, instead of the widget's long text form; the default note points at
    the figure of the default values that the notebooks draw just above each explorer.
    """
    from IPython.display import display

    if not isinstance(fallback, str) or not fallback:
        raise ValueError(f"fallback must be a non-empty str, got {fallback!r}")
    box = build_explorer(fn, fixed, **sliders)
    bundle = {
        "text/plain": fallback,
        # The same view reference ipywidgets 7.7 and 8.x display for a widget.
        "application/vnd.jupyter.widget-view+json": {
            "version_major": 2,
            "version_minor": 0,
            "model_id": box.model_id,
        },
    }
    display(bundle, raw=True)
