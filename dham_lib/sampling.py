"""Bilinear sampling and glimpses, as in Spatial Transformer Networks (notebook 02_stn_sampling).

Coordinates are normalised: -1 and +1 are the centres of the first and last pixel
(PyTorch's ``align_corners=True``); x is the column axis, y the row axis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dham_lib import _checks
from dham_lib.pmf import pixel_axis

PADDING_MODES = ("zeros", "border", "reflection")


def to_pixels(coord: torch.Tensor, n: int) -> torch.Tensor:
    """Normalised coordinate → pixel coordinate on an axis of ``n`` pixels (any shape)."""
    return (coord + 1) / 2 * (n - 1)


def to_normalised(pixel: torch.Tensor, n: int) -> torch.Tensor:
    """Pixel coordinate → normalised coordinate on an axis of ``n`` pixels (any shape)."""
    return pixel / (n - 1) * 2 - 1


def _corner_weights(
    coord: torch.Tensor, n: int, padding_mode: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices and weights of the two neighbouring pixels on one axis.

    Returns ``(i0, i1, w0, w1)``, each shaped like ``coord``: the sample is
    ``w0·pixel[i0] + w1·pixel[i1]``. The weights are ``1 - f`` and ``f`` with ``f``
    the fractional part, so they stay correct at exact integers (``f = 0``), where
    the original code's ``ceil - x`` and ``x - floor`` weights both vanish.
    """
    x = to_pixels(coord, n)
    if padding_mode == "border":
        # Clamping first copies the edge pixel outwards; its gradient is zero outside.
        x = x.clamp(0, n - 1)
    i0 = torch.floor(x)
    frac = x - i0
    i0 = i0.long()
    i1 = i0 + 1
    w0, w1 = 1 - frac, frac
    if padding_mode == "zeros":
        # A neighbour outside the image contributes zero instead of a clamped pixel.
        w0 = w0 * ((i0 >= 0) & (i0 <= n - 1))
        w1 = w1 * ((i1 >= 0) & (i1 <= n - 1))
    return i0.clamp(0, n - 1), i1.clamp(0, n - 1), w0, w1


def bilinear_sample(
    image: torch.Tensor, grid: torch.Tensor, padding_mode: str = "border"
) -> torch.Tensor:
    """Sample ``image [B, C, H, W]`` at ``grid [B, h, w, 2]`` (x, y normalised) → ``[B, C, h, w]``.

    From scratch, as notebook 02 derives it: each output pixel is the sum of its four
    neighbouring input pixels with weights linear in the coordinates, so it is
    differentiable in image and grid. Matches ``F.grid_sample(image, grid,
    align_corners=True)`` for ``padding_mode`` "zeros" or "border".
    """
    _checks.tensor("image", image, ndim=4)
    _checks.tensor("grid", grid, ndim=4)
    _checks.option("padding_mode", padding_mode, ("zeros", "border"))
    if grid.shape[-1] != 2 or grid.shape[0] != image.shape[0]:
        raise ValueError(
            f"grid must have shape [B, h, w, 2] with B = {image.shape[0]} (the image's batch), "
            f"got {tuple(grid.shape)}"
        )
    b, c, h_in, w_in = image.shape
    _, h_out, w_out, _ = grid.shape
    x0, x1, wx0, wx1 = _corner_weights(grid[..., 0], w_in, padding_mode)
    y0, y1, wy0, wy1 = _corner_weights(grid[..., 1], h_in, padding_mode)
    flat = image.reshape(b, c, h_in * w_in)

    def gather(iy: torch.Tensor, ix: torch.Tensor) -> torch.Tensor:
        index = (iy * w_in + ix).reshape(b, 1, h_out * w_out).expand(b, c, h_out * w_out)
        return flat.gather(2, index).reshape(b, c, h_out, w_out)

    return (
        gather(y0, x0) * (wy0 * wx0)[:, None]
        + gather(y0, x1) * (wy0 * wx1)[:, None]
        + gather(y1, x0) * (wy1 * wx0)[:, None]
        + gather(y1, x1) * (wy1 * wx1)[:, None]
    )


def _check_params(tx: torch.Tensor, ty: torch.Tensor, s: torch.Tensor) -> None:
    for name, value in (("tx", tx), ("ty", ty), ("s", s)):
        _checks.tensor(name, value, ndim=2)
    if not tx.shape == ty.shape == s.shape:
        raise ValueError(
            f"tx, ty, s must have the same shape, got tx {tuple(tx.shape)}, "
            f"ty {tuple(ty.shape)}, s {tuple(s.shape)}"
        )


def glimpse_grid(
    tx: torch.Tensor, ty: torch.Tensor, s: torch.Tensor, size: tuple[int, int] = (28, 28)
) -> torch.Tensor:
    """Sampling grid of each glimpse: ``tx, ty, s [B, K]`` → ``[B, K, h, w, 2]`` (x, y).

    The glimpse's pixel (i, j) samples the image at ``(tx + s·u_j, ty + s·v_i)``
    with ``u = linspace(-1, 1, w)`` and ``v = linspace(-1, 1, h)``.
    """
    _check_params(tx, ty, s)
    return _grid(tx, ty, s, _checks.size_pair("size", size))


def _grid(
    tx: torch.Tensor, ty: torch.Tensor, s: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """The kernel of ``glimpse_grid``, which checked its arguments: ``[B, K, h, w, 2]``."""
    h, w = size
    u = pixel_axis(w, tx)
    v = pixel_axis(h, tx)
    x = tx[..., None, None] + s[..., None, None] * u[None, None, None, :]
    y = ty[..., None, None] + s[..., None, None] * v[None, None, :, None]
    return torch.stack(torch.broadcast_tensors(x, y), dim=-1)


def glimpse(
    image: torch.Tensor,
    tx: torch.Tensor,
    ty: torch.Tensor,
    s: torch.Tensor,
    size: tuple[int, int] = (28, 28),
    padding_mode: str = "border",
) -> torch.Tensor:
    """Crop a fixed-size glimpse per attention channel: ``[B, C, H, W]`` → ``[B, K, C, h, w]``.

    ``tx, ty`` (centre) and ``s`` (half-side) are ``[B, K]`` in normalised
    coordinates. All K grids go to one ``grid_sample`` call stacked along the
    output rows, so the image is never copied K times.
    """
    _checks.tensor("image", image, ndim=4)
    _check_params(tx, ty, s)
    _checks.option("padding_mode", padding_mode, PADDING_MODES)
    _checks.same_batch("tx, ty and s", tx, image, "image")
    _checks.same_dtype_device("tx, ty and s", tx, image, "image")
    return _sample_glimpses(image, tx, ty, s, _checks.size_pair("size", size), padding_mode)


def _sample_glimpses(
    image: torch.Tensor,
    tx: torch.Tensor,
    ty: torch.Tensor,
    s: torch.Tensor,
    size: tuple[int, int],
    padding_mode: str,
) -> torch.Tensor:
    """The kernel of ``glimpse``, which checked its arguments: ``[B, K, C, h, w]``."""
    grid = _grid(tx, ty, s, size)
    b, k, h, w, _ = grid.shape
    sampled = F.grid_sample(
        image,
        grid.reshape(b, k * h, w, 2),
        mode="bilinear",
        padding_mode=padding_mode,
        align_corners=True,
    )
    return sampled.reshape(b, image.shape[1], k, h, w).transpose(1, 2)


def glimpse_box(
    tx: torch.Tensor, ty: torch.Tensor, s: torch.Tensor, image_size: tuple[int, int]
) -> torch.Tensor:
    """The glimpse's box ``x0, y0, x1, y1`` in pixel coordinates: ``[...]`` x3 → ``[..., 4]``.

    ``x0 = (tx - s + 1)/2·(W - 1)`` and ``x1 = (tx + s + 1)/2·(W - 1)``, the centres
    of the first and last sampled columns; the same with ``ty`` and ``H`` for rows.
    """
    h, w = _checks.size_pair("image_size", image_size)
    return torch.stack(
        [to_pixels(tx - s, w), to_pixels(ty - s, h), to_pixels(tx + s, w), to_pixels(ty + s, h)],
        dim=-1,
    )


def box_to_params(
    box: torch.Tensor, image_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of ``glimpse_box``: ``box [..., 4]`` → ``(tx, ty, s)``, each ``[...]``.

    A glimpse is square in normalised units, so a box whose two sides differ in
    normalised units gets the larger half-side: the glimpse then covers the box.
    """
    _checks.tensor("box", box)
    if box.shape[-1] != 4:
        raise ValueError(f"box must have shape [..., 4], got {tuple(box.shape)}")
    return _box_to_params(box, _checks.size_pair("image_size", image_size))


def _box_to_params(
    box: torch.Tensor, image_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kernel of ``box_to_params``: ``box [..., 4]`` → ``(tx, ty, s)``, each ``[...]``."""
    h, w = image_size
    x0, y0 = to_normalised(box[..., 0], w), to_normalised(box[..., 1], h)
    x1, y1 = to_normalised(box[..., 2], w), to_normalised(box[..., 3], h)
    s = torch.maximum(x1 - x0, y1 - y0) / 2
    return (x0 + x1) / 2, (y0 + y1) / 2, s
