"""Spatial softmax and the two moments DHAM reads off it (notebook 01_pmf_math).

A logits map ``[B, K, H, W]`` becomes one probability mass function (PMF) per
attention channel. Its expected position is the glimpse's centre ``(tx, ty)``
and its expected distance from that centre is the glimpse's scale ``s``, all in
normalised coordinates: -1 and +1 are the centres of the first and last pixel.
"""

from __future__ import annotations

import torch

from dham_lib import _checks


def pixel_axis(n: int, like: torch.Tensor) -> torch.Tensor:
    """Normalised coordinates of the centres of ``n`` pixels: ``[n]`` from -1 to 1.

    A map one pixel wide has its only centre in the middle, at 0.
    """
    if n == 1:
        return torch.zeros(1, dtype=like.dtype, device=like.device)
    return torch.linspace(-1.0, 1.0, n, dtype=like.dtype, device=like.device)


def spatial_softmax(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Softmax over all pixels of each map: ``[B, K, H, W]`` → ``[B, K, H, W]``.

    Each ``[b, k]`` map is ``softmax(logits[b, k] / temperature)`` over its H·W
    pixels, so it sums to 1. A small temperature sharpens the PMF towards the
    argmax; a large one flattens it towards the uniform PMF.
    """
    _checks.tensor("logits", logits, ndim=4)
    return _softmax(logits, _checks.positive("temperature", temperature))


def _softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The kernel of ``spatial_softmax``, which checked its arguments: ``[B, K, H, W]`` → same."""
    b, k, h, w = logits.shape
    # softmax subtracts the maximum first, so logits of ±1e4 stay finite.
    flat = torch.softmax(logits.reshape(b, k, h * w) / temperature, dim=-1)
    return flat.reshape(b, k, h, w)


def _check_pmf(pmf: torch.Tensor) -> None:
    _checks.tensor("pmf", pmf, ndim=4)
    if (pmf < 0).any():
        raise ValueError("pmf must be non-negative, got negative entries")
    sums = pmf.sum(dim=(-2, -1))
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-3):
        raise ValueError(
            f"pmf must sum to 1 over each [b, k] map, got sums from {sums.min().item():.4g} "
            f"to {sums.max().item():.4g}; pass it through spatial_softmax first"
        )


def expected_position(pmf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected x and y coordinate under each PMF: ``[B, K, H, W]`` → ``(tx, ty)``, each ``[B, K]``.

    ``tx = Σ p(y, x) · x`` with x the normalised column coordinate, and likewise ``ty``.
    """
    _check_pmf(pmf)
    return _position(pmf)


def _position(pmf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel of ``expected_position``, for a valid PMF: ``[B, K, H, W]`` → two ``[B, K]``."""
    xs = pixel_axis(pmf.shape[-1], pmf)
    ys = pixel_axis(pmf.shape[-2], pmf)
    tx = (pmf.sum(dim=-2) * xs).sum(dim=-1)
    ty = (pmf.sum(dim=-1) * ys).sum(dim=-1)
    return tx, ty


def distance_map(pmf: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor, p: int = 2) -> torch.Tensor:
    """Distance of every pixel centre from ``(tx, ty)``: ``[B, K, H, W]``.

    ``p=2`` is the Euclidean distance, ``p=1`` the city-block distance; ``tx`` and
    ``ty`` are ``[B, K]``. The PMF only supplies the map's size, dtype and device.
    """
    xs = pixel_axis(pmf.shape[-1], pmf)
    ys = pixel_axis(pmf.shape[-2], pmf)
    dx = xs[None, None, None, :] - tx[..., None, None]
    dy = ys[None, None, :, None] - ty[..., None, None]
    if p == 1:
        return dx.abs() + dy.abs()
    return torch.sqrt(dx**2 + dy**2)


def expected_norm(pmf: torch.Tensor, p: int = 2) -> torch.Tensor:
    """Expected Lp distance from the expected position: ``[B, K, H, W]`` → ``s [B, K]``.

    The mean is detached, so the distances are constants and the scale's gradient
    flows through the PMF weights only: ``∂s/∂p(y, x) = d(y, x)``. Without the
    detach, moving the mean would also change every distance, coupling the
    glimpse's size to its position.
    """
    _checks.option("p", p, (1, 2))
    _check_pmf(pmf)
    return _norm(pmf, p)


def _norm(pmf: torch.Tensor, p: int) -> torch.Tensor:
    """The kernel of ``expected_norm``, for a valid PMF: ``[B, K, H, W]`` → ``[B, K]``."""
    tx, ty = _position(pmf)
    distances = distance_map(pmf, tx.detach(), ty.detach(), p=p)
    return (pmf * distances).sum(dim=(-2, -1))
