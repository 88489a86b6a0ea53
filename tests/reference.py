"""Reference implementations of the DHAM layer, written apart from ``dham_lib``.

The tests check ``dham_lib.dham.DHAM`` against them, and ``benchmarks/bench.py`` times
DHAM against them (``layer_speedup``). Both compute glimpses ``[B, K, C, h, w]`` of an
image ``[B, C, H, W]`` from attention logits ``[B, K, H', W']`` with the library's
conventions: ``align_corners=True`` coordinates, bilinear weights ``1 - f`` and ``f``,
border padding. ``loop_reference`` is a plain per-sample loop; ``reference_2018`` lays
the maths out as the 2018 code does, a stronger (faster) baseline.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _pixel_axis(n: int) -> torch.Tensor:
    """Normalised centres ``[n]`` of ``n`` pixels, -1 to 1 (0 for a single pixel)."""
    return torch.zeros(1) if n == 1 else torch.linspace(-1.0, 1.0, n)


def _axis_weights(coord: torch.Tensor, n: int):
    """Border-padded bilinear indices and weights along one axis (any shape).

    The normalised coordinate goes to pixels (centre of pixel i at i), is clamped
    into the image (border padding), and splits into the lower index and the
    fraction; the weights are ``1 - f`` and ``f``, so an exact integer keeps its
    full weight (the 2018 code's ``ceil - x`` / ``x - floor`` weights both vanish
    there).
    """
    pixel = ((coord + 1) / 2 * (n - 1)).clamp(0, n - 1)
    low = torch.floor(pixel).detach()
    frac = pixel - low
    low = low.long()
    high = (low + 1).clamp(max=n - 1)
    return low, high, 1 - frac, frac


def _batched_moments(logits: torch.Tensor):
    """``tx, ty, s`` (each ``[B, K]``) of ``logits [B, K, H, W]`` for all maps at once: the
    spatial softmax, the expected position, the expected L2 distance from the detached mean."""
    batch, k_maps, map_h, map_w = logits.shape
    pmf = torch.softmax(logits.reshape(batch, k_maps, -1), dim=-1).reshape(logits.shape)
    xs, ys = _pixel_axis(map_w), _pixel_axis(map_h)
    tx = (pmf.sum(-2) * xs).sum(-1)
    ty = (pmf.sum(-1) * ys).sum(-1)
    dx = (xs - tx[..., None]).detach()[..., None, :]
    dy = (ys - ty[..., None]).detach()[..., :, None]
    return tx, ty, (torch.sqrt(dx**2 + dy**2) * pmf).sum((-2, -1))


def loop_reference(
    image: torch.Tensor, logits: torch.Tensor, size: tuple[int, int] = (28, 28)
) -> torch.Tensor:
    """DHAM's maths as a plain per-sample Python loop: ``[B, C, H, W]``, ``[B, K, H', W']``
    → glimpses ``[B, K, C, h, w]``.

    For each sample and attention channel: softmax over the flattened map; ``tx`` and
    ``ty`` as explicit sums of coordinate times probability; ``s`` as the expected L2
    distance from the (detached) mean; then a hand-written bilinear gather that loops
    over the glimpse's output rows, four indexed reads per row. All torch ops, so
    autograd runs through it.
    """
    batch, _, height, width = image.shape
    _, k_maps, map_h, map_w = logits.shape
    out_h, out_w = size
    xs, ys = _pixel_axis(map_w), _pixel_axis(map_h)
    grid_x, grid_y = xs[None, :].expand(map_h, map_w), ys[:, None].expand(map_h, map_w)
    u, v = _pixel_axis(out_w), _pixel_axis(out_h)
    samples = []
    for b in range(batch):
        maps = []
        for k in range(k_maps):
            pmf = torch.softmax(logits[b, k].reshape(-1), dim=0).reshape(map_h, map_w)
            tx = (pmf * grid_x).sum()
            ty = (pmf * grid_y).sum()
            dist = torch.sqrt((grid_x - tx.detach()) ** 2 + (grid_y - ty.detach()) ** 2)
            s = (pmf * dist).sum()
            x0, x1, wx0, wx1 = _axis_weights(tx + s * u, width)  # the same for every row
            rows = []
            for i in range(out_h):
                y0, y1, wy0, wy1 = _axis_weights(ty + s * v[i], height)
                top = image[b][:, y0, x0] * wx0 + image[b][:, y0, x1] * wx1  # [C, w]
                bottom = image[b][:, y1, x0] * wx0 + image[b][:, y1, x1] * wx1
                rows.append(top * wy0 + bottom * wy1)
            maps.append(torch.stack(rows, dim=1))  # [C, h, w]
        samples.append(torch.stack(maps))  # [K, C, h, w]
    return torch.stack(samples)


def reference_2018(
    image: torch.Tensor, logits: torch.Tensor, size: tuple[int, int] = (28, 28)
) -> torch.Tensor:
    """DHAM's maths laid out as the 2018 code lays it out, with today's corrected conventions:
    ``[B, C, H, W]``, ``[B, K, H', W']`` → glimpses ``[B, K, C, h, w]``.

    The moments are batched tensor ops; the sampling grid is batched; the gather
    loops in Python over (sample, image channel) pairs and reads the whole
    ``[K, h, w]`` grid of indices at once, one loop per bilinear corner, as the
    original's ``gather2d`` does.
    """
    batch, channels, height, width = image.shape
    k_maps = logits.shape[1]
    out_h, out_w = size
    tx, ty, s = _batched_moments(logits)
    u = _pixel_axis(out_w).view(1, 1, 1, out_w)
    v = _pixel_axis(out_h).view(1, 1, out_h, 1)
    gx = (tx[..., None, None] + s[..., None, None] * u).expand(batch, k_maps, out_h, out_w)
    gy = (ty[..., None, None] + s[..., None, None] * v).expand(batch, k_maps, out_h, out_w)
    x0, x1, wx0, wx1 = _axis_weights(gx, width)
    y0, y1, wy0, wy1 = _axis_weights(gy, height)

    def gather(iy: torch.Tensor, ix: torch.Tensor) -> torch.Tensor:
        picked = [image[b, c][iy[b], ix[b]] for b in range(batch) for c in range(channels)]
        return torch.stack(picked).view(batch, channels, k_maps, out_h, out_w)

    out = (
        gather(y0, x0) * (wy0 * wx0)[:, None]
        + gather(y0, x1) * (wy0 * wx1)[:, None]
        + gather(y1, x0) * (wy1 * wx0)[:, None]
        + gather(y1, x1) * (wy1 * wx1)[:, None]
    )
    return out.transpose(1, 2)


def forward_backward(
    layer: Callable, image: torch.Tensor, logits: torch.Tensor, upstream: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward and backward pass of ``layer(image, logits)`` → glimpses ``[B, K, C, h, w]``,
    with ``upstream`` (the glimpses' shape) as the loss's gradient: (glimpses, logits' grad)."""
    leaf = logits.detach().requires_grad_(True)
    glimpses = layer(image, leaf)
    (glimpses * upstream).sum().backward()
    return glimpses.detach(), leaf.grad
