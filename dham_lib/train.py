"""Training and evaluation loops for every model of the course (notebook 04).

``fit`` trains on a :class:`~dham_lib.data.TranslatedMNIST` with Adam (``train_step`` on
each batch, the attention network in its own ``parameter_groups``) and a progress bar,
and returns a history of loss, accuracy and the mean IoU of the
attention box against the true digit box; ``evaluate`` measures one data set.
"""

from __future__ import annotations

import random
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from dham_lib import _checks
from dham_lib.metrics import box_centre_error, box_coverage, box_iou

HISTORY_KEYS = (
    "epoch",
    "seconds",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "test_iou",
    "test_centre_error",
    "test_coverage",
)


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """The device to train on: ``device`` if given, else CUDA, then Apple's MPS, then the CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators, so a run can be repeated."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    # The library draws from explicit generators; these global ones are seeded for
    # the students' own code in the notebooks.
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002
    torch.manual_seed(seed)


def _best_box_scores(boxes: torch.Tensor, true_boxes: torch.Tensor) -> dict[str, torch.Tensor]:
    """Box metrics of each item's best attention channel: ``[B, K, 4]``, ``[B, 4]`` → ``[B]`` each.

    With K > 1 glimpses the channel with the highest IoU is the one that found the digit.
    """
    iou = box_iou(boxes, true_boxes[:, None])
    best = iou.argmax(dim=1, keepdim=True)
    return {
        "iou": iou.gather(1, best)[:, 0],
        "centre_error": box_centre_error(boxes, true_boxes[:, None]).gather(1, best)[:, 0],
        "coverage": box_coverage(boxes, true_boxes[:, None]).gather(1, best)[:, 0],
    }


@torch.no_grad()
def evaluate(model: nn.Module, dataset, batch_size: int = 256, device=None) -> dict[str, float]:
    """Loss, accuracy, and box metrics of ``model`` on every item of ``dataset``.

    Returns ``loss``, ``acc`` (a fraction), and for models that attend the mean
    ``iou``, ``centre_error`` (pixels) and ``coverage`` (fraction of the true box
    inside the glimpse box); these three are ``nan`` for models without a box.
    """
    device = next(model.parameters()).device if device is None else torch.device(device)
    was_training = model.training
    model.eval()
    totals = {"loss": 0.0, "acc": 0.0, "iou": 0.0, "centre_error": 0.0, "coverage": 0.0}
    has_boxes, count = False, 0
    for canvases, labels, true_boxes in dataset.batches(batch_size, shuffle=False):
        canvases, labels = canvases.to(device), labels.to(device)
        true_boxes = true_boxes.to(device)
        prediction = model(canvases, true_box=true_boxes)
        totals["loss"] += F.cross_entropy(prediction.logits, labels, reduction="sum").item()
        totals["acc"] += (prediction.logits.argmax(dim=1) == labels).sum().item()
        if prediction.boxes is not None:
            has_boxes = True
            for key, value in _best_box_scores(prediction.boxes.float(), true_boxes).items():
                totals[key] += value.sum().item()
        count += len(labels)
    model.train(was_training)
    metrics = {key: value / count for key, value in totals.items()}
    if not has_boxes:
        metrics.update(iou=float("nan"), centre_error=float("nan"), coverage=float("nan"))
    return metrics


def train_step(
    model: nn.Module, optimiser: torch.optim.Optimizer, canvases, labels, true_boxes=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of gradient descent on one batch (the step notebook 04 writes out).

    ``canvases [B, C, H, W]`` and ``labels [B]`` (and the ``true_boxes [B, 4]`` that
    only the oracle reads) go forward, the cross-entropy of the class scores comes back
    through every weight, and ``optimiser`` takes one step. Returns the batch's loss
    (a detached scalar) and its class scores ``[B, num_classes]``.
    """
    prediction = model(canvases, true_box=true_boxes)
    loss = F.cross_entropy(prediction.logits, labels)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return loss.detach(), prediction.logits.detach()


def _train_epoch(model, dataset, optimiser, batch_size, seed, device, bar) -> tuple[float, float]:
    """One pass over ``dataset`` in a seeded random order; returns mean loss and accuracy."""
    model.train()
    loss_sum, correct, count = 0.0, 0, 0
    for canvases, labels, true_boxes in dataset.batches(batch_size, shuffle=True, seed=seed):
        canvases, labels = canvases.to(device), labels.to(device)
        loss, logits = train_step(model, optimiser, canvases, labels, true_boxes.to(device))
        loss_sum += loss.item() * len(labels)
        correct += (logits.argmax(dim=1) == labels).sum().item()
        count += len(labels)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum / count:.3f}", acc=f"{correct / count:.3f}")
    return loss_sum / count, correct / count


CURRICULUM_START_DB = 12.0


def curriculum_snr(epoch: int, target_db: float | None, curriculum_epochs: int) -> float | None:
    """The SNR (dB) to train at in ``epoch`` (1-based) of a clean-to-noisy curriculum.

    The first epoch is at ``CURRICULUM_START_DB`` (12 dB, where every attention
    width locked on in the sweep); the SNR then falls linearly in dB and reaches
    ``target_db`` at epoch ``curriculum_epochs + 1``, where it stays. A target that is
    clean (``None``) or at least 12 dB, or ``curriculum_epochs=0``, gives the target
    at every epoch.
    """
    _checks.positive_int("epoch", epoch)
    _checks.non_negative_int("curriculum_epochs", curriculum_epochs)
    if target_db is None or target_db >= CURRICULUM_START_DB or epoch > curriculum_epochs:
        return target_db
    done = (epoch - 1) / curriculum_epochs
    return CURRICULUM_START_DB + done * (target_db - CURRICULUM_START_DB)


# A canvas curriculum starts, by default, on canvases of the side the recipe was found on.
CANVAS_CURRICULUM_START = 120


def curriculum_canvas(
    epoch: int, target: int, curriculum_epochs: int, start: int = CANVAS_CURRICULUM_START
) -> int:
    """The canvas side to train at in ``epoch`` (1-based) of a small-to-large curriculum.

    The first epoch is at ``start`` pixels (120); the side then grows linearly, to the
    nearest pixel, and reaches ``target`` at epoch ``curriculum_epochs + 1``, where it
    stays. A target of at most ``start``, or ``curriculum_epochs=0``, gives the target at
    every epoch. Notebook 07: DHAM's uniform first glimpse on a large canvas shows the
    digit too small to learn from, and the zoom STN localises on 120 px only after
    starting at 60.
    """
    _checks.positive_int("epoch", epoch)
    _checks.positive_int("target", target)
    _checks.non_negative_int("canvas_curriculum_epochs", curriculum_epochs)
    _checks.positive_int("canvas_curriculum_start", start)
    if target <= start or epoch > curriculum_epochs:
        return target
    done = (epoch - 1) / curriculum_epochs
    return round(start + done * (target - start))


def parameter_groups(model: nn.Module, lr: float, attention_lr: float | None) -> list[dict]:
    """The optimiser's parameter groups: ``model.attention`` at ``attention_lr``, the rest
    at ``lr`` (one group at ``lr`` for a model without ``attention`` or with
    ``attention_lr=None``); notebook 04 builds the same two groups by hand."""
    attention = getattr(model, "attention", None)
    if attention_lr is None or attention is None:
        return [{"params": list(model.parameters()), "lr": lr}]
    attention_lr = _checks.positive("attention_lr", attention_lr)
    own = {id(p) for p in attention.parameters()}
    rest = [p for p in model.parameters() if id(p) not in own]
    return [
        {"params": list(attention.parameters()), "lr": attention_lr},
        {"params": rest, "lr": lr},
    ]


# The course's recipe, the defaults of `fit` and of `dham_lib.study.experiments.Cell` alike:
# Adam at LR, the network that decides where to look at ATTENTION_LR, BATCH_SIZE canvases a
# step, noisy canvases from 12 dB down over CURRICULUM_EPOCHS (data/results/README.md says
# how each was found).
LR = 1e-3
ATTENTION_LR = 1e-2
BATCH_SIZE = 64
CURRICULUM_EPOCHS = 4


def fit(
    model: nn.Module,
    train_set,
    test_set,
    epochs: int = 5,
    lr: float = LR,
    batch_size: int = BATCH_SIZE,
    seed: int = 0,
    device=None,
    progress: bool = True,
    fresh_canvases: bool = True,
    attention_lr: float | None = ATTENTION_LR,
    curriculum_epochs: int = CURRICULUM_EPOCHS,
    canvas_curriculum_epochs: int = 0,
    canvas_curriculum_start: int = CANVAS_CURRICULUM_START,
) -> dict[str, list]:
    """Train ``model`` with Adam and cross-entropy; evaluate on ``test_set`` after each epoch.

    The classifier's loss is the only loss: no term rewards the attention box.
    ``fresh_canvases`` draws new placements and noise of the training digits each
    epoch (``train_set.reseeded``); ``attention_lr`` gives the parameters of
    ``model.attention`` (where the model has one) their own learning rate (None: ``lr``);
    ``curriculum_epochs`` trains a noisy ``train_set`` from 12 dB down to its own SNR
    over that many epochs (``curriculum_snr``), the test set staying at its SNR;
    ``canvas_curriculum_epochs`` grows a square ``train_set``'s canvases from
    ``canvas_curriculum_start`` px (120) to their own side over that many epochs
    (``curriculum_canvas``; the same digits at the same pixel sizes), for a model that
    takes any canvas size.
    Returns the history, a dict of lists keyed by ``HISTORY_KEYS`` (one entry per
    epoch; ``seconds`` is the cumulative training time, evaluation excluded).
    """
    _checks.positive_int("epochs", epochs)
    _checks.positive_int("batch_size", batch_size)
    lr = _checks.positive("lr", lr)
    curriculum_snr(1, train_set.snr_db, curriculum_epochs)  # checks curriculum_epochs early
    side = train_set.canvas_size[0]
    curriculum_canvas(1, side, canvas_curriculum_epochs, canvas_curriculum_start)  # and these
    if canvas_curriculum_epochs and train_set.canvas_size != (side, side):
        raise ValueError(
            f"canvas_curriculum_epochs needs square canvases, got {train_set.canvas_size}"
        )
    seed_everything(seed)
    device = choose_device(device)
    model.to(device)
    optimiser = torch.optim.Adam(parameter_groups(model, lr, attention_lr))
    history = {key: [] for key in HISTORY_KEYS}
    steps = -(-len(train_set) // batch_size)
    seconds = 0.0
    with tqdm(total=epochs * steps, desc=type(model).__name__, disable=not progress) as bar:
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            epoch_seed = seed * 10_000 + epoch
            epoch_set = train_set.reseeded(epoch_seed) if fresh_canvases else train_set
            grown = curriculum_canvas(
                epoch, side, canvas_curriculum_epochs, canvas_curriculum_start
            )
            if grown != side:
                epoch_set = epoch_set.on_canvas(grown, epoch_seed)
            if curriculum_epochs:
                epoch_set = epoch_set.with_snr(
                    curriculum_snr(epoch, train_set.snr_db, curriculum_epochs)
                )
            train_loss, train_acc = _train_epoch(
                model, epoch_set, optimiser, batch_size, epoch_seed, device, bar
            )
            seconds += time.perf_counter() - start
            scores = evaluate(model, test_set, device=device)
            for key, value in (
                ("epoch", epoch),
                ("seconds", seconds),
                ("train_loss", train_loss),
                ("train_acc", train_acc),
                ("test_loss", scores["loss"]),
                ("test_acc", scores["acc"]),
                ("test_iou", scores["iou"]),
                ("test_centre_error", scores["centre_error"]),
                ("test_coverage", scores["coverage"]),
            ):
                history[key].append(value)
    return history
