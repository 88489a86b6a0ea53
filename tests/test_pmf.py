"""The PMF math of notebook 01, checked by hand and by autograd."""

import math

import pytest
import torch

from dham_lib.pmf import expected_norm, expected_position, spatial_softmax


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("magnitude", [1.0, 30.0, 1e4])
def test_softmax_sums_to_one_without_nan(dtype, magnitude):
    torch.manual_seed(0)
    logits = (torch.rand(3, 2, 5, 7, dtype=dtype) * 2 - 1) * magnitude
    pmf = spatial_softmax(logits)
    assert pmf.dtype == dtype
    assert torch.isfinite(pmf).all()
    assert (pmf >= 0).all()
    torch.testing.assert_close(pmf.sum(dim=(-2, -1)), torch.ones(3, 2, dtype=dtype))


def test_softmax_is_per_map():
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 0, 0, 0] = math.log(3.0)
    pmf = spatial_softmax(logits)
    # Map 0: weights 3, 1, 1, 1 over its four pixels; map 1 is uniform.
    torch.testing.assert_close(pmf[0, 0], torch.tensor([[0.5, 1 / 6], [1 / 6, 1 / 6]]))
    torch.testing.assert_close(pmf[0, 1], torch.full((2, 2), 0.25))


def test_one_hot_position_is_the_pixel_centre():
    h, w, row, col = 9, 13, 2, 10
    pmf = torch.zeros(1, 1, h, w)
    pmf[0, 0, row, col] = 1.0
    tx, ty = expected_position(pmf)
    assert tx.item() == pytest.approx(-1 + 2 * col / (w - 1))
    assert ty.item() == pytest.approx(-1 + 2 * row / (h - 1))
    assert expected_norm(pmf).item() == pytest.approx(0.0, abs=1e-7)


def hand_pmf():
    """3×3 PMF: 1/4 at (row 0, col 0), 1/4 at (row 1, col 2), 1/2 at (row 2, col 1)."""
    pmf = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    pmf[0, 0, 0, 0], pmf[0, 0, 1, 2], pmf[0, 0, 2, 1] = 0.25, 0.25, 0.5
    return pmf


def test_hand_computed_moments():
    # Pixel centres (x, y): (-1, -1), (1, 0), (0, 1).
    # tx = -1/4 + 1/4 + 0 = 0;  ty = -1/4 + 0 + 1/2 = 1/4.
    tx, ty = expected_position(hand_pmf())
    assert tx.item() == pytest.approx(0.0)
    assert ty.item() == pytest.approx(0.25)
    # Offsets from (0, 1/4): (-1, -5/4), (1, -1/4), (0, 3/4).
    l1 = 0.25 * (1 + 1.25) + 0.25 * (1 + 0.25) + 0.5 * 0.75
    l2 = 0.25 * math.sqrt(1 + 1.25**2) + 0.25 * math.sqrt(1 + 0.25**2) + 0.5 * 0.75
    assert expected_norm(hand_pmf(), p=1).item() == pytest.approx(l1)
    assert expected_norm(hand_pmf(), p=2).item() == pytest.approx(l2)
    assert l1 == pytest.approx(1.25)


def test_uniform_pmf_l1_norm_is_about_the_half_side():
    # Over [-1, 1]², E|dx| + E|dy| = 1/2 + 1/2 = 1: the L1 glimpse spans the map.
    pmf = torch.full((1, 1, 101, 101), 1 / 101**2, dtype=torch.float64)
    assert expected_norm(pmf, p=1).item() == pytest.approx(1.0, abs=0.01)


def test_temperature_limits():
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 6, 8, dtype=torch.float64)
    one_hot = torch.zeros_like(logits).flatten(2)
    one_hot.scatter_(2, logits.flatten(2).argmax(dim=2, keepdim=True), 1.0)
    # Keep the maximum 0.1 clear of the runner-up, so T = 1e-3 separates them by e^100.
    logits = logits + 0.1 * one_hot.reshape_as(logits)
    cold = spatial_softmax(logits, temperature=1e-3)
    torch.testing.assert_close(cold, one_hot.reshape_as(logits), atol=1e-6, rtol=0)
    hot = spatial_softmax(logits, temperature=1e4)
    torch.testing.assert_close(hot, torch.full_like(hot, 1 / 48), atol=1e-5, rtol=0)


@pytest.mark.parametrize("temperature", [0, -1.0, float("nan"), float("inf")])
def test_bad_temperature_is_an_error(temperature):
    with pytest.raises(ValueError, match="temperature"):
        spatial_softmax(torch.zeros(1, 1, 2, 2), temperature=temperature)


def test_expected_position_gradcheck():
    torch.manual_seed(2)
    pmf = spatial_softmax(torch.randn(2, 3, 4, 5, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(expected_position, (pmf,))


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_scale_gradient_matches_closed_form(p, temperature):
    """∂s/∂logits = p·(d − s)/T, d the distance map from the detached mean.

    gradcheck cannot test this: finite differences move the mean too, which the
    detached differences do not see, by design.
    """
    torch.manual_seed(3)
    logits = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    pmf = spatial_softmax(logits, temperature)
    s = expected_norm(pmf, p=p)
    (grad,) = torch.autograd.grad(s.sum(), logits)

    with torch.no_grad():
        probs = torch.softmax(logits.flatten(2) / temperature, dim=2).reshape_as(logits)
        ys, xs = torch.meshgrid(
            torch.linspace(-1, 1, 5, dtype=torch.float64),
            torch.linspace(-1, 1, 6, dtype=torch.float64),
            indexing="ij",
        )
        tx = (probs * xs).sum(dim=(-2, -1), keepdim=True)
        ty = (probs * ys).sum(dim=(-2, -1), keepdim=True)
        if p == 1:
            d = (xs - tx).abs() + (ys - ty).abs()
        else:
            d = ((xs - tx) ** 2 + (ys - ty) ** 2).sqrt()
        scale = (probs * d).sum(dim=(-2, -1), keepdim=True)
        expected = probs * (d - scale) / temperature
    torch.testing.assert_close(grad, expected)
