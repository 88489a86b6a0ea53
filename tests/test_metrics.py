"""Box metrics, on boxes computed by hand."""

import math

import pytest
import torch

from dham_lib.data import TranslatedMNIST, load_mnist
from dham_lib.metrics import box_centre_error, box_coverage, box_iou, ink_square, measured_snr_db


def test_iou_by_hand():
    a = torch.tensor([0.0, 0.0, 2.0, 2.0])
    b = torch.tensor([1.0, 1.0, 3.0, 3.0])
    assert box_iou(a, b).item() == pytest.approx(1 / 7)  # overlap 1, union 4 + 4 - 1
    assert box_iou(a, a).item() == pytest.approx(1.0)
    assert box_iou(a, torch.tensor([5.0, 5.0, 6.0, 6.0])).item() == 0.0


def test_zero_area_scores_zero_not_nan():
    point = torch.tensor([1.0, 1.0, 1.0, 1.0])
    assert box_iou(point, point).item() == 0.0
    assert box_coverage(point, point).item() == 0.0


def test_elementwise_and_broadcast():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 4.0, 1.0]])
    b = torch.tensor([0.0, 0.0, 2.0, 1.0])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([0.5, 0.5]))
    assert box_iou(a[:, None], a[None]).shape == (2, 2)


def test_coverage_and_centre_error_by_hand():
    loose = torch.tensor([0.0, 0.0, 10.0, 10.0])
    digit = torch.tensor([2.0, 2.0, 4.0, 4.0])
    assert box_coverage(loose, digit).item() == pytest.approx(1.0)
    assert box_iou(loose, digit).item() == pytest.approx(0.04)
    assert box_centre_error(loose, digit).item() == pytest.approx(math.hypot(2, 2))


@pytest.mark.parametrize(
    ("a", "word"),
    [
        (torch.tensor([0.0, 0.0, 1.0]), "shape"),
        (torch.tensor([2.0, 0.0, 1.0, 1.0]), "x1 >= x0"),
        (torch.tensor([0.0, 0.0, 1.0, float("nan")]), "finite"),
        ([0.0, 0.0, 1.0, 1.0], "torch.Tensor"),
    ],
)
def test_bad_boxes(a, word):
    with pytest.raises((ValueError, TypeError), match=word):
        box_iou(a, torch.tensor([0.0, 0.0, 1.0, 1.0]))


def test_ink_square_by_hand():
    image = torch.zeros(2, 1, 10, 12)
    image[0, 0, 2:5, 3:9] = 1.0  # ink rows 2..4, columns 3..8: 6 wide, 3 tall
    image[1, 0, 7, 1] = 0.5  # one ink pixel
    image[1, 0, 0, 0] = 0.1  # below the threshold: not ink
    squares = ink_square(image, threshold=0.2)
    # Centre (5.5, 3), half-side = longer extent 5 / 2.
    torch.testing.assert_close(squares[0], torch.tensor([3.0, 0.5, 8.0, 5.5]))
    torch.testing.assert_close(squares[1], torch.tensor([1.0, 7.0, 1.0, 7.0]))


def test_ink_square_of_a_blank_image_is_an_error():
    image = torch.zeros(2, 1, 5, 5)
    image[0, 0, 2, 2] = 1.0
    with pytest.raises(ValueError, match=r"images\[1\].*threshold"):
        ink_square(image)
    with pytest.raises(ValueError, match="one channel"):
        ink_square(torch.ones(1, 3, 5, 5))


def test_measured_snr_matches_the_request():
    images, labels = load_mnist("test", source="bundled", verbose=False)
    for snr in (-3.0, 6.0, 12.0):
        clean = TranslatedMNIST(images[:32], labels[:32], snr_db=None, seed=4)
        noisy = TranslatedMNIST(images[:32], labels[:32], snr_db=snr, seed=4)
        canvases, _, boxes = noisy.batch(range(32))
        measured = measured_snr_db(clean.batch(range(32))[0], canvases, boxes)
        assert measured.mean().item() == pytest.approx(snr, abs=0.5)
