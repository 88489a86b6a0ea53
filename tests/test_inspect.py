"""Looking inside trained models: attention, glimpse statistics, stride offsets, boxes."""

import contextlib
import io
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from dham_lib.course import answers, figures, inspect
from dham_lib.data import TranslatedMNIST
from dham_lib.dham import DHAM
from dham_lib.models import PlainCNN
from dham_lib.pmf import expected_norm, spatial_softmax
from dham_lib.sampling import to_pixels
from dham_lib.study.results import difference_interval, wilson_interval
from tests.figures import (  # noqa: F401 (agg_backend is an autouse fixture)
    agg_backend,
    assert_labelled,
    bar_digits,
    rectangles,
    small_dham,
)


def test_attend_matches_the_model_and_leaves_it_unchanged():
    model = small_dham()
    torch.nn.init.normal_(model.attention.conv2.weight, std=0.1)  # a non-uniform PMF
    canvases = torch.rand(3, 1, 40, 48)
    model.train()
    seen = inspect.attend(model, canvases)
    assert model.training and model.dham.temperature == 1.0
    prediction = model.eval()(canvases)
    torch.testing.assert_close(seen.probabilities, torch.softmax(prediction.logits, dim=1))
    torch.testing.assert_close(seen.boxes, prediction.boxes)
    torch.testing.assert_close(seen.glimpses, prediction.glimpses)
    assert seen.pmf.shape == (3, 1, 20, 24) and seen.tx.shape == (3, 1)


def test_attend_temperature_sharpens_without_touching_thesmall_dham():
    model = small_dham()
    torch.nn.init.normal_(model.attention.conv2.weight, std=0.5)
    canvases = torch.rand(2, 1, 40, 40)
    cold = inspect.attend(model, canvases, temperature=0.25)
    warm = inspect.attend(model, canvases, temperature=4.0)
    with torch.no_grad():
        logits = model.attention(canvases)
    torch.testing.assert_close(cold.pmf, spatial_softmax(logits, 0.25))
    assert (cold.pmf.flatten(1).amax(1) > warm.pmf.flatten(1).amax(1)).all()
    assert model.dham.temperature == 1.0
    with pytest.raises(ValueError, match="temperature"):
        inspect.attend(model, canvases, temperature=0.0)
    l1 = inspect.attend(model, canvases, norm=1)
    torch.testing.assert_close(l1.s, expected_norm(l1.pmf, p=1))
    assert model.dham.norm == 2
    with pytest.raises(ValueError, match="norm"):
        inspect.attend(model, canvases, norm=3)
    with pytest.raises(TypeError, match="DHAMClassifier"):
        inspect.attend(PlainCNN(), canvases)


def test_glimpse_stats_shapes_and_values():
    images, labels = bar_digits()
    dataset = TranslatedMNIST(images, labels, canvas=60, seed=3)
    stats = inspect.glimpse_stats(small_dham(), dataset, batch_size=5)
    assert set(stats) >= {"label", "prediction", "correct", "boxes", "iou", "glimpse_side"}
    assert stats["boxes"].shape == (12, 4) and stats["iou"].shape == (12,)
    torch.testing.assert_close(stats["label"], torch.as_tensor(labels))
    assert torch.all(stats["digit_side"] == torch.as_tensor(dataset.side - 1).float())
    torch.testing.assert_close(stats["p_max"], torch.full((12,), 1 / (30 * 30)))
    # A uniform PMF puts on each box its share of the map's pixels.
    assert torch.all((stats["mass_in_box"] > 0) & (stats["mass_in_box"] < 1))
    assert stats["index"].tolist() == list(range(12))
    some = inspect.glimpse_stats(small_dham(), dataset, batch_size=5, limit=7)
    # A limit takes the classes in turn (bar_digits cycles 0..9: the first 7 are 0..6).
    assert some["index"].tolist() == list(range(7)) and len(some["iou"]) == 7
    picked = inspect.glimpse_stats(small_dham(), dataset, limit=12)
    torch.testing.assert_close(picked["label"], torch.as_tensor(labels)[picked["index"]])
    sharp = small_dham()
    torch.nn.init.normal_(sharp.attention.conv2.weight, std=0.5)
    cold = inspect.glimpse_stats(sharp, dataset, limit=4, temperature=0.25)["p_max"]
    warm = inspect.glimpse_stats(sharp, dataset, limit=4)["p_max"]
    assert (cold > warm).all()
    fig = figures.plot_glimpse_sizes({"untrained": stats})
    assert_labelled(fig)


@pytest.mark.parametrize("size, stride", [(120, 1), (120, 2), (120, 4), (120, 8), (10, 4)])
def test_stride_offsets_match_dham_and_stay_below_half_the_stride(size, stride):
    offsets = inspect.stride_offsets(size, stride)
    assert len(offsets) == -(-size // stride)
    assert offsets.abs().max() < stride / 2
    # What the pooled column summarises: the centre of mass of a one-hot pooled column.
    image_x = torch.arange(size, dtype=torch.float64).expand(1, 1, 1, size)
    centres = F.avg_pool2d(image_x, (1, stride), ceil_mode=True)[0, 0, 0]
    for k in range(len(offsets)):
        hot = torch.full((1, 1, 3, len(offsets)), -60.0, dtype=torch.float64)
        hot[0, 0, 1, k] = 60.0
        _, params = DHAM()(torch.zeros(1, 1, 3, size, dtype=torch.float64), hot)
        read = to_pixels(params.tx, size).item()
        assert read - centres[k].item() == pytest.approx(offsets[k].item(), abs=1e-9)


def test_stride_offsets_bad_input():
    assert inspect.stride_offsets(120, 1).abs().max() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        inspect.stride_offsets(8, 8)
    with pytest.raises(TypeError, match="stride"):
        inspect.stride_offsets(120, 2.0)


def test_box_logits_one_channel_per_box():
    boxes = torch.tensor([[1.0, 2.0, 4.0, 5.0], [10.0, 0.0, 11.0, 1.0]])
    logits = inspect.box_logits(boxes, (8, 12))
    assert logits.shape == (1, 2, 8, 12)
    assert logits[0, 0].sum() == 10.0 * 4 * 4 and logits[0, 1].sum() == 10.0 * 2 * 2
    assert logits[0, 0, 2, 1] == 10.0 and logits[0, 0, 1, 1] == 0.0
    with pytest.raises(ValueError, match=r"\[K, 4\]"):
        inspect.box_logits(torch.zeros(2, 3), (8, 12))


def test_ink_share_counts_pixel_centres_inside_the_box():
    canvases = torch.zeros(2, 1, 10, 10)
    canvases[0, 0, 2:4, 2:4] = 1.0  # 4 pixels of ink
    canvases[0, 0, 8, 8] = 4.0  # as much again, outside
    boxes = torch.tensor([[1.5, 1.5, 3.0, 3.0], [0.0, 0.0, 9.0, 9.0]])
    share = inspect.ink_share(canvases, boxes)
    assert share[0].item() == pytest.approx(0.5) and share[1].item() == 0.0  # blank canvas
    with pytest.raises(ValueError, match="one per canvas"):
        inspect.ink_share(canvases, boxes[:1])


def test_mass_in_box_reads_the_map_as_spanning_the_image():
    pmf = torch.full((1, 2, 5, 5), 1 / 25)
    pmf[0, 1] = 0.0
    pmf[0, 1, 4, 4] = 1.0  # all the mass on the last map pixel, image pixel (99, 99)
    boxes = torch.tensor([[50.0, 50.0, 99.0, 99.0]])
    mass = inspect.mass_in_box(pmf, boxes, (100, 100))
    # Map pixels 3 and 4 (image pixels 74.25 and 99) of each axis lie in the box: 4 of 25.
    torch.testing.assert_close(mass, torch.tensor([[4 / 25, 1.0]]))
    with pytest.raises(ValueError, match="one per PMF"):
        inspect.mass_in_box(pmf, boxes.repeat(2, 1), (100, 100))


RUNS = pd.DataFrame(
    {  # three DHAM seeds and the oracle of each seed (test accuracy 0.95), clean canvases
        "model": ["dham", "dham", "dham", "oracle", "oracle", "oracle"],
        "seed": [0, 1, 2, 0, 1, 2],
        "snr_db": [math.inf] * 6,
        "val_acc": [0.90, 0.94, 0.92, 0.97, 0.97, 0.97],
        "test_acc": [0.93, 0.85, 0.80, 0.95, 0.95, 0.95],
        "centre_error": [2.0, 3.0, 12.0, 0.0, 0.0, 0.0],
    }
)


def _check_says(check, *args):
    """What a check prints, and whether it passed."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        try:
            check(*args)
        except AssertionError:
            return output.getvalue(), False
    return output.getvalue(), True


def test_check_validation_choice_wants_the_best_seed_on_validation_and_its_test_score():
    dham = RUNS[RUNS["model"] == "dham"]
    assert _check_says(answers.check_validation_choice, dham, 1, 0.85)[1]
    said, passed = _check_says(answers.check_validation_choice, dham, 0, 0.93)  # best on test
    assert not passed and "seed: 0 is too low" in said and "0.85" not in said


def test_check_attention_outcomes_sorts_runs_by_place_then_accuracy():
    # Seed 0 found and read (0.93 >= 0.855), seed 1 found but misread, seed 2 never found.
    low, high = wilson_interval(1, 3)
    assert _check_says(answers.check_attention_outcomes, RUNS, 9.6, 1, 1, low, high)[1]
    said, passed = _check_says(answers.check_attention_outcomes, RUNS, 9.6, 2, 1, low, high)
    assert not passed and "read: 2 is too high" in said and f"{low:.4g}" not in said
    # A threshold above every centre error: every run found it.
    assert _check_says(answers.check_attention_outcomes, RUNS, 20.0, 1, 0, 0.0, 0.5615)[1]


def test_check_difference_interval_against_welch():
    a, b = [0.95, 0.96, 0.94], [0.92, 0.93, 0.91]
    difference, low, high = difference_interval(a, b)
    assert difference == pytest.approx(0.03) and low < 0.03 < high
    assert _check_says(answers.check_difference_interval, a, b, difference, low, high)[1]
    said, passed = _check_says(answers.check_difference_interval, b, a, difference, low, high)
    assert not passed and "too high" in said and f"{-difference:.4g}" not in said
