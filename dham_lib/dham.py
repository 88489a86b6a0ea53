"""The Differentiable Hard Attention Module (notebook 03_dham_layer).

logits ``[B, K, H', W']`` → spatial softmax → PMF → expected position ``(tx, ty)``
and expected distance ``s`` → a bilinear glimpse ``[B, K, C, h, w]`` of the image.
The logits map is taken to span the image (its corner pixel centres are the
image's), so it may have another resolution than the image.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from dham_lib import _checks
from dham_lib.pmf import _norm, _position, _softmax
from dham_lib.sampling import PADDING_MODES, _sample_glimpses


class AttentionParams(NamedTuple):
    """Where each glimpse looks, in normalised coordinates; each field is ``[B, K]``."""

    tx: torch.Tensor
    ty: torch.Tensor
    s: torch.Tensor


class DHAM(nn.Module):
    """Turn an attention logits map into a hard, differentiable crop of the image.

    ``forward(image [B, C, H, W], logits [B, K, H', W'])`` → ``(glimpses [B, K, C, h, w],
    AttentionParams)``. No weights: the network that makes the logits learns through it.
    ``forward`` checks shapes and dtypes but never reads a tensor's values (that would wait
    for the device); ``spatial_softmax`` and ``glimpse`` are its steps' checked forms.
    """

    def __init__(
        self,
        output_size: tuple[int, int] = (28, 28),
        norm: int = 2,
        temperature: float = 1.0,
        padding_mode: str = "border",
    ) -> None:
        super().__init__()
        self.output_size = _checks.size_pair("output_size", output_size)
        self.norm = _checks.option("norm", norm, (1, 2))
        self.temperature = _checks.positive("temperature", temperature)
        self.padding_mode = _checks.option("padding_mode", padding_mode, PADDING_MODES)

    def attention(self, logits: torch.Tensor) -> tuple[torch.Tensor, AttentionParams]:
        """The PMF ``[B, K, H', W']`` and the glimpse parameters read off it."""
        _checks.tensor("logits", logits, ndim=4, finite=False)
        pmf = _softmax(logits, self.temperature)
        tx, ty = _position(pmf)
        return pmf, AttentionParams(tx, ty, _norm(pmf, self.norm))

    def forward(
        self, image: torch.Tensor, logits: torch.Tensor
    ) -> tuple[torch.Tensor, AttentionParams]:
        _checks.tensor("image", image, ndim=4, finite=False)
        _, params = self.attention(logits)
        _checks.same_batch("logits", logits, image, "image")
        glimpses = _sample_glimpses(image, *params, self.output_size, self.padding_mode)
        return glimpses, params

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, norm={self.norm}, "
            f"temperature={self.temperature}, padding_mode={self.padding_mode!r}"
        )
