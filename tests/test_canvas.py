"""The literature's cluttered translated MNIST (``cluttered_mnist``), checked against a canvas
drawn by hand from the same random draws."""

import numpy as np
import pytest
import torch

from dham_lib.data import TranslatedMNIST, cluttered_mnist, load_mnist


@pytest.fixture(scope="module")
def digits():
    """The first 64 bundled training digits: ``(uint8 [64, 28, 28], int64 [64])``."""
    images, labels = load_mnist("train", source="bundled", verbose=False)
    return images[:64], labels[:64]


def by_hand(ds: TranslatedMNIST, images: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Item ``i`` drawn one piece at a time from the dataset's draws: ``(canvas before clipping
    [H, W], where a distractor lies [H, W], pixels where two or more pieces overlap)``."""
    height, width = ds.canvas_size
    canvas, covered = np.zeros((height, width)), np.zeros((height, width), dtype=int)
    for src, (row, col), y, x in zip(
        ds._clutter_src[i], ds._clutter_crop[i], ds._clutter_y[i], ds._clutter_x[i], strict=True
    ):
        assert src != i  # a distractor comes from another digit
        canvas[y : y + 8, x : x + 8] += images[src, row : row + 8, col : col + 8] / 255
        covered[y : y + 8, x : x + 8] += 1
    top, left = ds._top[i], ds._left[i]
    canvas[top : top + 28, left : left + 28] += images[i] / 255
    digit = np.zeros((height, width), dtype=bool)
    digit[top : top + 28, left : left + 28] = images[i] > 0
    return canvas, covered > 0, int(((covered + digit) > 1).sum())


@pytest.mark.parametrize(("side", "distractors"), [(60, 4), (100, 8)])
def test_a_canvas_is_the_native_digit_plus_its_distractors_clipped(digits, side, distractors):
    images = digits[0]
    ds = cluttered_mnist(*digits, canvas=side, seed=3)
    assert ds.canvas_size == (side, side) and ds.n_clutter == distractors
    assert ds._clutter_src.shape == (64, distractors)
    canvases, labels, boxes = ds.batch(range(64))
    assert canvases.shape == (64, 1, side, side) and torch.equal(
        labels, torch.from_numpy(digits[1])
    )
    assert 0 <= canvases.min() and canvases.max() <= 1
    overlaps = clipped = 0
    for i in range(64):
        x0, y0, x1, y1 = boxes[i].long().tolist()
        assert x1 - x0 == y1 - y0 == 27 and 0 <= min(x0, y0) and max(x1, y1) < side
        assert (y0, x0) == (ds._top[i], ds._left[i])
        unclipped, covered, overlap = by_hand(ds, images, i)
        canvas = canvases[i, 0].double().numpy()
        np.testing.assert_allclose(canvas, np.clip(unclipped, 0, 1), atol=1e-6)
        # The digit's own pixels, where no distractor lies, are its native ones.
        square = canvas[y0 : y1 + 1, x0 : x1 + 1]
        free = ~covered[y0 : y1 + 1, x0 : x1 + 1]
        np.testing.assert_array_equal(square[free], images[i][free] / np.float32(255))
        overlaps, clipped = overlaps + overlap, clipped + int((unclipped > 1).sum())
    assert overlaps > 0 and clipped > 0  # sums and the clip were both exercised
    assert ds._clutter_crop.min() == 0 and ds._clutter_crop.max() == 20  # anywhere in 28×28


def test_the_same_seed_draws_the_same_canvases_and_variant_draws_new_ones(digits):
    first, again = cluttered_mnist(*digits, seed=1), cluttered_mnist(*digits, seed=1)
    canvases = first.batch(range(64))[0]
    assert torch.equal(canvases, again.batch(range(64))[0])
    assert torch.equal(first.batch([9, 2])[0][0], canvases[9])  # independent of its batch
    epoch = first.variant(seed=2)
    assert epoch.n_clutter == 4 and (epoch.side == 28).all()
    assert not torch.equal(epoch.batch(range(64))[0], canvases)
    assert torch.equal(
        epoch.batch(range(64))[0], cluttered_mnist(*digits, seed=2).batch(range(64))[0]
    )
    larger = first.variant(canvas=100)  # a canvas curriculum keeps the native 28 px
    assert (larger.side == 28).all() and larger.n_clutter == round(4 * 100**2 / 60**2)


def test_the_literature_canvases_refuse_what_they_do_not_define(digits):
    with pytest.raises(ValueError, match="canvas"):
        cluttered_mnist(*digits, canvas=80)
    with pytest.raises(ValueError, match="snr_db"):
        cluttered_mnist(*digits).variant(snr_db=0.0)
    with pytest.raises(ValueError, match="n_clutter"):
        TranslatedMNIST(*digits, canvas=80, background="mnist_cluttered")
    custom = TranslatedMNIST(*digits, canvas=80, background="mnist_cluttered", n_clutter=6)
    assert custom.n_clutter == 6
