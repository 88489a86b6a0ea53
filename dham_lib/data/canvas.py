"""Digits drawn on large canvases with their true boxes: ``TranslatedMNIST``, and the
literature's cluttered translated MNIST (``cluttered_mnist``: RAM, DRAW, STN; DeepMind's
``mnist-cluttered``). Boxes are in the pixel coordinates of docs/conventions.md."""

from __future__ import annotations

import copy
import operator
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from dham_lib import _checks

# "mnist_cluttered" is the literature's: native digits, 8×8 distractors added, then clipped.
BACKGROUNDS = ("noise", "clutter", "mnist_cluttered")
DIGIT_SIDE = 28
PIECE = 8
# Where pieces are cut: the course's from the 20×20 box MNIST centres its digits in (most then
# hold ink), the literature's from anywhere in the 28×28 digit.
CROP_RANGE = {"noise": (0, 0), "clutter": (4, 16), "mnist_cluttered": (0, DIGIT_SIDE - PIECE)}
CLUTTER_PER_120 = 8  # the course's pieces per 120×120 canvas, scaled with area
LITERATURE_DISTRACTORS = {60: 4, 100: 8}  # the literature's per canvas side
_UNCHANGED = object()  # variant()'s default snr_db, where None means a clean canvas


def noise_sigma(digit_power, snr_db: float):
    """The noise σ that puts a digit of mean power ``mean(d²)`` (a number or an array) at
    ``snr_db``: ``sqrt(mean(d²) / 10^(snr_db / 10))`` (docs/conventions.md, notebook 05)."""
    return np.sqrt(digit_power / 10 ** (snr_db / 10))


def snr_db_of(digit_power, sigma):
    """The SNR in dB of a digit of mean power ``mean(d²)`` under noise of std ``sigma``:
    ``10·log10(mean(d²) / σ²)``, the inverse of :func:`noise_sigma` (notebook 05)."""
    return 10 * np.log10(digit_power / np.square(sigma))


def cluttered_mnist(images, labels, canvas: int = 60, seed: int = 0) -> TranslatedMNIST:
    """The literature's cluttered translated MNIST on ``canvas`` = 60 or 100 px: each digit at
    its native 28×28 placed uniformly at random, 4 (60 px) or 8 (100 px) distractors (8×8 crops
    at random places in random other digits of ``images``, put at random places), all added,
    then clipped to [0, 1]. Boxes are the digits' 28×28 squares. Training draws fresh
    canvases each epoch (``variant(seed=...)``); test canvases stay fixed."""
    native = DIGIT_SIDE / _checks.option("canvas", canvas, tuple(LITERATURE_DISTRACTORS))
    return TranslatedMNIST(
        images, labels, canvas, scale=(native, native), background="mnist_cluttered", seed=seed
    )


class TranslatedMNIST(Dataset):
    """MNIST digits resized and placed at random on a larger canvas, with their true boxes.

    Item ``i`` is ``images[i]`` resized (bilinear, antialiased) to a square of side
    ``S = round(u · min(H, W))``, ``u ~ U(scale)``, at a random integer position fully inside
    the canvas, intensities in [0, 1], on a background:

    * clean (``snr_db=None``) or Gaussian noise N(0, σ²), σ set per canvas so that
      ``10·log10(mean(d²) / σ²) == snr_db`` for the resized digit ``d`` over its S×S square;
      stroke pixels (``d > 0``) replace the noise; nothing is clipped;
    * ``background="clutter"``: ``n_clutter`` (default 8 per 120×120, scaled with area) 8×8
      pieces of other digits (overlaps keep the brighter pixel), under the digit's strokes;
    * ``background="mnist_cluttered"``, no noise: ``n_clutter`` (default
      ``LITERATURE_DISTRACTORS``) 8×8 crops of other digits, added to each other and to the
      digit, then clipped to [0, 1] (:func:`cluttered_mnist`).

    ``images``: ``[N, 28, 28]`` uint8 (0–255) or float in [0, 1], ``labels``: ``[N]`` integers,
    each a NumPy array or a tensor; ``canvas``: ``H = W`` or ``(H, W)``, each at least 28;
    ``scale``: ``(a, b)``, ``0 < a <= b <= 1``. Every random choice is drawn per item at
    construction from ``default_rng(seed)``, so an item is the same in any batch; geometry and
    noise come before the clutter, so sets with one seed put each digit at the same box.

    Attributes: ``canvas_size`` ``(H, W)``; ``side`` int64 ``[N]``, each digit's S; ``sigma``
    float64 ``[N]``, each noise σ (0 when clean); ``n_clutter`` (0 without clutter); ``seed``.
    Items are ``(canvas float32 [1, H, W], label int64 [], box float32 [4])``, the box
    ``[x0, y0, x1, y1]`` the centres of the S×S square's first and last column and row.
    """

    def __init__(
        self,
        images,
        labels,
        canvas=120,
        scale=(0.24, 0.40),
        snr_db=None,
        background="noise",
        seed=0,
        *,
        n_clutter=None,
    ):
        self._images = _check_images(images)
        if not isinstance(labels, (np.ndarray, torch.Tensor)):
            raise TypeError(f"labels must be a NumPy array or a torch.Tensor, got {type(labels)}")
        self._labels = torch.from_numpy(_integers("labels", labels, len(self._images)))
        self.canvas_size = _check_canvas(canvas)
        self.scale = _check_scale(scale, min(self.canvas_size))
        self.background = _checks.option("background", background, BACKGROUNDS)
        self.snr_db = _checks.snr_db("snr_db", snr_db)
        self.n_clutter = _check_n_clutter(n_clutter, background, self.canvas_size, len(self))
        self.seed = _check_seed(seed)
        self._draw_parameters()

    def variant(self, seed=None, snr_db=_UNCHANGED, canvas=None) -> TranslatedMNIST:
        """The same digits and settings, with what the arguments name changed: ``seed`` draws
        every random choice anew (fresh canvases each epoch; None: the dataset's seed);
        ``snr_db`` (None: clean) changes only σ of the same canvases and noise pattern (a noise
        curriculum); ``canvas`` (int or ``(H, W)``) keeps the digits' pixel sizes and the
        clutter's pieces per area (a canvas curriculum)."""
        other = copy.copy(self)
        if snr_db is not _UNCHANGED:
            other.snr_db = _checks.snr_db("snr_db", snr_db)
        if canvas is not None:
            other.canvas_size = _check_canvas(canvas)
            ratio = min(self.canvas_size) / min(other.canvas_size)
            other.scale = _check_scale(tuple(s * ratio for s in self.scale), min(other.canvas_size))
            area = np.prod(other.canvas_size) / np.prod(self.canvas_size)
            other.n_clutter = max(1, round(self.n_clutter * area)) if self.n_clutter else 0
        other.seed = self.seed if seed is None else _check_seed(seed)
        other._draw_parameters()
        return other

    def _draw_parameters(self) -> None:
        """Draw every item's side, position, noise seed and clutter pieces from ``self.seed``;
        set each item's noise σ."""
        n, (height, width) = len(self), self.canvas_size
        rng = np.random.default_rng(self.seed)
        u = rng.uniform(self.scale[0], self.scale[1], size=n)
        self.side = np.rint(u * min(height, width)).astype(np.int64)
        self._left = rng.integers(0, width - self.side + 1)
        self._top = rng.integers(0, height - self.side + 1)
        self._noise_seed = rng.integers(0, 2**63 - 1, size=n)
        pieces = (n, self.n_clutter)
        # An offset in 1..n-1 from the item's own index never picks the item's own digit.
        self._clutter_src = (np.arange(n)[:, None] + rng.integers(1, max(n, 2), size=pieces)) % n
        low, high = CROP_RANGE[self.background]
        self._clutter_crop = rng.integers(low, high + 1, size=(*pieces, 2))
        self._clutter_y = rng.integers(0, height - PIECE + 1, size=pieces)
        self._clutter_x = rng.integers(0, width - PIECE + 1, size=pieces)
        self.sigma = np.zeros(n) if self.snr_db is None else self._noise_sigma()

    def _noise_sigma(self) -> np.ndarray:
        """σ of every item, float64 ``[N]``, from the power ``mean(d²)`` of its resized digit."""
        if self.background == "mnist_cluttered":  # the literature's canvases have no noise
            raise ValueError(f"snr_db must be None for mnist_cluttered canvases, got {self.snr_db}")
        power = np.empty(len(self))
        for rows, tiles in self._tile_groups(np.arange(len(self))):
            power[rows] = tiles.double().square().mean(dim=(1, 2)).numpy()
        if (power == 0).any():
            raise ValueError(
                f"images[{np.flatnonzero(power == 0)[0]}] is blank (all zeros), so "
                f"snr_db={self.snr_db} cannot set its noise level; expected ink in every digit"
            )
        return noise_sigma(power, self.snr_db)

    @property
    def labels(self) -> np.ndarray:
        """The label of every item, int64 ``[N]``."""
        return self._labels.numpy().copy()

    def __len__(self) -> int:
        """Number of items, one per source digit."""
        return len(self._images)

    def __getitem__(self, index) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Item ``index`` as ``(canvas [1, H, W], label [], box [4])``, made by ``batch``."""
        canvases, labels, boxes = self.batch([operator.index(index)])
        return canvases[0], labels[0], boxes[0]

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Items ``indices`` ``[B]`` (ints in a sequence, array or tensor; negative ones count
        from the end) as ``(canvases float32 [B, 1, H, W], labels int64 [B], boxes [B, 4])``."""
        idx, n = _integers("indices", indices), len(self)
        if idx.min() < -n or idx.max() >= n:
            raise IndexError(f"indices must lie in [-{n}, {n}), got {idx.min()}..{idx.max()}")
        idx = np.where(idx < 0, idx + n, idx)
        canvases = torch.zeros(len(idx), 1, *self.canvas_size)
        if self.snr_db is not None:
            self._add_noise(canvases, idx)
        if self.n_clutter:
            self._draw_clutter(canvases, idx)
        self._draw_digits(canvases, idx)
        if self.background == "mnist_cluttered":
            canvases.clamp_(0.0, 1.0)
        left, top, side = self._left[idx], self._top[idx], self.side[idx]
        boxes = np.stack([left, top, left + side - 1, top + side - 1], axis=1)
        return canvases, self._labels[torch.from_numpy(idx)], torch.from_numpy(boxes).float()

    def batches(
        self, batch_size: int, shuffle: bool = False, seed: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Every item in batches of ``batch_size`` (the last may be smaller) from ``batch``, in
        the order of a permutation drawn from ``seed`` if ``shuffle``."""
        _checks.positive_int("batch_size", batch_size)
        if not isinstance(shuffle, bool):
            raise TypeError(f"shuffle must be a bool, got {type(shuffle).__name__}")
        n = len(self)
        order = np.random.default_rng(_check_seed(seed)).permutation(n) if shuffle else np.arange(n)
        # A nested generator, so that bad arguments raise here and not at the first next().
        return (self.batch(order[i : i + batch_size]) for i in range(0, n, batch_size))

    def _tile_groups(self, idx: np.ndarray) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Yield ``(rows, tiles)``: positions in ``idx`` of up to 4,096 digits of one side S (a
        bound on memory for the 60,000-digit set), those digits resized float32 ``[G, S, S]``."""
        sides = self.side[idx]
        for side in np.unique(sides).tolist():
            rows = np.flatnonzero(sides == side)
            for chunk in np.array_split(rows, -(-len(rows) // 4096)):
                tiles = self._images[torch.from_numpy(idx[chunk])]
                tiles = tiles.float() / 255 if tiles.dtype == torch.uint8 else tiles
                if side != DIGIT_SIDE:  # at the native size, the digit's own pixels
                    tiles = F.interpolate(
                        tiles[:, None], size=(side, side), mode="bilinear", antialias=True
                    )[:, 0].clamp_(0.0, 1.0)  # the weights are >= 0: only rounding leaves [0, 1]
                yield chunk, tiles

    def _add_noise(self, canvases: torch.Tensor, idx: np.ndarray) -> None:
        """Fill ``canvases`` ``[B, 1, H, W]`` in place with each item's own N(0, σ²) noise."""
        generator = torch.Generator()
        # One reseed per item keeps an item's noise independent of the batch around it.
        for canvas, noise_seed in zip(canvases, self._noise_seed[idx].tolist(), strict=True):
            generator.manual_seed(noise_seed)
            canvas.normal_(generator=generator)
        canvases.mul_(torch.from_numpy(self.sigma[idx]).float().view(-1, 1, 1, 1))

    def _draw_clutter(self, canvases: torch.Tensor, idx: np.ndarray) -> None:
        """Draw each item's 8×8 pieces into ``canvases`` ``[B, 1, H, W]`` in place: the
        brightest one's ink replacing what is there, or (``"mnist_cluttered"``) all added."""
        crop = self._clutter_crop[idx]  # [B, P, 2]: (row, column) in the source digit
        cut = _squares(self._clutter_src[idx], crop[..., 0], crop[..., 1], PIECE, DIGIT_SIDE)
        pieces = self._images.view(-1)[cut]  # [B·P, 8, 8]
        pieces = pieces.float() / 255 if pieces.dtype == torch.uint8 else pieces
        rows = np.repeat(np.arange(len(idx)), self.n_clutter)
        where = _squares(rows, self._clutter_y[idx], self._clutter_x[idx], PIECE, *self.canvas_size)
        added = self.background == "mnist_cluttered"
        layer = torch.zeros(canvases.numel())
        layer.scatter_reduce_(0, where.flatten(), pieces.flatten(), "sum" if added else "amax")
        flat = canvases.view(-1)
        flat.copy_(flat + layer if added else torch.where(layer > 0, layer, flat))

    def _draw_digits(self, canvases: torch.Tensor, idx: np.ndarray) -> None:
        """Draw each item's resized digit into ``canvases`` ``[B, 1, H, W]`` in place: its
        stroke pixels replace what is there, or (``"mnist_cluttered"``) add to it."""
        flat = canvases.view(-1)
        for rows, tiles in self._tile_groups(idx):
            top, left = self._top[idx[rows]], self._left[idx[rows]]
            where = _squares(rows, top, left, tiles.shape[-1], *self.canvas_size)
            if self.background == "mnist_cluttered":
                flat[where] += tiles
            else:
                flat[where] = torch.where(tiles > 0, tiles, flat[where])


def _squares(rows, top, left, side: int, height: int, width: int | None = None) -> torch.Tensor:
    """Flat indices ``[G, side, side]`` into a stack of ``[H, W]`` images (``W = H`` if left
    out) of the squares at ``top``, ``left`` of images ``rows`` (arrays of G entries each)."""
    rows, top, left = (torch.as_tensor(a).reshape(-1, 1, 1) for a in (rows, top, left))
    offsets = torch.arange(side)
    return (rows * height + top + offsets[:, None]) * (width or height) + left + offsets


def _integers(name: str, value, n: int | None = None) -> np.ndarray:
    """``value`` (a sequence, NumPy array or tensor) as a non-empty int64 ``[n]`` array."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    value = np.asarray(value)
    if value.ndim != 1 or value.size == 0 or (n is not None and value.size != n):
        expected = "a non-empty 1-D sequence" if n is None else f"shape [N] = ({n},) as images"
        raise ValueError(f"{name} must have {expected}, got shape {value.shape}")
    if value.dtype == np.bool_ or not np.issubdtype(value.dtype, np.integer):
        raise TypeError(f"{name} must be integers, got dtype {value.dtype}")
    return value.astype(np.int64)


def _check_images(images) -> torch.Tensor:
    """``images`` ``[N, 28, 28]`` as a private uint8 or float32 tensor, values checked."""
    if not isinstance(images, (np.ndarray, torch.Tensor)):
        raise TypeError(f"images must be a NumPy array or a torch.Tensor, got {type(images)}")
    if isinstance(images, np.ndarray) and images.dtype != np.uint8 and images.dtype.kind != "f":
        raise TypeError(f"images must be uint8 or floating point, got dtype {images.dtype}")
    tensor = torch.as_tensor(images).detach().cpu().clone()
    if tensor.dtype != torch.uint8:  # a float in [0, 1]
        tensor = _checks.tensor("images", tensor, ndim=3).float()
        if tensor.min() < 0 or tensor.max() > 1:
            low, high = tensor.min().item(), tensor.max().item()
            raise ValueError(f"float images must lie in [0, 1], got values {low:.4g}..{high:.4g}")
    if tensor.dim() != 3 or tuple(tensor.shape[1:]) != (DIGIT_SIDE, DIGIT_SIDE) or not len(tensor):
        raise ValueError(f"images must have shape [N >= 1, 28, 28], got {tuple(tensor.shape)}")
    return tensor


def _check_canvas(canvas) -> tuple[int, int]:
    """``canvas`` (an int side or an ``(H, W)`` pair) as ``(H, W)``, each at least 28."""
    size = _checks.size_pair("canvas", (canvas, canvas) if isinstance(canvas, int) else canvas)
    if min(size) < DIGIT_SIDE:
        raise ValueError(f"canvas must be at least 28 pixels on each side, got {canvas!r}")
    return size


def _check_scale(scale, short_side: int) -> tuple[float, float]:
    """``scale`` ``(a, b)`` with ``0 < a <= b <= 1``, giving digits of at least 2 pixels."""
    if not (isinstance(scale, (tuple, list)) and len(scale) == 2):
        raise TypeError(f"scale must be a pair (min, max) of numbers, got {scale!r}")
    low, high = (_checks.fraction("scale", value) for value in scale)
    if not 0 < low <= high or round(low * short_side) < 2:
        raise ValueError(
            f"scale must satisfy 0 < min <= max <= 1 with digits of at least 2 px on a "
            f"{short_side}-px canvas side, got {scale!r}"
        )
    return low, high


def _check_seed(seed) -> int:
    """``seed``: a non-negative int (NumPy's integers too)."""
    return _checks.non_negative_int("seed", int(seed) if isinstance(seed, np.integer) else seed)


def _check_n_clutter(n_clutter, background: str, canvas: tuple[int, int], n: int) -> int:
    """Pieces per canvas: 0 for noise, else ``n_clutter`` or the background's default."""
    if background == "noise":
        if n_clutter is not None:
            raise ValueError(f"n_clutter applies to clutter backgrounds, not noise: {n_clutter!r}")
        return 0
    if n < 2:
        raise ValueError(f"images must hold 2 digits or more for {background}, got {n}")
    if n_clutter is not None:
        return _checks.non_negative_int("n_clutter", n_clutter)
    if background == "clutter":
        return max(1, round(CLUTTER_PER_120 * canvas[0] * canvas[1] / 120**2))
    if canvas not in [(side, side) for side in LITERATURE_DISTRACTORS]:
        raise ValueError(
            f"n_clutter must be given for background='mnist_cluttered' on {canvas}: the "
            f"literature's counts are for {LITERATURE_DISTRACTORS} px only"
        )
    return LITERATURE_DISTRACTORS[canvas[0]]
