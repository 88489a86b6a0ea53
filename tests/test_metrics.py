"""Box metrics, on boxes computed by hand."""

import math

import pytest
import torch

from dham_lib.metrics import box_centre_error, box_coverage, box_iou


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
