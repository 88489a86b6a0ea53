"""The DHAM layer (notebook 03): shapes, the map-spans-the-image rule, gradients."""

import pytest
import torch

from dham_lib.dham import DHAM, AttentionParams
from dham_lib.sampling import glimpse


@pytest.mark.parametrize(
    ("image_shape", "logits_shape", "size"),
    [
        ((4, 1, 120, 120), (4, 1, 120, 120), (28, 28)),
        ((2, 3, 61, 97), (2, 5, 31, 49), (12, 20)),  # odd, non-square, K and C > 1
        ((1, 1, 40, 30), (1, 2, 7, 3), (9, 9)),  # map far coarser than the image
    ],
)
def test_shapes(image_shape, logits_shape, size):
    torch.manual_seed(0)
    glimpses, params = DHAM(output_size=size)(torch.rand(*image_shape), torch.randn(*logits_shape))
    b, c = image_shape[:2]
    k = logits_shape[1]
    assert glimpses.shape == (b, k, c, *size)
    assert isinstance(params, AttentionParams)
    assert all(p.shape == (b, k) for p in params)


def test_map_corner_is_image_corner_at_any_resolution():
    # A one-hot PMF at the map's bottom-right pixel points at the image's, whatever
    # the two resolutions: both span [-1, 1].
    logits = torch.full((1, 1, 15, 10), -1e4)
    logits[0, 0, -1, -1] = 1e4
    image = torch.zeros(1, 1, 120, 80)
    image[0, 0, -1, -1] = 1.0
    glimpses, params = DHAM(output_size=(3, 3))(image, logits)
    assert params.tx.item() == pytest.approx(1.0)
    assert params.ty.item() == pytest.approx(1.0)
    assert params.s.item() == pytest.approx(0.0, abs=1e-6)
    torch.testing.assert_close(glimpses, torch.ones_like(glimpses))


def test_forward_equals_the_pieces():
    torch.manual_seed(1)
    image, logits = torch.rand(2, 1, 50, 50), torch.randn(2, 2, 25, 25)
    layer = DHAM(output_size=(10, 10), norm=1, temperature=0.5)
    glimpses, (tx, ty, s) = layer(image, logits)
    torch.testing.assert_close(glimpses, glimpse(image, tx, ty, s, size=(10, 10)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept(dtype):
    glimpses, params = DHAM()(
        torch.rand(1, 1, 30, 30, dtype=dtype), torch.randn(1, 1, 30, 30, dtype=dtype)
    )
    assert glimpses.dtype == dtype and params.s.dtype == dtype


def test_gradient_reaches_the_logits():
    torch.manual_seed(2)
    image = torch.rand(2, 1, 40, 40)
    logits = torch.randn(2, 1, 20, 20, requires_grad=True)
    glimpses, _ = DHAM(output_size=(8, 8))(image, logits)
    (glimpses * torch.randn_like(glimpses)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_gradcheck_in_the_image():
    torch.manual_seed(3)
    image = torch.rand(1, 2, 9, 8, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(1, 2, 5, 4, dtype=torch.float64)
    layer = DHAM(output_size=(4, 4))
    assert torch.autograd.gradcheck(lambda im: layer(im, logits)[0], (image,))


def test_gradient_descent_on_logits_finds_a_bright_square():
    # No network at all: the loss rewards a bright glimpse, and its gradient alone
    # moves the glimpse from the centre onto the square in the corner.
    image = torch.zeros(1, 1, 60, 60)
    image[0, 0, 5:20, 40:55] = 1.0
    logits = torch.zeros(1, 1, 30, 30, requires_grad=True)
    layer = DHAM(output_size=(8, 8))
    optimiser = torch.optim.Adam([logits], lr=0.5)
    first = None
    for _ in range(60):
        glimpses, params = layer(image, logits)
        loss = -glimpses.mean()
        first = loss.item() if first is None else first
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < first - 0.3
    assert params.tx.item() > 0.3 and params.ty.item() < -0.3


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"norm": 3}, "norm"),
        ({"temperature": 0}, "temperature"),
        ({"output_size": (28,)}, "output_size"),
        ({"padding_mode": "wrap"}, "padding_mode"),
    ],
)
def test_bad_options(kwargs, word):
    with pytest.raises((ValueError, TypeError), match=word):
        DHAM(**kwargs)


def test_batch_mismatch():
    with pytest.raises(ValueError, match="logits"):
        DHAM()(torch.rand(2, 1, 30, 30), torch.randn(3, 1, 30, 30))
