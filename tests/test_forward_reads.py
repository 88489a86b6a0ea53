"""A module's ``forward`` never reads a tensor's values (issue 30, docs/conventions.md).

A value read (a NaN test turned into a Python bool, ``.item()``, ``.tolist()``,
``float()``) waits for the device on CUDA. The functional API reads values to check its
arguments; the DHAM layer and every model check shapes and dtypes only. The reads are
counted by wrapping the tensor methods that turn values into Python objects.
"""

from __future__ import annotations

import pytest
import torch

from dham_lib.dham import DHAM
from dham_lib.models import MODELS, build_model
from dham_lib.pmf import spatial_softmax

# Each wrapped method and a call that reads a value through it.
READS = {
    "__bool__": bool,
    "item": lambda x: x.item(),
    "tolist": lambda x: x.tolist(),
    "__float__": float,
}


def _counted(method, name: str, seen: list[str]):
    def counted(self, *args, **kwargs):
        seen.append(name)
        return method(self, *args, **kwargs)

    return counted


def value_reads(call) -> list[str]:
    """The names of the value-reading methods that ``call()`` used, one entry per read."""
    seen: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        for name in READS:
            patch.setattr(torch.Tensor, name, _counted(getattr(torch.Tensor, name), name, seen))
        call()
    return seen


@pytest.mark.parametrize("name", list(READS))
def test_the_counter_sees_each_kind_of_read(name):
    assert value_reads(lambda: READS[name](torch.ones(1))) == [name]


def test_the_counter_sees_the_checks_of_the_functional_api():
    # The same check a forward used to run: without it the zero counts below prove nothing.
    assert value_reads(lambda: spatial_softmax(torch.zeros(2, 1, 5, 5)))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", list(MODELS))
def test_a_model_forward_reads_no_value(name, training):
    torch.manual_seed(0)
    model = build_model(name).train(training)
    canvas = torch.rand(2, 1, 120, 120)
    true_box = torch.tensor([[10.0, 20.0, 50.0, 60.0], [40.0, 30.0, 100.0, 90.0]])
    with torch.set_grad_enabled(training):
        assert value_reads(lambda: model(canvas, true_box=true_box)) == []


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_the_dham_layer_reads_no_value(training):
    layer = DHAM().train(training)
    image, logits = torch.rand(2, 1, 120, 120), torch.randn(2, 1, 60, 60)
    with torch.set_grad_enabled(training):
        assert value_reads(lambda: layer(image, logits)) == []
        assert value_reads(lambda: layer.attention(logits)) == []
