"""The exercise checks of notebooks 01 to 07 whose reference would give the answer away.

The library call that computes a number asked for by hand *is* the answer, which a student
could copy from a check cell. Each check computes it out of sight and prints
:func:`~dham_lib.course.widgets.check_answers`' hints, never the reference.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from dham_lib.course.explorers import BILINEAR_DEMO_IMAGE
from dham_lib.course.inspect import glimpse_stats, stride_offsets
from dham_lib.course.widgets import check_answers, check_own_code
from dham_lib.data import TranslatedMNIST, noise_sigma, snr_db_of
from dham_lib.dham import DHAM
from dham_lib.metrics import box_coverage, box_iou
from dham_lib.models import AttentionNet, DHAMClassifier, build_model
from dham_lib.pmf import expected_norm, expected_position, pixel_axis, spatial_softmax
from dham_lib.sampling import bilinear_sample, glimpse_box, to_normalised
from dham_lib.study import results
from dham_lib.train import BATCH_SIZE, fit, seed_everything, train_step


def _compare(names, answers, references, atol: float = 1e-3) -> None:
    """:func:`check_answers` of the student's ``answers`` against ``references``, in order."""
    expected = {name: float(truth) for name, truth in zip(names, references, strict=True)}
    check_answers(dict(zip(names, answers, strict=True)), expected, atol)


def _demo_point(x: float, y: float) -> torch.Tensor:
    """Pixel ``(x, y)`` of :data:`BILINEAR_DEMO_IMAGE` as a sampling grid ``[1, 1, 1, 2]``."""
    height, width = BILINEAR_DEMO_IMAGE.shape
    return torch.tensor([to_normalised(x, width), to_normalised(y, height)]).reshape(1, 1, 1, 2)


def check_pmf_moments(pmf: torch.Tensor, tx, ty, s_l1, s_l2) -> None:
    """Notebook 01, exercise 3: the centre and the L1 and L2 scales of ``pmf`` ``[H, W]``."""
    pmf = pmf[None, None]
    truth = *expected_position(pmf), expected_norm(pmf, p=1), expected_norm(pmf, p=2)
    _compare(("tx", "ty", "s_L1", "s_L2"), (tx, ty, s_l1, s_l2), truth, 5e-3)


def check_temperature_and_shift(logits: torch.Tensor, temperature, shift) -> None:
    """Notebook 01, exercise 4: the temperature that gives ``logits`` ``[B, K, H, W]`` the
    PMF of ``3 * logits``, and the shift of ``t_x`` when 5 is added to every logit."""
    same = torch.allclose(
        spatial_softmax(logits, temperature), spatial_softmax(3 * logits), atol=1e-9
    )
    moved = expected_position(spatial_softmax(logits + 5))[0]
    shifted = (moved - expected_position(spatial_softmax(logits))[0]).item()
    names = ("same PMF as from 3 × logits (1: yes)", "shift")
    _compare(names, (float(same), shift), (1.0, shifted))


def check_disk_scale(disk_pmf: torch.Tensor, theory, measured) -> None:
    """Notebook 01, exercise 5: ``disk_pmf`` ``[1, 1, 201, 201]``, uniform within 0.6 of
    (0.1, 0.2); its L2 scale ``measured``, and the theory's ``theory`` (2R/3)."""
    if tuple(disk_pmf.shape) != (1, 1, 201, 201):
        raise AssertionError(f"disk_pmf must be [1, 1, 201, 201], got {tuple(disk_pmf.shape)}")
    if not torch.isclose(disk_pmf.sum().double(), torch.tensor(1.0, dtype=torch.float64)):
        raise AssertionError("disk_pmf must sum to 1")
    axis = pixel_axis(201, torch.zeros((), dtype=torch.float64))
    inside = (axis[None, :] - 0.1) ** 2 + (axis[:, None] - 0.2) ** 2 <= 0.6**2
    disk_tx, disk_ty = expected_position(disk_pmf)
    names = ("centre x", "centre y", "theory", "measured")
    truth = 0.1, 0.2, 2 / 3 * 0.6, expected_norm((inside / inside.sum())[None, None])
    _compare(names, (disk_tx.item(), disk_ty.item(), theory, measured), truth, 5e-3)


def grid_sample_axis_weights(coord: torch.Tensor, n: int) -> torch.Tensor:
    """Notebook 02, exercise 1's reference: the bilinear weights of ``n`` pixels at normalised
    ``coord`` ``[N]`` → ``[N, n]``, from PyTorch's ``grid_sample`` (zero padding), which knows
    nothing of the course: pixel j's weight is the sample of a one-row image that is 1 at j."""
    one_hots = torch.eye(n, dtype=coord.dtype)[None, :, None, :]  # [1, C=n, H=1, W=n]
    grid = torch.stack([coord, torch.zeros_like(coord)], dim=-1)[None, None]  # [1, 1, N, 2]
    samples = F.grid_sample(one_hots, grid, padding_mode="zeros", align_corners=True)
    return samples[0, :, 0, :].T


def check_bilinear_by_hand(answers: dict) -> None:
    """Notebook 02, exercise 2: the four weights and the sample of the demo image at pixel
    ``(2.5, 0.25)``, as a dict with the keys ``w_00``, ``w_01``, ``w_10``, ``w_11``, ``value``."""
    if not isinstance(answers, dict):
        raise TypeError(f"ex2 must be a dict, got {type(answers).__name__}")
    point = _demo_point(2.5, 0.25)
    along_x = grid_sample_axis_weights(point[0, 0, :, 0], 4)[0, 2:]  # columns 2 and 3
    along_y = grid_sample_axis_weights(point[0, 0, :, 1], 3)[0, :2]  # rows 0 and 1
    expected = {f"w_{r}{c}": (along_y[r] * along_x[c]).item() for r in (0, 1) for c in (0, 1)}
    expected["value"] = bilinear_sample(BILINEAR_DEMO_IMAGE[None, None], point).item()
    check_answers(answers, expected)


def check_slope_by_hand(per_pixel, per_normalised) -> None:
    """Notebook 02, exercise 4: ∂f/∂x of the demo image at pixel ``(1.5, 1.0)``, per pixel
    and per unit of the normalised coordinate (autograd, here)."""
    point = _demo_point(1.5, 1.0).requires_grad_(True)
    sample = bilinear_sample(BILINEAR_DEMO_IMAGE[None, None], point)
    slope = torch.autograd.grad(sample.sum(), point)[0][0, 0, 0, 0].item()  # per normalised x
    truth = slope * 2 / (BILINEAR_DEMO_IMAGE.shape[1] - 1), slope
    _compare(("per pixel", "per normalised unit"), (per_pixel, per_normalised), truth)


def check_dham_shapes(glimpses_shape, tx_shape) -> None:
    """Notebook 03, exercise 2: the shapes of the glimpses and of ``tx`` of a
    ``DHAM(output_size=(20, 30))`` on 5 RGB images of 64×96 and 3 maps of 16×24 logits."""
    images, logits = torch.rand(5, 3, 64, 96), torch.randn(5, 3, 16, 24)
    glimpses, params = DHAM(output_size=(20, 30))(images, logits)
    pairs = {
        "ex2_glimpses_shape": (glimpses_shape, glimpses.shape),
        "ex2_tx_shape": (tx_shape, params.tx.shape),
    }
    wrong = [name for name, (yours, truth) in pairs.items() if tuple(yours) != tuple(truth)]
    if wrong:
        print(f"Not yet, off: {', '.join(wrong)} (count the dimensions, then their sizes)")
        raise AssertionError(f"off: {wrong}")
    print("Correct.")


def check_logit_gradient(logits: torch.Tensor, grad: torch.Tensor) -> None:
    """Notebook 03, exercise 3: ``grad``, ∂(−t_x)/∂L of ``logits`` ``[1, 1, 5, 5]``, against
    autograd through DHAM; once right, which columns should rise."""
    if tuple(grad.shape) != (1, 1, 5, 5):
        raise AssertionError(f"ex3_grad must be [1, 1, 5, 5], got {tuple(grad.shape)}")
    probe = logits.detach().clone().requires_grad_(True)
    _, params = DHAM()(torch.rand(1, 1, 40, 40, dtype=probe.dtype), probe)
    (truth,) = torch.autograd.grad(-params.tx.sum(), probe)
    _compare(("largest error",), ((grad - truth).abs().max().item(),), (0.0,), atol=1e-9)
    rise = sorted(set(torch.nonzero(truth[0, 0] < 0)[:, 1].tolist()))
    print("negative (rise to move right) in the columns:", rise)


def check_price_of_area(descend, canvases, trajectory, prediction, s_free) -> None:
    """Notebook 03, exercise 4: the mean final half-side of the toy descent without the
    price on area (``descend(canvases, DHAM(), alpha=0.0)``, rerun here), and whether it is
    ``"larger"`` than with it (``trajectory``, ``[steps, canvases, 3]``)."""
    reference, _, _ = descend(canvases, DHAM(), alpha=0.0)
    s_priced, s_reference = trajectory[-1, :, 2].mean().item(), reference[-1, :, 2].mean().item()
    answers = s_free, float(prediction == "larger")
    _compare(("s (alpha = 0)", "larger"), answers, (s_reference, s_reference > s_priced))
    print(f"mean final s: alpha = 1: {s_priced:.3f}, alpha = 0: {s_reference:.3f}")


def check_box_overlap(intersection, iou, coverage) -> None:
    """Notebook 04, exercise 3: boxes ``a = (10, 20, 50, 60)`` and ``b = (30, 40, 70, 100)``:
    their intersection (square pixels), their IoU and the share of ``b`` inside ``a``."""
    box_a, box_b = torch.tensor([10.0, 20.0, 50.0, 60.0]), torch.tensor([30.0, 40.0, 70.0, 100.0])
    share = box_coverage(box_a, box_b).item()
    area_b = ((box_b[2] - box_b[0]) * (box_b[3] - box_b[1])).item()
    truth = share * area_b, box_iou(box_a, box_b), share
    _compare(("intersection", "IoU", "coverage"), (intersection, iou, coverage), truth)


def check_glimpse_box_by_hand(box, spacing) -> None:
    """Notebook 04, exercise 4: the pixel box of ``t_x = 0.2, t_y = -0.5, s = 0.25`` on a
    120×120 canvas, and the spacing of a 28×28 glimpse's samples there."""
    truth = glimpse_box(torch.tensor(0.2), torch.tensor(-0.5), torch.tensor(0.25), (120, 120))
    if len(box) != 4:
        raise AssertionError(f"ex4_box must hold 4 numbers (x0, y0, x1, y1), got {len(box)}")
    names = ("x0", "y0", "x1", "y1", "spacing")
    _compare(names, (*box, spacing), (*truth.tolist(), (truth[2] - truth[0]).item() / 27))


def _compare_training(answers: dict, truth: dict, mine, theirs) -> None:
    """:func:`check_answers` (within 1e-5) of ``answers`` against ``truth`` and, for each part
    of DHAM, of the largest difference between the two models' weights against 0."""
    for part in ("attention", "classifier"):
        pairs = zip(
            getattr(mine, part).parameters(), getattr(theirs, part).parameters(), strict=True
        )
        name = f"{part} weights: largest difference from the library's"
        answers[name], truth[name] = max((a - b).abs().max().item() for a, b in pairs), 0.0
    check_answers(answers, truth, atol=1e-5)


def check_one_step(one_step, train_set: TranslatedMNIST) -> None:
    """Notebook 04, exercise 1: two SGD steps of ``one_step(model, optimiser, canvases,
    labels)`` against two of ``dham_lib.train.train_step``, from the same small DHAM on the
    same 8-canvas batches of ``train_set``: the losses, then every weight."""
    check_own_code(one_step, ("train_step", "fit"))
    seed_everything(1)
    mine = build_model("dham", width=4, uniform_start=False)
    theirs = copy.deepcopy(mine)
    mine_opt = torch.optim.SGD(mine.parameters(), lr=0.1)
    theirs_opt = torch.optim.SGD(theirs.parameters(), lr=0.1)
    answers, truth = {}, {}
    for step, indices in enumerate((range(0, 8), range(8, 16)), start=1):
        canvases, labels, _ = train_set.batch(indices)
        answers[f"loss of step {step}"] = one_step(mine, mine_opt, canvases, labels)
        truth[f"loss of step {step}"] = train_step(theirs, theirs_opt, canvases, labels)[0]
    _compare_training(answers, truth, mine, theirs)


def check_training_loop(
    train_by_hand, trained, losses, start, train_set, val_set, epochs: int, seed: int
) -> None:
    """Notebook 04, exercise 2: ``trained``, a copy of the untrained ``start`` that
    ``train_by_hand`` trained for ``epochs`` with ``seed``, and its per-step ``losses``,
    against ``fit`` from the same weights on the same canvases: the number of steps, each
    epoch's mean loss (weighted by batch size, as ``fit`` records it) and every weight."""
    check_own_code(train_by_hand, ("fit", "train_step"))
    by_fit = copy.deepcopy(start)
    history = fit(by_fit, train_set, val_set, epochs=epochs, seed=seed, progress=False)
    sizes = [min(BATCH_SIZE, len(train_set) - i) for i in range(0, len(train_set), BATCH_SIZE)]
    answers, truth = {"steps": len(losses)}, {"steps": epochs * len(sizes)}
    if len(losses) == epochs * len(sizes):
        for epoch in range(epochs):
            step_losses = losses[epoch * len(sizes) : (epoch + 1) * len(sizes)]
            mean = sum(loss * size for loss, size in zip(step_losses, sizes, strict=True))
            answers[f"mean loss of epoch {epoch + 1}"] = mean / len(train_set)
            truth[f"mean loss of epoch {epoch + 1}"] = history["train_loss"][epoch]
    _compare_training(answers, truth, trained, by_fit)


def check_attention_weight_counts(width32, width8_k2, stride_matters) -> None:
    """Notebook 04, exercise 5: the weights of ``AttentionNet(width=32, k=1)`` and of
    ``AttentionNet(width=8, k=2)`` (one grey channel), and whether the stride changes them."""

    def count(**settings) -> int:
        return sum(p.numel() for p in AttentionNet(**settings).parameters())

    matters = count(width=32, stride=4) != count(width=32, stride=1)
    truth = count(width=32, k=1), count(width=8, k=2), matters
    names = ("width 32", "width 8, K 2", "stride matters")
    _compare(names, (width32, width8_k2, stride_matters), truth)


def check_snr_by_hand(sigma_at_6db, snr_of_original) -> None:
    """Notebook 05, exercise 1: for a digit of mean power 0.1, the noise σ of 6 dB and the SNR
    (dB) of the original's σ = 0.154, by ``TranslatedMNIST``'s own definitions."""
    truth = noise_sigma(0.1, 6.0), snr_db_of(0.1, 0.154)
    _compare(("sigma_at_6db", "snr_of_original"), (sigma_at_6db, snr_of_original), truth)


def check_rectangle_scale(xs: torch.Tensor, s1, ratio) -> None:
    """Notebook 06, exercise 1: ``s_1`` and ``s_1 / s_2`` of a PMF uniform over the rectangle
    of half-width 0.6 and half-height 0.2, measured on the fine map of axis ``xs`` ``[n]``
    (whose pixels add about half a pixel to ``s_1``)."""
    inside = (xs.abs() <= 0.2)[:, None] & (xs.abs() <= 0.6)[None, :]  # rows y, columns x
    pmf = (inside / inside.sum())[None, None]
    l1, l2 = expected_norm(pmf, 1).item(), expected_norm(pmf, 2).item()
    _compare(("s_1", "s_1 / s_2"), (s1, ratio), (l1, l1 / l2), atol=6e-3)
    print("between 1 and sqrt(2):", 1 <= ratio <= math.sqrt(2))


def check_stride_geometry(columns, offset, saving) -> None:
    """Notebook 06, exercise 2: on a 200×200 canvas at stride 8, the map's columns, the
    largest offset (pixels) between where DHAM reads a column and where it is, and the
    factor by which the convolutions' multiply-adds shrink against stride 1."""
    attention_map = AttentionNet(width=4, stride=8)(torch.zeros(1, 1, 200, 200))
    offsets = stride_offsets(200, 8).abs().max()
    truth = attention_map.shape[-1], offsets, 200 * 200 / attention_map[0, 0].numel()
    _compare(("columns", "largest offset", "saving"), (columns, offset, saving), truth)


def check_farthest_glimpse(
    model: DHAMClassifier, dataset: TranslatedMNIST, index, error, limit: int = 200
) -> None:
    """Notebook 06, exercise 3: among the ``limit`` canvases that
    ``glimpse_stats(model, dataset, limit=limit)`` looks at, is ``index`` the one whose
    glimpse centre lies farthest from its digit's, and ``error`` its centre error (px)?
    Prints "Correct." or which part is wrong (and in which direction) and raises
    ``AssertionError``; never the answer."""
    stats = glimpse_stats(model, dataset, limit=limit)
    errors = dict(zip(stats["index"].tolist(), stats["centre_error"].tolist(), strict=True))
    if not isinstance(index, int) or index not in errors:
        hint = f"{index!r} is not one of the {limit} canvases: read it from the 'index' column"
    elif errors[index] < max(errors.values()):
        hint = f"another of the {limit} canvases has its glimpse farther from its digit"
    elif abs(float(error) - errors[index]) > 1e-3:
        side = "high" if float(error) > errors[index] else "low"
        hint = f"the right canvas, but its centre error {float(error):.4g} px is too {side}"
    else:
        print("Correct.")
        return
    print(f"Not yet: {hint}.")
    raise AssertionError(hint)


def check_outcome_counts(rows: pd.DataFrame, width: int, read, misread, never_found) -> None:
    """Notebook 05's exercise: the noisy runs of ``width`` in ``rows`` counted by outcome."""
    runs = results.attention_outcomes(rows)
    runs = runs[(runs["width"] == width) & np.isfinite(runs["snr_db"])]
    truth = [int((runs["outcome"] == name).sum()) for name in results.OUTCOMES]
    _compare(results.OUTCOMES, (read, misread, never_found), truth, 0.5)


def check_wilson_by_hand(failures: int, runs: int, low, high) -> None:
    """Notebook 05's exercise: the 95% Wilson interval of ``failures`` in ``runs``."""
    _compare(("low", "high"), (low, high), results.wilson_interval(failures, runs), 5e-4)


def check_runs_needed(runs) -> None:
    """Notebook 05's exercise: the runs per group that tell a 20% from a 40% failure rate
    (two-sided, 5% level, 80% power; z = 1.96 and 0.84)."""
    truth = (1.96 + 0.84) ** 2 * (0.2 * 0.8 + 0.4 * 0.6) / 0.2**2
    _compare(("runs",), (runs,), (truth,), 0.5)


def check_validation_choice(runs: pd.DataFrame, seed, test_acc) -> None:
    """Notebook 06, exercise 4: of ``runs`` (one row per seed), the ``seed`` with the best
    ``val_acc`` and its ``test_acc`` (a fraction)."""
    best = runs.iloc[int(np.argmax(runs["val_acc"].to_numpy(dtype=float)))]
    _compare(("seed", "test accuracy"), (seed, test_acc), (best["seed"], best["test_acc"]))


def check_attention_outcomes(
    runs: pd.DataFrame, quarter_side: float, read, never_found, low, high
) -> None:
    """Notebook 06, exercise 5: of the DHAM runs in ``runs`` (with an oracle run of the same
    SNR and seed), how many ``read`` the digit and how many ``never_found`` it by
    :func:`~dham_lib.study.results.attention_outcomes` at ``quarter_side`` pixels, and the
    95% Wilson interval ``low``, ``high`` of the never-found rate."""
    outcome = results.attention_outcomes(runs, quarter_side)["outcome"]
    read_runs, never = int((outcome == "read").sum()), int((outcome == "never found").sum())
    truth = (read_runs, never, *results.wilson_interval(never, len(outcome)))
    _compare(("read", "never found", "low", "high"), (read, never_found, low, high), truth)


def check_difference_interval(a, b, difference, low, high) -> None:
    """Notebook 06, exercise 6: the mean of ``a`` minus the mean of ``b`` with its 95%
    interval (Welch's t, :func:`~dham_lib.study.results.difference_interval`)."""
    truth = results.difference_interval(a, b)
    _compare(("difference", "low", "high"), (difference, low, high), truth)
