"""The exercise checks that compute their references out of the notebooks' sight.

Each check is run on the answer worked out by hand here (an independent reference: the
library computes its own) and on a wrong one, whose hint must not show the reference."""

import copy
import math

import pytest
import torch

from dham_lib.course import answers, inspect
from dham_lib.data import TranslatedMNIST
from dham_lib.sampling import to_normalised
from dham_lib.train import fit
from tests.figures import bar_digits, small_dham

# 01 ex3: 1/2 at (-1, -1), 1/4 at (0, 1) and (1, 1); offsets from (-0.25, 0) are
# (-0.75, -1), (0.25, 1), (1.25, 1).
EXERCISE_PMF = torch.tensor([[0.5, 0, 0], [0, 0, 0], [0, 0.25, 0.25]], dtype=torch.float64)
S_L2 = 0.5 * 1.25 + 0.25 * math.hypot(0.25, 1) + 0.25 * math.hypot(1.25, 1)
# 04 ex4: x0 = (0.2 - 0.25 + 1) / 2 · 119 and its relatives; 27 gaps between 28 samples.
BOX = [0.475 * 119, 0.125 * 119, 0.725 * 119, 0.375 * 119]
# 02 ex2: neighbours rows 0-1, columns 2-3, a = 0.5 along x, b = 0.25 along y.
BILINEAR = {"w_00": 0.375, "w_01": 0.375, "w_10": 0.125, "w_11": 0.125}
BILINEAR["value"] = 0.375 * 0.4 + 0.375 * 0.1 + 0.125 * 0.6 + 0.125 * 0.2
FINE_AXIS = torch.linspace(-1, 1, 401, dtype=torch.float64)
# 06 ex1: s_1 = E|X| + E|Y| = 0.3 + 0.1; s_2 = E sqrt(X² + Y²), by a 2-D midpoint rule.
_x = (torch.arange(1200, dtype=torch.float64) + 0.5) / 1000 - 0.6
_y = (torch.arange(400, dtype=torch.float64) + 0.5) / 1000 - 0.2
S_2 = torch.sqrt(_x[None, :] ** 2 + _y[:, None] ** 2).mean().item()

CASES = [  # (check, right answer, wrong answer, what the wrong answer's hint names)
    (
        answers.check_pmf_moments,
        (EXERCISE_PMF, -0.25, 0.0, 1.75, S_L2),
        (EXERCISE_PMF, -0.25, 0.0, 1.75, 1.0),
        "s_L2: 1 is too low",
    ),
    (
        answers.check_temperature_and_shift,
        (torch.randn(1, 1, 5, 5), 1 / 3, 0.0),
        (torch.randn(1, 1, 5, 5), 3.0, 0.0),
        "is too low",
    ),
    (answers.check_bilinear_by_hand, (BILINEAR,), ({**BILINEAR, "value": 0.3},), "too high"),
    (answers.check_slope_by_hand, (-0.4, -0.6), (-0.4, -0.4), "per normalised unit"),
    (
        answers.check_box_overlap,
        (400.0, 400 / 3600, 400 / 2400),
        (400.0, 0.2, 400 / 2400),
        "IoU: 0.2 is too high",
    ),
    (
        answers.check_glimpse_box_by_hand,
        (BOX, (BOX[2] - BOX[0]) / 27),
        (BOX, 1.0),
        "spacing: 1 is too low",
    ),
    (
        answers.check_attention_weight_counts,
        (1633, 610, False),
        (1634, 610, True),
        "width 32: 1634 is too high",
    ),
    (
        answers.check_snr_by_hand,
        (math.sqrt(0.1 / 10**0.6), 10 * math.log10(0.1 / 0.154**2)),
        (0.2, 10 * math.log10(0.1 / 0.154**2)),
        "sigma_at_6db: 0.2 is too high",
    ),
    (answers.check_stride_geometry, (25, 3.5, 64.0), (25, 4.0, 64.0), "largest offset"),
    (
        answers.check_dham_shapes,
        ((5, 3, 3, 20, 30), (5, 3)),
        ((5, 3, 3, 20, 30), (5,)),
        "ex2_tx_shape",
    ),
]


@pytest.mark.parametrize(
    "check, right, wrong, hint", CASES, ids=lambda v: getattr(v, "__name__", "")
)
def test_each_check_passes_the_hand_answer_and_hints_without_telling(
    check, right, wrong, hint, capsys
):
    check(*right)
    assert capsys.readouterr().out.startswith("Correct")
    with pytest.raises(AssertionError):
        check(*wrong)
    shown = capsys.readouterr().out
    assert shown.startswith("Not yet") and hint in shown


def test_the_reference_is_never_printed(capsys):
    with pytest.raises(AssertionError):
        answers.check_pmf_moments(EXERCISE_PMF, 0.0, 0.0, 0.0, 0.0)
    shown = capsys.readouterr().out
    assert "-0.25" not in shown and "1.75" not in shown and f"{S_L2:.3f}" not in shown


def test_rectangle_and_disk_against_their_continuous_values(capsys):
    # On a 401-pixel map the pixels add about half a pixel (0.005) to s_1; the ratio holds.
    answers.check_rectangle_scale(FINE_AXIS, 0.4 + 0.005, 0.4 / S_2)
    assert capsys.readouterr().out.startswith("Correct")
    axis = torch.linspace(-1, 1, 201, dtype=torch.float64)
    disk = (axis[None, :] - 0.1) ** 2 + (axis[:, None] - 0.2) ** 2 <= 0.36
    answers.check_disk_scale((disk / disk.sum())[None, None], 0.4, 0.4)
    assert capsys.readouterr().out.startswith("Correct")
    with pytest.raises(AssertionError, match="201, 201"):
        answers.check_disk_scale(torch.ones(1, 1, 10, 10) / 100, 0.4, 0.4)


def test_grid_sample_axis_weights_by_hand():
    # x = 1.3 pixels on 4 pixels: 0.7 on pixel 1 and 0.3 on pixel 2; x = -0.5: 0.5 on pixel 0,
    # its other neighbour (pixel -1) outside.
    coord = to_normalised(torch.tensor([1.3, -0.5], dtype=torch.float64), 4)
    expected = torch.tensor([[0, 0.7, 0.3, 0], [0.5, 0, 0, 0]], dtype=torch.float64)
    torch.testing.assert_close(answers.grid_sample_axis_weights(coord, 4), expected)


def test_logit_gradient_of_a_uniform_map(capsys):
    # ∂(-t_x)/∂L = -p (x - t_x) = -(x / 25) on a uniform 5×5 map, x = -1, -0.5, 0, 0.5, 1.
    logits = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    grad = -torch.linspace(-1, 1, 5, dtype=torch.float64).expand(5, 5)[None, None] / 25
    answers.check_logit_gradient(logits, grad)
    assert "columns: [3, 4]" in capsys.readouterr().out
    with pytest.raises(AssertionError):
        answers.check_logit_gradient(logits, -grad)


def test_check_farthest_glimpse_hints_at_what_is_wrong_and_never_tells(capsys):
    model = small_dham()
    torch.nn.init.normal_(model.attention.conv2.weight, std=0.5)  # glimpses that wander
    dataset = TranslatedMNIST(*bar_digits(20), canvas=64, seed=0)
    stats = inspect.glimpse_stats(model, dataset, limit=10)
    order = stats["centre_error"].argsort(descending=True)
    best, other = (int(stats["index"][i]) for i in order[:2])
    error = stats["centre_error"][order[0]].item()
    answers.check_farthest_glimpse(model, dataset, best, error, limit=10)
    assert capsys.readouterr().out == "Correct.\n"
    for index, value, hint in (
        (other, error, "another of the 10 canvases"),
        (best, error + 1.0, "too high"),
        (best, error - 1.0, "too low"),
        (None, error, "is not one of the 10 canvases"),
    ):
        with pytest.raises(AssertionError):
            answers.check_farthest_glimpse(model, dataset, index, value, limit=10)
        out = capsys.readouterr().out
        assert hint in out and f"{error:.4g}" not in out.replace(f"{value:.4g}", "")


def _one_step(model, optimiser, canvases, labels):
    loss = torch.nn.functional.cross_entropy(model(canvases).logits, labels)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return loss.item()


def _loop(model, train_set, epochs, seed, attention_lr=1e-2):
    """The loop notebook 04's exercise 2 asks for, written here from its prompt."""
    attention = list(model.attention.parameters())
    rest = list(model.classifier.parameters())
    optimiser = torch.optim.Adam([{"params": attention, "lr": attention_lr}, {"params": rest}])
    model.train()
    losses = []
    for epoch in range(1, epochs + 1):
        epoch_set = train_set.variant(seed=seed * 10_000 + epoch)
        for canvases, labels, _ in epoch_set.batches(64, shuffle=True, seed=seed * 10_000 + epoch):
            losses.append(_one_step(model, optimiser, canvases, labels))
    return losses


def test_the_training_loop_checks_pass_a_loop_written_from_the_prompt(capsys):
    train_set = TranslatedMNIST(*bar_digits(70), canvas=48, seed=0)  # two batches: 64 and 6
    answers.check_one_step(_one_step, train_set)
    assert capsys.readouterr().out.startswith("Correct")
    start = small_dham()
    trained = copy.deepcopy(start)
    losses = _loop(trained, train_set, 2, 3)
    answers.check_training_loop(_loop, trained, losses, start, train_set, train_set, 2, 3)
    assert capsys.readouterr().out.startswith("Correct")
    # The attention network at the classifier's rate: the weights and losses drift apart.
    slow = copy.deepcopy(start)
    slow_losses = _loop(slow, train_set, 2, 3, attention_lr=1e-3)
    with pytest.raises(AssertionError):
        answers.check_training_loop(_loop, slow, slow_losses, start, train_set, train_set, 2, 3)
    assert "attention weights" in capsys.readouterr().out


def test_the_training_loop_checks_refuse_a_loop_that_calls_fit(capsys):
    def delegating(model, train_set, epochs, seed):
        fit(model, train_set, train_set, epochs=epochs, seed=seed, progress=False)
        return [0.0] * 4

    train_set = TranslatedMNIST(*bar_digits(70), canvas=48, seed=0)
    start = small_dham()
    with pytest.raises(AssertionError, match="fit"):
        answers.check_training_loop(delegating, start, [0.0] * 4, start, train_set, train_set, 2, 3)
    assert "delegating uses fit" in capsys.readouterr().out
