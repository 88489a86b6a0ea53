"""Training and evaluation loops for every model of the course (notebook 04).

``fit`` trains a model with Adam on any batches of ``(canvases [B, C, H, W], labels [B],
boxes [B, 4])``: a list, a ``torch.utils.data.DataLoader``, or a per-epoch schedule (a
callable ``epoch -> batches``) such as :class:`EpochSchedule`, the course's: fresh canvases
every epoch, and the SNR and canvas curricula as small pure functions. ``evaluate``
measures a model on one set of batches.
"""

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
# canvases from CURRICULUM_START_DB down to the target over CURRICULUM_EPOCHS.
LR = 1e-3
ATTENTION_LR = 1e-2
BATCH_SIZE = 64
CURRICULUM_EPOCHS = 4
CURRICULUM_START_DB = 12.0
# A canvas curriculum starts, by default, on canvases of the side the recipe was found on.
CANVAS_CURRICULUM_START = 120


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
    # the students' own code in the notebooks, and for dropout.
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002
    torch.manual_seed(seed)


def curriculum_snr(epoch: int, target_db: float | None, curriculum_epochs: int) -> float | None:
    """The SNR (dB) to train at in ``epoch`` (1-based) of a clean-to-noisy curriculum.

    From ``CURRICULUM_START_DB`` (12 dB, where every attention width locked on in the
    sweep) linearly in dB to ``target_db`` at epoch ``curriculum_epochs + 1`` and after.
    A clean target (``None``), one of at least 12 dB, or no curriculum: the target throughout.
    """
    _checks.positive_int("epoch", epoch)
    _checks.non_negative_int("curriculum_epochs", curriculum_epochs)
    if target_db is None or target_db >= CURRICULUM_START_DB or epoch > curriculum_epochs:
        return target_db
    done = (epoch - 1) / curriculum_epochs
    return CURRICULUM_START_DB + done * (target_db - CURRICULUM_START_DB)


def curriculum_canvas(
    epoch: int, target: int, curriculum_epochs: int, start: int = CANVAS_CURRICULUM_START
) -> int:
    """The canvas side to train at in ``epoch`` (1-based) of a small-to-large curriculum.

    From ``start`` pixels linearly (to the nearest pixel) to ``target`` at epoch
    ``curriculum_epochs + 1`` and after; a target of at most ``start``, or no curriculum:
    the target throughout. Notebook 07: DHAM's uniform first glimpse on a large canvas
    shows the digit too small to learn from, and the zoom STN localises on 120 px only
    after starting at 60.
    """
    _checks.positive_int("epoch", epoch)
    _checks.positive_int("target", target)
    _checks.non_negative_int("canvas_curriculum_epochs", curriculum_epochs)
    _checks.positive_int("canvas_curriculum_start", start)
    if target <= start or epoch > curriculum_epochs:
        return target
    done = (epoch - 1) / curriculum_epochs
    return round(start + done * (target - start))


@dataclasses.dataclass(frozen=True)
class EpochSchedule:
    """The course's per-epoch training data from one :class:`~dham_lib.data.TranslatedMNIST`.

    ``schedule(epoch)`` (1-based) yields the epoch's batches ``(canvases [B, 1, H, W],
    labels [B], boxes [B, 4])``: the same digits with fresh placements and noise drawn
    from ``seed * 10_000 + epoch`` (so the model cannot memorise fixed canvases), at the
    SNR of :func:`curriculum_snr` and the canvas side of :func:`curriculum_canvas`, in a
    random order drawn from the same seed. ``len(schedule)`` is the batches per epoch.
    """

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
        epoch_seed = self.seed * 10_000 + epoch
        side = curriculum_canvas(
            epoch, self.dataset.canvas_size[0], self.canvas_curriculum, self.canvas_start
        )
        drawn = self.dataset.variant(
            seed=epoch_seed,
            snr_db=curriculum_snr(epoch, self.dataset.snr_db, self.snr_curriculum),
            canvas=side if side != self.dataset.canvas_size[0] else None,
        )
        return drawn.batches(self.batch_size, shuffle=True, seed=epoch_seed)


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
def evaluate(model: nn.Module, data, batch_size: int = 256, device=None) -> dict[str, float]:
    """Mean ``SCORE_KEYS`` of ``model`` on ``data`` (a ``TranslatedMNIST`` or any iterable of
    ``(canvases, labels, boxes)`` batches): ``loss``, ``acc`` (a fraction), and the box
    scores ``iou``, ``centre_error`` (pixels) and ``coverage`` (share of the true box inside
    the glimpse box), ``nan`` for models without a box.
    """
    device = next(model.parameters()).device if device is None else torch.device(device)
    was_training = model.training
    model.eval()
    totals = dict.fromkeys(SCORE_KEYS, 0.0)
    has_boxes, count = False, 0
    if isinstance(data, TranslatedMNIST):
        data = data.batches(batch_size, shuffle=False)
    for canvases, labels, true_boxes in data:
        canvases, labels, true_boxes = canvases.to(device), labels.to(device), true_boxes.to(device)
        prediction = model(canvases, true_box=true_boxes)
        totals["loss"] += F.cross_entropy(prediction.logits, labels, reduction="sum").item()
        totals["acc"] += (prediction.logits.argmax(dim=1) == labels).sum().item()
        if prediction.boxes is not None:
            has_boxes = True
            for key, value in _best_box_scores(prediction.boxes.float(), true_boxes).items():
                totals[key] += value.sum().item()
        count += len(labels)
    model.train(was_training)
    if count == 0:
        raise ValueError("data must hold at least one batch, got none")
    metrics = {key: value / count for key, value in totals.items()}
    if not has_boxes:
        metrics.update(iou=math.nan, centre_error=math.nan, coverage=math.nan)
    return metrics


def train_step(
    model: nn.Module, optimiser: torch.optim.Optimizer, canvases, labels, true_boxes=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of gradient descent on one batch (the step notebook 04 writes out).

    ``canvases [B, C, H, W]``, ``labels [B]`` (and ``true_boxes [B, 4]``, which only the
    oracle reads) go forward, the cross-entropy comes back through every weight, and
    ``optimiser`` steps. Returns the detached loss and class scores ``[B, num_classes]``.
    """
    prediction = model(canvases, true_box=true_boxes)
    loss = F.cross_entropy(prediction.logits, labels)
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
    own = {id(p) for p in attention.parameters()}
    rest = [p for p in model.parameters() if id(p) not in own]
    return [
        {"params": list(attention.parameters()), "lr": attention_lr},
        {"params": rest, "lr": lr},
    ]


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
    is_optimiser = isinstance(saved, torch.optim.Optimizer)
    optimiser.load_state_dict(saved.state_dict() if is_optimiser else saved)
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
    """Train ``model`` with Adam on the cross-entropy; evaluate ``val_batches`` after each epoch.

    The classifier's loss is the only loss: no term rewards the attention box.
    ``train_batches``: ``(canvases, labels, boxes)`` batches re-read every epoch (a list, a
    ``DataLoader``), a callable ``epoch -> batches`` (:class:`EpochSchedule`), or a
    ``TranslatedMNIST`` (gets ``EpochSchedule(train_batches, seed=seed)``). ``val_batches``:
    a ``TranslatedMNIST`` or re-readable batches (None: no evaluation). ``attention_lr`` is
    ``model.attention``'s own learning rate (None: ``lr``). Training stops when
    ``on_epoch_end(EpochEnd)`` returns True. ``resume``, an earlier call's ``EpochEnd`` (or
    a dict of its fields but the model, the optimiser's as its ``state_dict``), continues
    after its epoch with its optimiser, generator and history, on a model holding its
    weights. A NaN or infinite loss raises ``FloatingPointError`` naming the epoch. Returns
    the history, lists keyed by ``HISTORY_KEYS`` (``seconds``: cumulative training time,
    evaluation excluded; ``test_*``: the scores on ``val_batches``).
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
    steps = len(train_batches) if hasattr(train_batches, "__len__") else None
    total = None if steps is None else (epochs - done) * steps
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
            seconds = (history["seconds"][-1] if history["seconds"] else 0.0) + (
                time.perf_counter() - start
            )
            scores = (
                evaluate(model, val_batches, device=device)
                if val_batches is not None
                else dict.fromkeys(SCORE_KEYS, math.nan)
            )
            values = (epoch, seconds, train_loss, train_acc, *scores.values())
            for key, value in zip(HISTORY_KEYS, values, strict=True):
                history[key].append(value)
            state = EpochEnd(epoch, history, model, optimiser, torch.get_rng_state())
            if on_epoch_end is not None and on_epoch_end(state):
                break
    return history
