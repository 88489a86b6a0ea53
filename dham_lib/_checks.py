"""Argument checks shared by the public functions: each raises ``TypeError`` (wrong kind or
dtype) or ``ValueError`` (wrong shape, value or option) naming the argument, the value it got
and what was expected (docs/conventions.md)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch


def tensor(name: str, value, ndim: int | None = None, finite: bool = True) -> torch.Tensor:
    """Check that ``value`` is a non-empty floating-point tensor with ``ndim`` dimensions,
    finite; ``finite=False`` (a ``forward``'s) reads no value, which would wait for the device."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if ndim is not None and value.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if value.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(value.shape)}")
    # A sum is one fast pass and is NaN or infinite whenever an entry is; only when
    # it is (or overflows) does the exact, slower elementwise test run.
    if finite and not torch.isfinite(value.sum()) and not torch.isfinite(value).all():
        raise ValueError(f"{name} must be finite, got NaN or infinite values")
    return value


def _number(name: str, value, in_range, expected: str) -> float:
    """Check that ``value`` is an int or a float (not a bool) for which ``in_range(value)``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not in_range(value):
        raise ValueError(f"{name} must be {expected}, got {value}")
    return float(value)


def positive(name: str, value) -> float:
    """Check that ``value`` is a finite real number greater than 0."""
    return _number(name, value, lambda v: 0 < v < math.inf, "a finite number > 0")


def fraction(name: str, value) -> float:
    """Check that ``value`` is a real number in [0, 1]."""
    return _number(name, value, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def int_at_least(name: str, value, least: int) -> int:
    """Check that ``value`` is an int >= ``least`` (a bool is not an int here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {least}, got {value!r} ({type(value).__name__})")
    if value < least:
        raise ValueError(f"{name} must be an int >= {least}, got {value}")
    return value


def positive_int(name: str, value) -> int:
    """Check that ``value`` is an int >= 1."""
    return int_at_least(name, value, 1)


def non_negative_int(name: str, value) -> int:
    """Check that ``value`` is an int >= 0."""
    return int_at_least(name, value, 0)


def option(name: str, value, allowed: Iterable):
    """Check that ``value`` is one of ``allowed``."""
    allowed = tuple(allowed)
    if isinstance(value, bool) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def size_pair(name: str, value) -> tuple[int, int]:
    """Check that ``value`` is a pair ``(h, w)`` of positive integers."""
    pair = isinstance(value, (tuple, list)) and len(value) == 2
    if not (pair and {type(v) for v in value} <= {int}):  # bool is not an int here
        raise TypeError(f"{name} must be a pair (h, w) of ints, got {value!r}")
    if min(value) < 2:
        raise ValueError(f"{name} must be at least (2, 2), got {tuple(value)}")
    return int(value[0]), int(value[1])


def same_batch(name: str, value, image: torch.Tensor, image_name: str) -> None:
    """Check that ``value`` has the batch size of ``image``, naming both if not."""
    if value.shape[0] != image.shape[0]:
        raise ValueError(
            f"{name} must have the {image_name}'s batch size {image.shape[0]}, "
            f"got shape {tuple(value.shape)}"
        )


def same_dtype_device(name: str, value, image: torch.Tensor, image_name: str) -> None:
    """Check that ``value`` has the dtype and device of ``image``, naming both if not."""
    if value.dtype != image.dtype or value.device != image.device:
        raise TypeError(
            f"{name} must match the {image_name}'s dtype and device ({image.dtype}, "
            f"{image.device}), got ({value.dtype}, {value.device})"
        )


def writable_folder(name: str, folder: Path) -> Path:
    """Create ``folder`` if missing, or raise ``PermissionError`` naming it if files cannot be
    written in it: before any work whose result would then have nowhere to go."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PermissionError(
            f"{name} {folder} cannot be created ({error.strerror}); choose a writable folder"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"{name} {folder} is not writable; choose a writable folder")
    return folder


def snr_db(name: str, value) -> float | None:
    """Check that ``value`` is None (a clean canvas) or a finite number of decibels."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be None or a number of dB, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite (or None for no noise), got {value}")
    return float(value)
