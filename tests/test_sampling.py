"""Bilinear sampling and glimpses (notebook 02), against grid_sample and by hand."""

import pytest
import torch
import torch.nn.functional as F

from dham_lib.sampling import (
    bilinear_sample,
    box_to_params,
    glimpse,
    glimpse_box,
    to_normalised,
)


def reference(image, grid, padding_mode):
    return F.grid_sample(image, grid, padding_mode=padding_mode, align_corners=True)


@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bilinear_matches_grid_sample_on_random_points(padding_mode, dtype):
    torch.manual_seed(0)
    image = torch.randn(2, 3, 7, 11, dtype=dtype)
    # Reaches well outside [-1, 1] to exercise the padding.
    grid = torch.rand(2, 5, 6, 2, dtype=dtype) * 3 - 1.5
    torch.testing.assert_close(
        bilinear_sample(image, grid, padding_mode), reference(image, grid, padding_mode)
    )


@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
def test_bilinear_at_exact_pixel_centres_returns_the_pixels(padding_mode):
    # The original code's weights vanish here (floor == ceil); ours must not.
    torch.manual_seed(1)
    image = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    rows, cols = torch.arange(5, dtype=torch.float64), torch.arange(6, dtype=torch.float64)
    ys, xs = torch.meshgrid(rows, cols, indexing="ij")
    grid = torch.stack([to_normalised(xs, 6), to_normalised(ys, 5)], dim=-1)[None]
    torch.testing.assert_close(bilinear_sample(image, grid, padding_mode), image)
    torch.testing.assert_close(reference(image, grid, padding_mode), image)


def test_bilinear_outside_the_image():
    image = torch.arange(1.0, 7.0).reshape(1, 1, 2, 3)
    grid = torch.tensor([[[[-3.0, 0.0], [5.0, -1.0], [0.0, 9.0]]]])
    torch.testing.assert_close(bilinear_sample(image, grid, "zeros"), torch.zeros(1, 1, 1, 3))
    # Border padding: x = -3 clamps to column 0 at mid-height, and so on.
    border = bilinear_sample(image, grid, "border")
    torch.testing.assert_close(border, torch.tensor([[[[2.5, 3.0, 5.0]]]]))
    torch.testing.assert_close(border, reference(image, grid, "border"))


def test_bilinear_hand_computed_midpoint():
    image = torch.tensor([[[[0.0, 10.0], [20.0, 30.0]]]])
    # A quarter of the way across x, half-way down y: 0.75·(0.5·0 + 0.5·20)
    # + 0.25·(0.5·10 + 0.5·30) = 7.5 + 5 = 12.5.
    grid = torch.tensor([[[[-0.5, 0.0]]]])
    assert bilinear_sample(image, grid).item() == pytest.approx(12.5)


@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
def test_bilinear_gradients_match_grid_sample(padding_mode):
    torch.manual_seed(2)
    image = torch.randn(2, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    grid = (torch.rand(2, 4, 3, 2, dtype=torch.float64) * 2.4 - 1.2).requires_grad_()
    weights = torch.randn(2, 2, 4, 3, dtype=torch.float64)
    ours = torch.autograd.grad(
        (bilinear_sample(image, grid, padding_mode) * weights).sum(), [image, grid]
    )
    theirs = torch.autograd.grad(
        (reference(image, grid, padding_mode) * weights).sum(), [image, grid]
    )
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)


def test_bilinear_gradcheck():
    torch.manual_seed(3)
    image = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    grid = (torch.rand(1, 3, 3, 2, dtype=torch.float64) * 1.8 - 0.9).requires_grad_()
    assert torch.autograd.gradcheck(bilinear_sample, (image, grid))


def affine_reference(image, tx, ty, s, size):
    """Per-channel loop over F.affine_grid + grid_sample: an independent glimpse."""
    b, k = tx.shape
    out = []
    for j in range(k):
        theta = torch.zeros(b, 2, 3, dtype=image.dtype)
        theta[:, 0, 0] = s[:, j]
        theta[:, 1, 1] = s[:, j]
        theta[:, 0, 2] = tx[:, j]
        theta[:, 1, 2] = ty[:, j]
        grid = F.affine_grid(theta, [b, image.shape[1], *size], align_corners=True)
        out.append(F.grid_sample(image, grid, padding_mode="border", align_corners=True))
    return torch.stack(out, dim=1)


@pytest.mark.parametrize(
    ("image_shape", "k", "size"),
    [((2, 1, 120, 120), 1, (28, 28)), ((3, 3, 33, 47), 4, (9, 14)), ((1, 2, 8, 5), 2, (5, 7))],
)
def test_glimpse_matches_affine_grid_reference(image_shape, k, size):
    torch.manual_seed(4)
    image = torch.rand(*image_shape)
    b = image_shape[0]
    tx, ty = torch.rand(b, k) * 2 - 1, torch.rand(b, k) * 2 - 1
    s = torch.rand(b, k) * 0.8 + 0.05
    out = glimpse(image, tx, ty, s, size=size)
    assert out.shape == (b, k, image_shape[1], *size)
    torch.testing.assert_close(out, affine_reference(image, tx, ty, s, size))


def test_glimpse_of_a_tile_box_is_the_tile():
    # A 28×28 pattern at rows 40..67, columns 17..44 of a 120×120 canvas: its box's
    # glimpse samples exactly those pixel centres.
    torch.manual_seed(5)
    canvas = torch.zeros(1, 1, 120, 120, dtype=torch.float64)
    tile = torch.rand(28, 28, dtype=torch.float64)
    canvas[0, 0, 40:68, 17:45] = tile
    box = torch.tensor([[17.0, 40.0, 44.0, 67.0]], dtype=torch.float64)
    tx, ty, s = box_to_params(box, (120, 120))
    out = glimpse(canvas, tx[:, None], ty[:, None], s[:, None])
    torch.testing.assert_close(out[0, 0, 0], tile)


def test_box_geometry_by_hand():
    # s = 1 at the centre spans the image: x0 = 0, x1 = W - 1.
    one, zero = torch.ones(1), torch.zeros(1)
    torch.testing.assert_close(
        glimpse_box(zero, zero, one, (50, 100)), torch.tensor([[0.0, 0.0, 99.0, 49.0]])
    )
    # tx = 0.5, s = 0.25 on W = 101: x0 = (0.25 + 1)/2·100 = 62.5, x1 = 87.5.
    box = glimpse_box(torch.tensor([0.5]), torch.tensor([-0.5]), torch.tensor([0.25]), (101, 101))
    torch.testing.assert_close(box, torch.tensor([[62.5, 12.5, 87.5, 37.5]]))


def test_box_round_trip():
    torch.manual_seed(6)
    tx, ty, s = torch.rand(3, 2) * 2 - 1, torch.rand(3, 2) * 2 - 1, torch.rand(3, 2)
    back = box_to_params(glimpse_box(tx, ty, s, (64, 64)), (64, 64))
    for a, b in zip(back, (tx, ty, s), strict=True):
        torch.testing.assert_close(a, b)


def test_glimpse_border_padding_copies_the_edge():
    image = torch.arange(16.0).reshape(1, 1, 4, 4)
    # Centred far right of the image, half-way down: every sample clamps to the
    # last column, between its rows 1 and 2 (values 7 and 11).
    out = glimpse(
        image, torch.tensor([[5.0]]), torch.tensor([[0.0]]), torch.tensor([[0.01]]), size=(2, 2)
    )
    torch.testing.assert_close(out[0, 0, 0], torch.full((2, 2), 9.0), atol=0.1, rtol=0)
    zeros = glimpse(
        image, torch.tensor([[5.0]]), torch.tensor([[0.0]]), torch.tensor([[0.01]]), (2, 2), "zeros"
    )
    torch.testing.assert_close(zeros, torch.zeros_like(zeros))


def test_glimpse_gradcheck_in_image_and_parameters():
    torch.manual_seed(7)
    image = torch.rand(2, 2, 9, 7, dtype=torch.float64, requires_grad=True)
    tx = (torch.rand(2, 2, dtype=torch.float64) * 1.2 - 0.6).requires_grad_()
    ty = (torch.rand(2, 2, dtype=torch.float64) * 1.2 - 0.6).requires_grad_()
    s = (torch.rand(2, 2, dtype=torch.float64) * 0.3 + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda *a: glimpse(*a, size=(4, 5)), (image, tx, ty, s))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_glimpse_on_cuda_matches_cpu():
    torch.manual_seed(8)
    image, params = torch.rand(2, 1, 30, 40), [torch.rand(2, 3) * 0.5 for _ in range(3)]
    cpu = glimpse(image, *params)
    gpu = glimpse(image.cuda(), *[p.cuda() for p in params])
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=1e-5)
