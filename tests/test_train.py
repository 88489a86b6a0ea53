"""fit and evaluate on a small task: histories, metrics, seeds."""

import copy
import math

import numpy as np
import pytest
import torch

from dham_lib.data import TranslatedMNIST, load_mnist
from dham_lib.models import build_model
from dham_lib.train import (
    HISTORY_KEYS,
    EpochSchedule,
    choose_device,
    curriculum_canvas,
    curriculum_snr,
    evaluate,
    fit,
    parameter_groups,
    seed_everything,
    train_step,
)


@pytest.fixture(scope="module")
def small_task():
    images, labels = load_mnist("train", source="bundled", verbose=False)
    train = TranslatedMNIST(images[:256], labels[:256], canvas=64, seed=0)
    test = TranslatedMNIST(images[256:384], labels[256:384], canvas=64, seed=1)
    return train, test


def test_fit_history_and_learning(small_task):
    train, test = small_task
    model = build_model("oracle")
    history = fit(model, EpochSchedule(train, batch_size=32), test, epochs=3, progress=False)
    assert set(history) == set(HISTORY_KEYS)
    assert history["epoch"] == [1, 2, 3]
    assert all(len(v) == 3 for v in history.values())
    assert history["seconds"] == sorted(history["seconds"])
    # The oracle sees the true crop: three epochs on 256 digits beat chance clearly.
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["test_acc"][-1] > 0.3


def test_same_seed_same_model(small_task):
    train, test = small_task
    weights = []
    for _ in range(2):
        seed_everything(7)  # the initial weights come from the global generator
        model = build_model("dham", width=4, stride=2)
        fit(model, train, test, epochs=1, seed=7, progress=False)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(weights[0], weights[1])


def test_attention_lr_gets_its_own_parameter_group(small_task):
    train, test = small_task
    model = build_model("dham", width=4, stride=2, uniform_start=False)
    frozen_attention = [p.detach().clone() for p in model.attention.parameters()]
    frozen_classifier = [p.detach().clone() for p in model.classifier.parameters()]
    # A tiny attention learning rate barely moves the attention network; the classifier moves.
    fit(model, train, test, epochs=1, lr=1e-3, attention_lr=1e-12, progress=False)
    for before, after in zip(frozen_attention, model.attention.parameters(), strict=True):
        torch.testing.assert_close(before, after.detach(), atol=1e-9, rtol=0)
    moved = [
        (before - after.detach()).abs().max().item()
        for before, after in zip(frozen_classifier, model.classifier.parameters(), strict=True)
    ]
    assert max(moved) > 1e-4


def test_train_step_is_one_plain_gradient_step_on_the_cross_entropy(small_task):
    train, _ = small_task
    canvases, labels, boxes = train.batch(range(16))
    seed_everything(3)
    model = build_model("dham", width=4, stride=2, uniform_start=False)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    # The reference: the loss by hand from the log-softmax, its gradient by autograd.grad.
    log_p = torch.log_softmax(model(canvases).logits, dim=1)
    want_loss = -log_p[torch.arange(16), labels].mean()
    grads = torch.autograd.grad(want_loss, list(model.parameters()))
    loss, logits = train_step(model, torch.optim.SGD(model.parameters(), lr=0.5), canvases, labels)
    assert loss.item() == pytest.approx(want_loss.item(), rel=1e-6)
    assert logits.shape == (16, 10) and not logits.requires_grad
    for (name, p), grad in zip(model.named_parameters(), grads, strict=True):
        torch.testing.assert_close(p.detach(), before[name] - 0.5 * grad, msg=name)


def test_train_step_adds_a_variants_penalty_to_the_cross_entropy(small_task):
    train, _ = small_task
    canvases, labels, _ = train.batch(range(16))
    seed_everything(3)
    model = build_model("dham_entropy", width=4, uniform_start=False, entropy_weight=0.1)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    # The reference: the cross-entropy by hand, minus 0.1 times the PMFs' mean entropy.
    pmf, _ = model.attend(canvases)
    entropy = torch.distributions.Categorical(probs=pmf.flatten(2)).entropy().mean()
    log_p = torch.log_softmax(model(canvases).logits, dim=1)
    want_loss = -log_p[torch.arange(16), labels].mean() - 0.1 * entropy
    grads = torch.autograd.grad(want_loss, list(model.parameters()))
    loss, _ = train_step(model, torch.optim.SGD(model.parameters(), lr=0.5), canvases, labels)
    assert loss.item() == pytest.approx(want_loss.item(), rel=1e-6)
    for (name, p), grad in zip(model.named_parameters(), grads, strict=True):
        torch.testing.assert_close(p.detach(), before[name] - 0.5 * grad, msg=name)


def test_parameter_groups_split_attention_from_the_rest():
    model = build_model("dham", width=4, stride=2)
    attention, rest = parameter_groups(model, lr=1e-3, attention_lr=1e-2)
    assert attention["lr"] == 1e-2 and rest["lr"] == 1e-3
    assert {id(p) for p in attention["params"]} == {id(p) for p in model.attention.parameters()}
    everything = {id(p) for p in model.parameters()}
    assert {id(p) for p in rest["params"]} == everything - {id(p) for p in attention["params"]}
    # No attention network, or no separate rate: one group at lr.
    assert [g["lr"] for g in parameter_groups(build_model("cnn"), 1e-3, 1e-2)] == [1e-3]
    assert [g["lr"] for g in parameter_groups(model, 1e-3, None)] == [1e-3]


def test_evaluate_reports_box_metrics_only_for_attending_models(small_task):
    _, test = small_task
    torch.manual_seed(0)
    dham = evaluate(build_model("dham", width=4, norm=1), test)
    cnn = evaluate(build_model("cnn"), test)
    for key in ("iou", "centre_error", "coverage"):
        assert not math.isnan(dham[key])
        assert math.isnan(cnn[key])
    assert 0 <= dham["acc"] <= 1 and 0 <= dham["iou"] <= 1
    # With the L1 scale, a uniform start's glimpse spans the whole canvas (s ≈ 1):
    # it covers every digit, loosely.
    assert dham["coverage"] == pytest.approx(1.0)
    assert dham["iou"] < 0.3


def test_evaluate_accuracy_counts_correct_items(small_task):
    _, test = small_task

    class Constant(torch.nn.Module):
        """Predicts class 3 for every canvas."""

        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.zeros(1))

        def forward(self, canvas, true_box=None):
            from dham_lib.models import Prediction

            logits = torch.zeros(len(canvas), 10) + self.bias
            logits[:, 3] = 1.0
            return Prediction(logits, None, None)

    labels = np.asarray([test[i][1].item() for i in range(len(test))])
    assert evaluate(Constant(), test)["acc"] == pytest.approx(np.mean(labels == 3))


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"epochs": 0}, "epochs"),
        ({"lr": -1.0}, "lr"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_fit_arguments(small_task, kwargs, word):
    train, test = small_task
    with pytest.raises(ValueError, match=word):
        fit(build_model("cnn"), train, test, progress=False, **kwargs)


def test_bad_schedule_arguments(small_task):
    train, _ = small_task
    with pytest.raises(ValueError, match="batch_size"):
        EpochSchedule(train, batch_size=0)
    with pytest.raises(TypeError, match="dataset"):
        EpochSchedule([(1, 2, 3)])


def test_choose_device():
    assert choose_device("cpu") == torch.device("cpu")
    assert choose_device().type in ("cpu", "cuda", "mps")


def test_curriculum_goes_from_12_db_down_to_the_target_in_steps():
    # Four curriculum epochs to -3 dB: 12, 8.25, 4.5, 0.75, then -3 for good.
    schedule = [curriculum_snr(epoch, -3.0, 4) for epoch in range(1, 8)]
    assert schedule == pytest.approx([12.0, 8.25, 4.5, 0.75, -3.0, -3.0, -3.0])
    assert [curriculum_snr(e, 6.0, 0) for e in (1, 2)] == [6.0, 6.0]
    assert curriculum_snr(1, None, 4) is None  # a clean task has no curriculum
    assert curriculum_snr(1, 20.0, 4) == 20.0  # nor one already quieter than 12 dB


@pytest.mark.parametrize(("curriculum", "error"), [(-1, ValueError), (1.5, TypeError)])
def test_bad_curriculum(curriculum, error):
    with pytest.raises(error, match="curriculum_epochs"):
        curriculum_snr(1, 0.0, curriculum)


def test_fit_trains_at_the_curriculum_snr_and_tests_at_the_target(small_task, monkeypatch):
    train, test = small_task
    noisy_train, noisy_test = train.variant(snr_db=-3.0), test.variant(snr_db=-3.0)
    seen = []
    real = TranslatedMNIST.variant

    def recording(self, **changes):
        seen.append(changes.get("snr_db"))
        return real(self, **changes)

    monkeypatch.setattr(TranslatedMNIST, "variant", recording)
    model = build_model("oracle")
    fit(model, EpochSchedule(noisy_train, snr_curriculum=2), noisy_test, epochs=3, progress=False)
    assert seen == pytest.approx([12.0, 4.5, -3.0])
    assert noisy_test.snr_db == -3.0 and noisy_train.snr_db == -3.0


def test_canvas_curriculum_grows_from_120_px_to_the_target_in_steps():
    # Four epochs to 480 px: 120, 210, 300, 390, then 480 for good.
    assert [curriculum_canvas(e, 480, 4) for e in range(1, 7)] == [120, 210, 300, 390, 480, 480]
    assert [curriculum_canvas(e, 240, 0) for e in (1, 2)] == [240, 240]
    assert curriculum_canvas(1, 120, 4) == 120 and curriculum_canvas(1, 64, 4) == 64
    with pytest.raises(ValueError, match="canvas_curriculum_epochs"):
        curriculum_canvas(1, 240, -1)
    # From 60 px to 120 in four epochs: 60, 75, 90, 105, then 120.
    assert [curriculum_canvas(e, 120, 4, start=60) for e in range(1, 6)] == [60, 75, 90, 105, 120]
    with pytest.raises(ValueError, match="canvas_curriculum_start"):
        curriculum_canvas(1, 120, 4, start=0)


def test_fit_trains_on_the_curriculum_canvases_and_tests_on_the_target(small_task, monkeypatch):
    train, test = small_task
    images, labels = load_mnist("train", source="bundled", verbose=False)
    big_train = TranslatedMNIST(images[:64], labels[:64], canvas=200, scale=(0.15, 0.24), seed=0)
    big_test = TranslatedMNIST(images[64:96], labels[64:96], canvas=200, scale=(0.15, 0.24), seed=1)
    seen = []
    real = TranslatedMNIST.batch

    def recording(self, idx):
        seen.append(self.canvas_size[0])
        return real(self, idx)

    monkeypatch.setattr(TranslatedMNIST, "batch", recording)
    model = build_model("dham", width=2)
    fit(model, EpochSchedule(big_train, canvas_curriculum=2), big_test, epochs=3, progress=False)
    # Each epoch one training batch, then the test set, always at 200 px.
    assert seen == [120, 200, 160, 200, 200, 200]
    assert big_train.canvas_size == (200, 200)  # the set itself is untouched
    with pytest.raises(ValueError, match="square"):
        wide = TranslatedMNIST(images[:8], labels[:8], canvas=(130, 150), seed=0)
        EpochSchedule(wide, canvas_curriculum=1)


def test_fit_trains_on_a_dataloader_and_an_epoch_callback_stops_it(small_task):
    train, test = small_task
    loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True)
    seen = []

    def stop_after_two(state):
        seen.append((state.epoch, len(state.history["test_acc"])))
        return state.epoch == 2

    history = fit(
        build_model("oracle"), loader, test, epochs=5, progress=False, on_epoch_end=stop_after_two
    )
    assert seen == [(1, 1), (2, 2)] and history["epoch"] == [1, 2]
    assert history["train_loss"][1] < history["train_loss"][0]


def test_a_resumed_fit_ends_where_an_uninterrupted_one_does(small_task):
    train, test = small_task
    seed_everything(5)
    start = build_model("dham", width=2, classifier="original")  # dropout: the generator matters
    whole, first = copy.deepcopy(start), copy.deepcopy(start)
    fit(whole, train, test, epochs=2, seed=5, progress=False)
    saved = []
    fit(
        first,
        train,
        test,
        epochs=2,
        seed=5,
        progress=False,
        on_epoch_end=lambda state: saved.append(copy.deepcopy(state._asdict())) or True,
    )
    resumed = copy.deepcopy(start)
    resumed.load_state_dict(saved[0]["model"].state_dict())
    history = fit(resumed, train, test, epochs=2, seed=5, progress=False, resume=saved[0])
    assert history["epoch"] == [1, 2]
    for a, b in zip(whole.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_a_nan_loss_is_reported_by_fit_with_its_epoch(small_task):
    train, test = small_task
    model = build_model("oracle")
    with torch.no_grad():
        model.classifier.fc2.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="epoch 1"):
        fit(model, train, test, epochs=1, progress=False)
