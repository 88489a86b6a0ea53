"""Every public math function, given bad input, raises an error naming the argument.

One table of cases: (call, exception type, text the message must contain).
The data, model and checkpoint functions have their own tables beside their tests.
"""

import pytest
import torch

from dham_lib.dham import DHAM
from dham_lib.metrics import box_iou
from dham_lib.pmf import expected_norm, expected_position, spatial_softmax
from dham_lib.sampling import bilinear_sample, box_to_params, glimpse, glimpse_box

GOOD_LOGITS = torch.zeros(2, 1, 5, 5)
GOOD_PMF = torch.full((2, 1, 5, 5), 1 / 25)
IMAGE = torch.rand(2, 1, 8, 8)
P = torch.zeros(2, 1)
S = torch.full((2, 1), 0.5)
NAN = float("nan")

CASES = {
    "softmax 3-D logits": (lambda: spatial_softmax(torch.zeros(1, 5, 5)), ValueError, "logits"),
    "softmax integer logits": (
        lambda: spatial_softmax(torch.zeros(1, 1, 5, 5, dtype=torch.long)),
        TypeError,
        "logits",
    ),
    "softmax NaN logits": (
        lambda: spatial_softmax(torch.full((1, 1, 2, 2), NAN)),
        ValueError,
        "logits",
    ),
    "softmax empty logits": (
        lambda: spatial_softmax(torch.zeros(1, 1, 0, 5)),
        ValueError,
        "logits",
    ),
    "softmax numpy logits": (lambda: spatial_softmax(GOOD_LOGITS.numpy()), TypeError, "logits"),
    "softmax string temperature": (
        lambda: spatial_softmax(GOOD_LOGITS, "1"),
        TypeError,
        "temperature",
    ),
    "position of logits, not a PMF": (lambda: expected_position(GOOD_LOGITS), ValueError, "pmf"),
    "position of negative PMF": (lambda: expected_position(-GOOD_PMF), ValueError, "pmf"),
    "position 2-D PMF": (lambda: expected_position(GOOD_PMF[0, 0]), ValueError, "pmf"),
    "norm p=3": (lambda: expected_norm(GOOD_PMF, p=3), ValueError, "p"),
    "norm p='l2'": (lambda: expected_norm(GOOD_PMF, p="l2"), ValueError, "p"),
    "bilinear grid without xy": (
        lambda: bilinear_sample(IMAGE, torch.zeros(2, 3, 3, 3)),
        ValueError,
        "grid",
    ),
    "bilinear grid batch mismatch": (
        lambda: bilinear_sample(IMAGE, torch.zeros(1, 3, 3, 2)),
        ValueError,
        "grid",
    ),
    "bilinear reflection padding": (
        lambda: bilinear_sample(IMAGE, torch.zeros(2, 3, 3, 2), "reflection"),
        ValueError,
        "padding_mode",
    ),
    "bilinear NaN grid": (
        lambda: bilinear_sample(IMAGE, torch.full((2, 3, 3, 2), NAN)),
        ValueError,
        "grid",
    ),
    "glimpse 3-D image": (lambda: glimpse(IMAGE[0], P, P, S), ValueError, "image"),
    "glimpse 1-D tx": (lambda: glimpse(IMAGE, P[:, 0], P, S), ValueError, "tx"),
    "glimpse s shape differs": (lambda: glimpse(IMAGE, P, P, torch.ones(2, 2)), ValueError, "s"),
    "glimpse batch mismatch": (lambda: glimpse(IMAGE, P[:1], P[:1], S[:1]), ValueError, "batch"),
    "glimpse float64 params": (
        lambda: glimpse(IMAGE, P.double(), P.double(), S.double()),
        TypeError,
        "dtype",
    ),
    "glimpse size of 3": (lambda: glimpse(IMAGE, P, P, S, size=(3, 3, 3)), TypeError, "size"),
    "glimpse size 1": (lambda: glimpse(IMAGE, P, P, S, size=(1, 28)), ValueError, "size"),
    "glimpse float size": (lambda: glimpse(IMAGE, P, P, S, size=(28.0, 28)), TypeError, "size"),
    "glimpse unknown padding": (
        lambda: glimpse(IMAGE, P, P, S, padding_mode="wrap"),
        ValueError,
        "padding_mode",
    ),
    "glimpse NaN scale": (lambda: glimpse(IMAGE, P, P, torch.full((2, 1), NAN)), ValueError, "s"),
    "glimpse empty image": (lambda: glimpse(torch.zeros(2, 1, 0, 8), P, P, S), ValueError, "image"),
    "glimpse_box bad image_size": (lambda: glimpse_box(P, P, S, 120), TypeError, "image_size"),
    "box_to_params 3 coordinates": (
        lambda: box_to_params(torch.zeros(3), (8, 8)),
        ValueError,
        "box",
    ),
    "DHAM logits 3-D": (lambda: DHAM()(IMAGE, GOOD_LOGITS[0]), ValueError, "logits"),
    "DHAM norm 0": (lambda: DHAM(norm=0), ValueError, "norm"),
    "DHAM negative temperature": (lambda: DHAM(temperature=-1.0), ValueError, "temperature"),
    "box_iou empty": (lambda: box_iou(torch.zeros(0, 4), torch.zeros(0, 4)), ValueError, "a"),
    "box_iou shapes do not broadcast": (
        lambda: box_iou(torch.zeros(2, 4), torch.zeros(3, 4)),
        ValueError,
        "broadcast",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_raises_a_clear_error(case):
    call, error, word = CASES[case]
    with pytest.raises(error) as info:
        call()
    assert word in str(info.value), f"message {str(info.value)!r} does not name {word!r}"
