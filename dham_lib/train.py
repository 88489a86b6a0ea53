"""Training and evaluation loops for every model of the course (notebook 04): ``fit`` trains
with Adam on batches of ``(canvases [B, C, H, W], labels [B], boxes [B, 4])``, ``evaluate``
measures a model on one set of them; :class:`EpochSchedule` draws fresh canvases each epoch."""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from dham_lib import _checks
from dham_lib.data import TranslatedMNIST
from dham_lib.metrics import box_centre_error, box_coverage, box_iou

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
# What ``evaluate`` measures, in its order; the history has each as ``test_<key>``.
SCORE_KEYS = ("loss", "acc", "iou", "centre_error", "coverage")
HISTORY_KEYS = ("epoch", "seconds", "train_loss", "train_acc", *(f"test_{k}" for k in SCORE_KEYS))
# The course's recipe (data/results/README.md says how each was found): Adam at LR, the
# network that decides where to look at ATTENTION_LR, BATCH_SIZE canvases a step, noisy
# canvases from CURRICULUM_START_DB down to the target over CURRICULUM_EPOCHS, and a canvas
# curriculum from the side the recipe was found on.
LR = 1e-3
ATTENTION_LR = 1e-2
BATCH_SIZE = 64
CURRICULUM_EPOCHS = 4
CURRICULUM_START_DB = 12.0
CANVAS_CURRICULUM_START = 120


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """The device to train on: ``device`` if given, else CUDA, then Apple's MPS, then the CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("mps" if torch.backends.mps.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators, so a run can be repeated."""
    _checks.non_negative_int("seed", seed)
    # The library draws from explicit generators; these are for the students' code and dropout.
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002
    torch.manual_seed(seed)


def curriculum_snr(epoch: int, target_db: float | None, curriculum_epochs: int) -> float | None:
    """The SNR (dB) to train at in ``epoch`` (1-based): from ``CURRICULUM_START_DB`` (12 dB,
    where every attention width locked on in the sweep) linearly to ``target_db`` at epoch
    ``curriculum_epochs + 1``; a clean target, one of >= 12 dB, or no curriculum: the target."""
    _checks.positive_int("epoch", epoch)
    _checks.non_negative_int("curriculum_epochs", curriculum_epochs)
    if target_db is None or target_db >= CURRICULUM_START_DB or epoch > curriculum_epochs:
        return target_db
    return CURRICULUM_START_DB + (epoch - 1) / curriculum_epochs * (target_db - CURRICULUM_START_DB)


def curriculum_canvas(
    epoch: int, target: int, curriculum_epochs: int, start: int = CANVAS_CURRICULUM_START
) -> int:
    """The canvas side to train at in ``epoch`` (1-based): from ``start`` pixels linearly (to
    the nearest pixel) to ``target`` at epoch ``curriculum_epochs + 1``; a target <= ``start``
    or no curriculum: the target. Notebook 07: DHAM's first glimpse of a large canvas shows
    the digit too small to learn from; the zoom STN localises on 120 px only from 60."""
    for name, value in [("epoch", epoch), ("target", target), ("canvas_curriculum_start", start)]:
        _checks.positive_int(name, value)
    _checks.non_negative_int("canvas_curriculum_epochs", curriculum_epochs)
    if target <= start or epoch > curriculum_epochs:
        return target
    return round(start + (epoch - 1) / curriculum_epochs * (target - start))


@dataclasses.dataclass(frozen=True)
class EpochSchedule:
    """The course's per-epoch training data from one :class:`~dham_lib.data.TranslatedMNIST`.

    ``schedule(epoch)`` (1-based) yields the epoch's batches ``(canvases [B, 1, H, W],
    labels [B], boxes [B, 4])``: the same digits, placed and noised afresh (and shuffled)
    from ``seed * 10_000 + epoch``, at :func:`curriculum_snr` and :func:`curriculum_canvas`.
    ``len(schedule)`` is the batches per epoch."""

    dataset: TranslatedMNIST
    batch_size: int = BATCH_SIZE
    seed: int = 0
    snr_curriculum: int = CURRICULUM_EPOCHS
    canvas_curriculum: int = 0
    canvas_start: int = CANVAS_CURRICULUM_START

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, TranslatedMNIST):
            raise TypeError(f"dataset must be a TranslatedMNIST, got {type(self.dataset)}")
        _checks.positive_int("batch_size", self.batch_size)
        _checks.non_negative_int("seed", self.seed)
        curriculum_snr(1, self.dataset.snr_db, self.snr_curriculum)  # checks it now
        height, width = self.dataset.canvas_size
        curriculum_canvas(1, height, self.canvas_curriculum, self.canvas_start)
        if self.canvas_curriculum and height != width:
            raise ValueError(
                f"canvas_curriculum needs square canvases, got {self.dataset.canvas_size}"
            )

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __call__(self, epoch: int) -> Iterator[Batch]:
        epoch_seed, target = self.seed * 10_000 + epoch, self.dataset.canvas_size[0]
        side = curriculum_canvas(epoch, target, self.canvas_curriculum, self.canvas_start)
        snr_db = curriculum_snr(epoch, self.dataset.snr_db, self.snr_curriculum)
        canvas = side if side != target else None  # None: the dataset's own
        drawn = self.dataset.variant(seed=epoch_seed, snr_db=snr_db, canvas=canvas)
        return drawn.batches(self.batch_size, shuffle=True, seed=epoch_seed)


def _best_box_scores(boxes: torch.Tensor, true_boxes: torch.Tensor) -> dict[str, torch.Tensor]:
    """Box metrics of each item's best attention channel (highest IoU, the one that found the
    digit): ``[B, K, 4]``, ``[B, 4]`` → ``[B]`` each."""
    true_boxes = true_boxes[:, None]
    best = box_iou(boxes, true_boxes).argmax(dim=1, keepdim=True)
    metrics = {"iou": box_iou, "centre_error": box_centre_error, "coverage": box_coverage}
    return {key: metric(boxes, true_boxes).gather(1, best)[:, 0] for key, metric in metrics.items()}


@torch.no_grad()
def evaluate(model: nn.Module, data, batch_size: int = 256, device=None) -> dict[str, float]:
    """Mean ``SCORE_KEYS`` of ``model`` on ``data`` (a ``TranslatedMNIST`` or ``(canvases,
    labels, boxes)`` batches): ``loss``, ``acc`` (a fraction), and the box scores ``iou``,
    ``centre_error`` (pixels) and ``coverage`` (share of the true box in the glimpse box),
    ``nan`` for models without a box."""
    device = next(model.parameters()).device if device is None else torch.device(device)
    was_training = model.training
    model.eval()
    totals, count = {"loss": 0.0, "acc": 0.0}, 0  # the box scores only for a model with boxes
    if isinstance(data, TranslatedMNIST):
        data = data.batches(batch_size, shuffle=False)
    for canvases, labels, true_boxes in data:
        canvases, labels, true_boxes = canvases.to(device), labels.to(device), true_boxes.to(device)
        prediction = model(canvases, true_box=true_boxes)
        totals["loss"] += F.cross_entropy(prediction.logits, labels, reduction="sum").item()
        totals["acc"] += (prediction.logits.argmax(dim=1) == labels).sum().item()
        if prediction.boxes is not None:
            for key, value in _best_box_scores(prediction.boxes.float(), true_boxes).items():
                totals[key] = totals.get(key, 0.0) + value.sum().item()
        count += len(labels)
    model.train(was_training)
    if count == 0:
        raise ValueError("data must hold at least one batch, got none")
    return {key: totals.get(key, math.nan) / count for key in SCORE_KEYS}


def train_step(
    model: nn.Module, optimiser: torch.optim.Optimizer, canvases, labels, true_boxes=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of gradient descent on the cross-entropy of one batch (notebook 04 writes it
    out), plus the prediction's ``penalty`` in a variant that adds a loss: ``canvases
    [B, C, H, W]``, ``labels [B]``, ``true_boxes [B, 4]`` (the oracle's) → the detached loss
    and class scores ``[B, num_classes]``."""
    prediction = model(canvases, true_box=true_boxes)
    loss = F.cross_entropy(prediction.logits, labels)
    if prediction.penalty is not None:
        loss = loss + prediction.penalty
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return loss.detach(), prediction.logits.detach()


def parameter_groups(model: nn.Module, lr: float, attention_lr: float | None) -> list[dict]:
    """The optimiser's parameter groups: ``model.attention`` at ``attention_lr``, the rest at
    ``lr`` (one group without either); notebook 04 builds the same two by hand."""
    attention = getattr(model, "attention", None)
    if attention_lr is None or attention is None:
        return [{"params": list(model.parameters()), "lr": lr}]
    attention_lr = _checks.positive("attention_lr", attention_lr)
    own = list(attention.parameters())
    own_ids = {id(p) for p in own}
    rest = [p for p in model.parameters() if id(p) not in own_ids]
    return [{"params": own, "lr": attention_lr}, {"params": rest, "lr": lr}]


class EpochEnd(NamedTuple):
    """What ``fit`` hands ``on_epoch_end`` after each epoch (1-based); with ``rng``, PyTorch's
    global generator state, it resumes training exactly (``fit(resume=...)``)."""

    epoch: int
    history: dict[str, list]
    model: nn.Module
    optimiser: torch.optim.Optimizer
    rng: torch.Tensor


def _train_epoch(model, batches, optimiser, device, bar) -> tuple[float, float]:
    """One pass over ``batches``; returns the mean loss and accuracy over their items."""
    model.train()
    loss_sum, correct, count = 0.0, 0, 0
    for canvases, labels, true_boxes in batches:
        canvases, labels = canvases.to(device), labels.to(device)
        loss, logits = train_step(model, optimiser, canvases, labels, true_boxes.to(device))
        loss_sum += loss.item() * len(labels)
        correct += (logits.argmax(dim=1) == labels).sum().item()
        count += len(labels)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum / count:.3f}", acc=f"{correct / count:.3f}")
    if count == 0:
        raise ValueError("train_batches must hold at least one batch in every epoch, got none")
    return loss_sum / count, correct / count


def _resumed(resume, optimiser: torch.optim.Optimizer) -> tuple[dict[str, list], int]:
    """The history and the last finished epoch of ``resume`` (see ``fit``), whose optimiser
    state and generator state it restores; an empty history and 0 for ``resume=None``."""
    if resume is None:
        return {key: [] for key in HISTORY_KEYS}, 0
    resume = resume._asdict() if isinstance(resume, EpochEnd) else resume
    saved = resume["optimiser"]
    optimiser.load_state_dict(saved if isinstance(saved, dict) else saved.state_dict())
    torch.set_rng_state(resume["rng"])
    return {key: list(resume["history"][key]) for key in HISTORY_KEYS}, resume["epoch"]


def fit(
    model: nn.Module,
    train_batches,
    val_batches=None,
    epochs: int = 5,
    lr: float = LR,
    attention_lr: float | None = ATTENTION_LR,
    seed: int = 0,
    device=None,
    progress: bool = True,
    on_epoch_end: Callable[[EpochEnd], bool | None] | None = None,
    resume: EpochEnd | dict | None = None,
) -> dict[str, list]:
    """Train ``model`` with Adam on the cross-entropy alone (no term rewards the attention box);
    evaluate ``val_batches`` (a ``TranslatedMNIST`` or re-readable batches) after each epoch.

    ``train_batches``: ``(canvases, labels, boxes)`` batches (a list, a ``DataLoader``), a
    callable ``epoch -> batches`` (:class:`EpochSchedule`) or a ``TranslatedMNIST`` (gets
    ``EpochSchedule(train_batches, seed=seed)``). ``attention_lr``: ``model.attention``'s
    (None: ``lr``). ``on_epoch_end(EpochEnd)`` returning True stops training. ``resume``, an
    earlier ``EpochEnd`` (or a dict of its fields, the optimiser's as its ``state_dict``),
    continues after its epoch with its optimiser, generator and history, on a model holding
    its weights. A NaN or infinite loss raises ``FloatingPointError`` naming the epoch.
    Returns the history, lists keyed by ``HISTORY_KEYS`` (``seconds``: cumulative training
    time, evaluation excluded; ``test_*``: the scores on ``val_batches``).
    """
    _checks.positive_int("epochs", epochs)
    lr = _checks.positive("lr", lr)
    seed_everything(seed)
    if isinstance(train_batches, TranslatedMNIST):
        train_batches = EpochSchedule(train_batches, seed=seed)
    device = choose_device(device)
    model.to(device)
    optimiser = torch.optim.Adam(parameter_groups(model, lr, attention_lr))
    history, done = _resumed(resume, optimiser)
    total = (epochs - done) * len(train_batches) if hasattr(train_batches, "__len__") else None
    with tqdm(total=total, desc=type(model).__name__, disable=not progress) as bar:
        for epoch in range(done + 1, epochs + 1):
            start = time.perf_counter()
            batches = train_batches(epoch) if callable(train_batches) else train_batches
            train_loss, train_acc = _train_epoch(model, batches, optimiser, device, bar)
            if not math.isfinite(train_loss):
                raise FloatingPointError(
                    f"the training loss became {train_loss} in epoch {epoch}; "
                    "try a lower lr or attention_lr"
                )
            seconds = (history["seconds"] or [0.0])[-1] + time.perf_counter() - start
            scores = dict.fromkeys(SCORE_KEYS, math.nan)
            if val_batches is not None:
                scores = evaluate(model, val_batches, device=device)
            values = (epoch, seconds, train_loss, train_acc, *scores.values())
            for key, value in zip(HISTORY_KEYS, values, strict=True):
                history[key].append(value)
            state = EpochEnd(epoch, history, model, optimiser, torch.get_rng_state())
            if on_epoch_end is not None and on_epoch_end(state):
                break
    return history
