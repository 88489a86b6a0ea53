"""Properties of the public math API that must hold for any input, checked with hypothesis.

A PMF sums to 1 and is never negative; its expected position stays in [-1, 1] and its
expected distance within the map's diameter; a constant image gives a constant glimpse
wherever the glimpse lands; any batch size and any map or image shape, odd ones
included, works, and a shape that cannot work fails with a message naming the argument.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dham_lib.dham import DHAM
from dham_lib.pmf import expected_norm, expected_position, spatial_softmax
from dham_lib.sampling import box_to_params, glimpse, glimpse_box

# Examples are cheap but torch's first calls are not: no per-example deadline.
FAST = settings(max_examples=60, deadline=None)

sides = st.integers(min_value=1, max_value=23)
batches = st.integers(min_value=1, max_value=5)
channels = st.integers(min_value=1, max_value=3)
seeds = st.integers(min_value=0, max_value=2**31 - 1)
temperatures = st.floats(min_value=0.05, max_value=20.0)
scales = st.floats(min_value=0.1, max_value=1e3)  # how far apart the logits lie


def _logits(seed: int, shape: tuple[int, ...], scale: float) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float64) * scale


@FAST
@given(batches, channels, sides, sides, seeds, scales, temperatures)
def test_softmax_gives_a_pmf_for_any_map(b, k, h, w, seed, scale, temperature):
    pmf = spatial_softmax(_logits(seed, (b, k, h, w), scale), temperature)
    assert pmf.shape == (b, k, h, w)
    assert (pmf >= 0).all()
    torch.testing.assert_close(pmf.sum(dim=(-2, -1)), torch.ones(b, k, dtype=torch.float64))


@FAST
@given(batches, channels, sides, sides, seeds, scales, st.sampled_from([1, 2]))
def test_position_in_range_and_distance_within_the_diameter(b, k, h, w, seed, scale, p):
    pmf = spatial_softmax(_logits(seed, (b, k, h, w), scale))
    tx, ty = expected_position(pmf)
    distance = expected_norm(pmf, p=p)
    for coordinate in (tx, ty):
        assert coordinate.shape == (b, k)
        assert (coordinate.abs() <= 1 + 1e-12).all()
    diameter = 4.0 if p == 1 else 2 * math.sqrt(2)  # corner to corner of [-1, 1]²
    assert (distance >= 0).all() and (distance <= diameter + 1e-12).all()


@FAST
@given(batches, channels, sides, sides, seeds, st.integers(min_value=0, max_value=23))
def test_a_one_hot_logits_map_puts_the_glimpse_on_that_pixel(b, k, h, w, seed, index):
    row, col = (index // w) % h, index % w
    logits = torch.full((b, k, h, w), -1e4, dtype=torch.float64)
    logits[..., row, col] = 1e4
    pmf = spatial_softmax(logits)
    tx, ty = expected_position(pmf)
    # The centre of pixel i of n is at -1 + 2i/(n - 1); a map one pixel wide has it at 0.
    assert torch.allclose(tx, torch.tensor(-1 + 2 * col / (w - 1) if w > 1 else 0.0).double())
    assert torch.allclose(ty, torch.tensor(-1 + 2 * row / (h - 1) if h > 1 else 0.0).double())
    assert torch.allclose(expected_norm(pmf), torch.zeros(b, k, dtype=torch.float64), atol=1e-9)


@FAST
@given(
    batches,
    channels,
    channels,
    sides,
    sides,
    seeds,
    st.floats(min_value=-3.0, max_value=3.0),
    st.floats(min_value=0.0, max_value=4.0),
    st.tuples(st.integers(2, 9), st.integers(2, 9)),  # a glimpse is at least 2×2
)
def test_a_constant_image_gives_a_constant_glimpse(b, c, k, h, w, seed, shift, s, size):
    generator = torch.Generator().manual_seed(seed)
    level = torch.rand(b, c, 1, 1, generator=generator, dtype=torch.float64)
    image = level.expand(b, c, h, w).contiguous()
    centres = torch.rand(b, k, 2, generator=generator, dtype=torch.float64) * 2 - 1 + shift
    tx, ty = centres[..., 0], centres[..., 1]
    out = glimpse(image, tx, ty, torch.full((b, k), s, dtype=torch.float64), size=size)
    assert out.shape == (b, k, c, *size)
    expected = level.reshape(b, 1, c, 1, 1).expand_as(out)
    torch.testing.assert_close(out, expected)  # border padding: off the image is the edge


@FAST
@given(batches, channels, channels, sides, sides, sides, sides, seeds, scales)
def test_dham_takes_any_batch_and_any_image_and_map_shapes(b, c, k, h, w, mh, mw, seed, scale):
    image = torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))
    logits = _logits(seed, (b, k, mh, mw), scale).float()
    glimpses, (tx, ty, s) = DHAM(output_size=(5, 7))(image, logits)
    assert glimpses.shape == (b, k, c, 5, 7)
    assert torch.isfinite(glimpses).all()
    assert glimpses.min() >= image.min() - 1e-6 and glimpses.max() <= image.max() + 1e-6
    for value in (tx, ty, s):
        assert value.shape == (b, k) and torch.isfinite(value).all()


@FAST
@given(
    st.floats(min_value=-1, max_value=1),
    st.floats(min_value=-1, max_value=1),
    st.floats(min_value=0, max_value=2),
    sides,
    sides,
)
def test_glimpse_box_and_box_to_params_are_inverse(tx, ty, s, h, w):
    params = [torch.tensor([value], dtype=torch.float64) for value in (tx, ty, s)]
    box = glimpse_box(*params, image_size=(h + 1, w + 1))
    for got, want in zip(box_to_params(box, image_size=(h + 1, w + 1)), params, strict=True):
        torch.testing.assert_close(got, want)


@FAST
@given(st.integers(min_value=0, max_value=6).filter(lambda n: n != 4), batches)
def test_a_map_of_the_wrong_rank_is_refused_by_name(ndim, b):
    wrong = torch.zeros((b,) + (3,) * (ndim - 1)) if ndim else torch.tensor(0.0)
    with pytest.raises(ValueError, match="logits"):
        spatial_softmax(wrong)
    with pytest.raises(ValueError, match="image"):
        DHAM()(wrong, torch.zeros(b, 1, 3, 3))


@FAST
@given(batches, batches.filter(lambda n: n > 1))
def test_mismatched_batches_are_refused_by_name(b, extra):
    image, logits = torch.rand(b, 1, 8, 8), torch.zeros(b + extra - 1, 1, 4, 4)
    with pytest.raises(ValueError, match="batch size"):
        DHAM()(image, logits)
