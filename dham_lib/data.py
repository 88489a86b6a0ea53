"""MNIST for the course: the bundled subset, the full set, and digits placed on a large canvas.

``load_mnist`` returns plain NumPy arrays from one of two sources:

* ``"bundled"``: the 5,000 digits (500 per class) in ``data/mnist5k.npz``, split 4,000/1,000
  and checked against ``BUNDLED_SHA256``; works offline.
* ``"full"``: the 70,000 MNIST digits, downloaded once by torchvision into a cache folder whose
  files are md5-checked before they are trusted.

Each has a fixed validation split carved from its training digits, for every choice of recipe,
architecture or epochs (``"test"`` is for final numbers only): the bundled set's last 50
training digits of each class (3,500 train, 500 val), the full set's last 5,000 of 60,000.

``"auto"`` uses the full set when it is cached or downloadable and the bundled subset otherwise.

``TranslatedMNIST`` resizes each digit to a random fraction of a canvas side, puts it at a random
position on a clean, noisy or cluttered canvas and returns the true box of the placed digit in
the pixel coordinates of docs/conventions.md (the centre of pixel ``i`` is at ``i``).
"""

from __future__ import annotations

import copy
import hashlib
import http.client
import io
import math
import operator
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from dham_lib import _checks

BUNDLED_FILE = "mnist5k.npz"
BUNDLED_SHA256 = "4facb8b9d7f3eff1f80b7b87a5146cae4da87df7ab8b5335f426ded757fc1595"
SPLITS = ("train", "val", "test", "train+val")
# Validation digits: per class from the bundled set, the last twelfth of the full one.
VAL_PER_CLASS = 50
FULL_VAL_FRACTION = 12
SOURCES = ("bundled", "full", "auto")
BACKGROUNDS = ("noise", "clutter")
DIGIT_SIDE = 28
CLUTTER_PIECE = 8
# Pieces are cut from the 20×20 centre box that MNIST normalises its digits into, so that
# most of them hold some ink instead of an empty margin.
CLUTTER_CROP = (4, DIGIT_SIDE - 4 - CLUTTER_PIECE)
# Clutter pieces per 120×120 canvas (as in cluttered MNIST); other canvases scale with area.
CLUTTER_PER_120 = 8
# The errors a failed download can surface as: torchvision wraps URL errors in RuntimeError,
# but socket timeouts, broken connections and truncated gzip streams come through as they are.
_DOWNLOAD_ERRORS = (RuntimeError, OSError, EOFError, http.client.HTTPException)
# What reading a damaged, already extracted idx file raises inside torchvision.
_READ_ERRORS = (*_DOWNLOAD_ERRORS, AssertionError, ValueError)
# variant()'s default for snr_db, where None already means a clean canvas.
_UNCHANGED = object()


# --------------------------------------------------------------------------- load_mnist


def data_dir() -> Path:
    """The folder holding ``mnist5k.npz``: ``$DHAM_DATA_DIR`` if set, else the repo's data/."""
    override = os.environ.get("DHAM_DATA_DIR")
    if override:
        return Path(override).expanduser()
    return Path(__file__).resolve().parent.parent / "data"


def cache_dir_default() -> Path:
    """Where the full MNIST is cached: ``$DHAM_CACHE_DIR`` if set, else ``~/.cache/dham_lib``."""
    override = os.environ.get("DHAM_CACHE_DIR")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "dham_lib"


def load_mnist(
    split: str,
    source: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    timeout: float = 10.0,
    verbose: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Load an MNIST split as ``(images uint8 [N, 28, 28], labels int64 [N])``.

    Args:
        split: ``"train"``, ``"val"`` (carved from the training digits, see above),
            ``"test"``, or ``"train+val"``: every training digit, as the runs made before the
            validation split (or a final fit once every choice is made) train on.
        source: ``"bundled"`` (the 3,500/500/1,000 subset in data/, offline), ``"full"`` (the
            55,000/5,000/10,000 MNIST, downloaded once into ``cache_dir``) or ``"auto"`` (full
            when cached or downloadable, else bundled).
        cache_dir: folder for the full MNIST; default ``$DHAM_CACHE_DIR`` or
            ``~/.cache/dham_lib``. The files live in ``<cache_dir>/MNIST/raw/``.
        timeout: seconds a network operation may stall before the download gives up.
        verbose: print one line naming the source used. Problems (a corrupted cache file, a
            fallback from full to bundled) are printed even when ``verbose`` is False.

    Raises:
        RuntimeError: ``source="full"`` and the full MNIST is neither cached nor downloadable,
            or the bundled file does not match ``BUNDLED_SHA256``.
    """
    _checks.option("split", split, SPLITS)
    _checks.option("source", source, SOURCES)
    timeout = _checks.positive("timeout", timeout)
    if not isinstance(verbose, bool):
        raise TypeError(f"verbose must be a bool, got {type(verbose).__name__}")
    root = _check_cache_dir(cache_dir)

    if source == "bundled":
        return _report(_load_bundled(split), f"bundled MNIST subset {split}", verbose)
    try:
        arrays = _load_full(split, root, timeout)
    except _FullUnavailable as err:
        if source == "full":
            raise RuntimeError(
                f"Could not download the full MNIST into {err.raw_dir} ({err.reason}); "
                f'{err.hint}, or use source="bundled" '
                "for the 5,000-digit subset that ships with the course."
            ) from None
        images, labels = _load_bundled(split)
        print(
            f"load_mnist: full MNIST unavailable ({err.reason}); falling back to the bundled "
            f"5,000-digit subset: {split} ({len(labels):,} digits)"
        )
        return images, labels
    return _report(arrays, f"full MNIST {split}", verbose)


def _report(
    arrays: tuple[np.ndarray, np.ndarray], what: str, verbose: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Print the one-line summary (no paths: it ends up in notebook outputs) and pass through."""
    if verbose:
        print(f"load_mnist: {what} ({len(arrays[1]):,} digits)")
    return arrays


def _check_cache_dir(cache_dir) -> Path:
    """Resolve ``cache_dir`` (None, str or path-like) to a Path."""
    if cache_dir is None:
        return cache_dir_default()
    if not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"cache_dir must be None, a str or a path, got {type(cache_dir).__name__}")
    return Path(cache_dir).expanduser()


def _load_bundled(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one split of the bundled subset after checking the file's sha256."""
    path = data_dir() / BUNDLED_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"the bundled MNIST subset {path} is missing; restore data/{BUNDLED_FILE} from the "
            "repository or set DHAM_DATA_DIR to the folder that holds it"
        )
    # Hash and parse the same bytes, so the file cannot change between the check and the load.
    raw = path.read_bytes()
    actual = hashlib.sha256(raw).hexdigest()
    if actual != BUNDLED_SHA256:
        raise RuntimeError(
            f"the bundled MNIST subset {path} is corrupted: its sha256 is {actual}, "
            f"expected {BUNDLED_SHA256}; restore it from the repository"
        )
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        if split == "test":
            return npz["test_images"], npz["test_labels"]
        images, labels = npz["train_images"], npz["train_labels"]
    held_out = np.zeros(len(labels), dtype=bool)
    for digit in np.unique(labels):
        held_out[np.flatnonzero(labels == digit)[-VAL_PER_CLASS:]] = True
    return _carve(images, labels, split, held_out)


def _carve(images, labels, split: str, held_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The training digits outside (``"train"``) or inside (``"val"``) the ``held_out`` mask,
    or all of them in their file's order (``"train+val"``)."""
    if split == "train+val":
        return images, labels
    keep = held_out if split == "val" else ~held_out
    return images[keep], labels[keep]


NETWORK_HINT = "check the network connection and try again"
READ_ONLY_HINT = "pass cache_dir= or set DHAM_CACHE_DIR to a writable folder"


class _FullUnavailable(Exception):
    """The full MNIST could not be downloaded: a one-line reason, the cache folder, a hint."""

    def __init__(self, reason: str, raw_dir: Path, hint: str = NETWORK_HINT):
        super().__init__(reason)
        self.reason = reason
        self.raw_dir = raw_dir
        self.hint = hint


def _load_full(split: str, root: Path, timeout: float) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of the full MNIST from the cache under ``root``, downloading what is missing.

    Raises ``_FullUnavailable`` when the download fails.
    """
    from torchvision.datasets import MNIST  # deferred: only this path needs torchvision

    raw_dir = root / "MNIST" / "raw"
    try:
        _drop_unverified(raw_dir, MNIST.resources)  # what it leaves on disk is verified
        if not all((raw_dir / name).is_file() for name, _ in MNIST.resources):
            # A read-only cache is fine once complete; one that needs a download is not.
            _checks.writable_folder("the cache folder", raw_dir)
        dataset = _torchvision_mnist(MNIST, root, split, timeout)
    except PermissionError as err:
        reason = "the cache folder is not writable" if err.filename is None else str(err)
        raise _FullUnavailable(reason, raw_dir, READ_ONLY_HINT) from err
    except _READ_ERRORS as err:
        if not _all_verified(raw_dir, MNIST.resources):
            raise _FullUnavailable(_short_reason(err), raw_dir) from err
        # The archives are intact, so an extracted copy is damaged: rebuild them from the archives.
        for name, _ in MNIST.resources:
            (raw_dir / name.removesuffix(".gz")).unlink(missing_ok=True)
        dataset = _torchvision_mnist(MNIST, root, split, timeout)
    images, labels = dataset.data.numpy().astype(np.uint8), dataset.targets.numpy().astype(np.int64)
    if split == "test":
        return images, labels
    held_out = np.arange(len(labels)) >= len(labels) - len(labels) // FULL_VAL_FRACTION
    return _carve(images, labels, split, held_out)


def _torchvision_mnist(mnist_class, root: Path, split: str, timeout: float):
    """``MNIST(root, train=..., download=True)`` with a socket timeout, restored afterwards."""
    previous = socket.getdefaulttimeout()
    # urllib inherits the default timeout, so a dead network fails instead of hanging.
    socket.setdefaulttimeout(timeout)
    try:
        return mnist_class(root=str(root), train=split != "test", download=True)
    finally:
        socket.setdefaulttimeout(previous)


def _md5(path: Path) -> str:
    """Hex md5 of the file at ``path``, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _drop_unverified(raw_dir: Path, resources) -> None:
    """Delete cached archives whose md5 is wrong, and extracted files lacking a good archive.

    torchvision only checks an archive's md5 right after downloading it and then trusts the
    extracted file by its name, so without this a damaged cache would be used as it is.
    Deleting a file makes torchvision download (or extract) it again.
    """
    for name, md5 in resources:
        archive = raw_dir / name
        if archive.is_file() and _md5(archive) != md5:
            print(
                f"load_mnist: cached {name} failed its md5 check; deleting it to download it again"
            )
            archive.unlink()
        if not archive.is_file():
            (raw_dir / name.removesuffix(".gz")).unlink(missing_ok=True)


def _all_verified(raw_dir: Path, resources) -> bool:
    """True when every archive in ``resources`` is cached with the right md5."""
    return all(
        (raw_dir / name).is_file() and _md5(raw_dir / name) == md5 for name, md5 in resources
    )


def _short_reason(err: BaseException) -> str:
    """One line out of a possibly multi-line error: its last line, at most 160 characters.

    torchvision lists every mirror it tried; the last line holds the last mirror's error.
    """
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[-1] if lines else type(err).__name__
    # "<urlopen error [Errno 111] Connection refused>" → "[Errno 111] Connection refused"
    if text.startswith("<urlopen error ") and text.endswith(">"):
        text = text[len("<urlopen error ") : -1]
    return text if len(text) <= 160 else text[:157] + "..."


def noise_sigma(digit_power, snr_db: float):
    """The noise σ that puts a digit of mean power ``mean(d²)`` over its square at
    ``snr_db``: ``sqrt(mean(d²) / 10^(snr_db / 10))`` (docs/conventions.md, notebook 05).
    ``digit_power`` is a number or a NumPy array of them."""
    return np.sqrt(digit_power / 10 ** (snr_db / 10))


def snr_db_of(digit_power, sigma):
    """The SNR in dB of a digit of mean power ``mean(d²)`` under noise of std ``sigma``:
    ``10·log10(mean(d²) / σ²)``, the inverse of :func:`noise_sigma` (notebook 05)."""
    return 10 * np.log10(digit_power / np.square(sigma))


def balanced_order(labels) -> np.ndarray:
    """Indices of ``labels`` ``[N]`` that take the classes in turn: the first item of each
    class, then the second of each, and so on, so that any first n of them are as evenly
    spread over the classes as the counts allow. The bundled test digits come clumped by
    class (data/README.md); every subset of them is drawn in this order."""
    labels = np.asarray(labels)
    rank = np.empty(len(labels), dtype=np.int64)
    for digit in np.unique(labels):
        members = np.flatnonzero(labels == digit)
        rank[members] = np.arange(len(members))
    return np.lexsort((labels, rank))  # by rank first, then by class


# --------------------------------------------------------------------------- TranslatedMNIST


class TranslatedMNIST(Dataset):
    """MNIST digits resized and placed at random on a larger canvas, with their true boxes.

    Each item ``i`` uses digit ``images[i]``: it is resized (bilinear, antialiased) to a square
    of side ``S = round(u · min(H, W))`` with ``u ~ U(scale)`` and placed at a random integer
    position fully inside the canvas. Intensities of the digit are in [0, 1].

    Backgrounds:
        * ``snr_db=None``: clean (zeros) under the digit;
        * ``snr_db`` given: Gaussian noise N(0, σ²) over the whole canvas, with σ set per canvas
          so that ``10·log10(mean(d²) / σ²) == snr_db`` for the resized digit ``d`` over its
          S×S square. Stroke pixels (``d > 0``) replace the noise; nothing is clipped.
        * ``background="clutter"``: ``n_clutter`` random 8×8 pieces of other digits of the set
          scattered over the canvas (overlaps keep the brighter pixel), their ink replacing the
          noise if there is any, and the digit drawn over them.

    Every random choice (side, position, noise seed, clutter pieces) is drawn per item at
    construction from ``np.random.default_rng(seed)``, so an item is the same whichever batch
    it is generated in. Geometry and noise are drawn before the clutter, so a clean, a noisy
    and a cluttered dataset with one seed place each digit at the same box.

    Args:
        images: ``[N, 28, 28]`` uint8 (0–255) or float in [0, 1], NumPy array or tensor.
        labels: ``[N]`` integers, NumPy array or tensor.
        canvas: canvas side ``H = W`` (int) or ``(H, W)``, each at least 28.
        scale: ``(a, b)`` with ``0 < a <= b <= 1``: the range of digit side / canvas side.
        snr_db: signal-to-noise ratio of the noise background in dB, or None for no noise.
        background: ``"noise"`` or ``"clutter"``.
        seed: seed of every random choice.
        n_clutter: clutter pieces per canvas (``background="clutter"`` only); default 8 per
            120×120 canvas, scaled with the canvas area (at least 1).

    Attributes:
        canvas_size: ``(H, W)``.
        side: NumPy int64 ``[N]``, the digit side S of each item.
        sigma: NumPy float64 ``[N]``, the noise standard deviation of each item (0 when clean).
        n_clutter: clutter pieces per canvas (0 for the noise background).

    Items are ``(canvas float32 [1, H, W], label int64 [], box float32 [4])`` with the box
    ``[x0, y0, x1, y1]`` = centres of the first and last column and row of the digit's S×S
    square: ``x1 - x0 = y1 - y0 = S - 1``.
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
        self._labels = _check_labels(labels, len(self._images))
        self.canvas_size = _check_canvas(canvas)
        self.scale = _check_scale(scale, min(self.canvas_size))
        self.snr_db = _checks.snr_db("snr_db", snr_db)
        self.background = _checks.option("background", background, BACKGROUNDS)
        self.n_clutter = _check_n_clutter(
            n_clutter, background, self.canvas_size, len(self._images)
        )
        self.seed = _check_seed(seed)
        self._draw_parameters(self.seed)
        self.sigma = self._noise_sigma()

    def _draw_parameters(self, seed: int) -> None:
        """Draw every item's side, position, noise seed and clutter pieces from one seed."""
        n = len(self._images)
        height, width = self.canvas_size
        rng = np.random.default_rng(seed)
        u = rng.uniform(self.scale[0], self.scale[1], size=n)
        self.side = np.rint(u * min(height, width)).astype(np.int64)
        self._left = rng.integers(0, width - self.side + 1)
        self._top = rng.integers(0, height - self.side + 1)
        self._noise_seed = rng.integers(0, 2**63 - 1, size=n)
        pieces = (n, self.n_clutter)
        # An offset in 1..n-1 from the item's own index never picks the item's own digit.
        self._clutter_src = (np.arange(n)[:, None] + rng.integers(1, max(n, 2), size=pieces)) % n
        self._clutter_crop = rng.integers(CLUTTER_CROP[0], CLUTTER_CROP[1] + 1, size=(*pieces, 2))
        self._clutter_y = rng.integers(0, height - CLUTTER_PIECE + 1, size=pieces)
        self._clutter_x = rng.integers(0, width - CLUTTER_PIECE + 1, size=pieces)

    def _noise_sigma(self) -> np.ndarray:
        """σ of every item, NumPy float64 ``[N]``: ``sqrt(mean(d²) / 10^(snr_db/10))``."""
        n = len(self._images)
        if self.snr_db is None:
            return np.zeros(n)
        power = np.empty(n)
        for side, members in _size_groups(self.side, np.arange(n)):
            # Chunks bound the memory of the resized tiles for the 60,000-digit set.
            for chunk in np.array_split(members, -(-len(members) // 4096)):
                tiles = self._tiles(chunk, side)
                power[chunk] = tiles.double().square().mean(dim=(1, 2)).numpy()
        blank = np.flatnonzero(power == 0)
        if blank.size:
            raise ValueError(
                f"images[{blank[0]}] is blank (all zeros), so snr_db={self.snr_db} cannot set "
                "its noise level; expected every digit to have some ink"
            )
        return noise_sigma(power, self.snr_db)

    def variant(self, seed=None, snr_db=_UNCHANGED, canvas=None) -> TranslatedMNIST:
        """The same digits and settings, with what the arguments name changed.

        Args:
            seed: every random choice (sides, positions, noise, clutter) drawn anew from this
                seed; None keeps the draws, unless ``canvas`` changes, which redraws them
                from the dataset's own seed. Training draws fresh canvases each epoch.
            snr_db: another SNR (``None``: clean) with the same canvases and noise pattern,
                only σ changed (a noise curriculum); left out, the SNR stays.
            canvas: canvases of side ``canvas`` (int or ``(H, W)``) with the digits at the same
                pixel sizes and clutter at the same pieces per area (a canvas curriculum).
        """
        other = copy.copy(self)
        if snr_db is not _UNCHANGED:
            other.snr_db = _checks.snr_db("snr_db", snr_db)
        if canvas is not None:
            other.canvas_size = _check_canvas(canvas)
            ratio = min(self.canvas_size) / min(other.canvas_size)
            low, high = self.scale
            other.scale = _check_scale((low * ratio, high * ratio), min(other.canvas_size))
            if self.background == "clutter":
                area = np.prod(other.canvas_size) / np.prod(self.canvas_size)
                other.n_clutter = max(1, round(self.n_clutter * area))
        if seed is not None or canvas is not None:
            other.seed = self.seed if seed is None else _check_seed(seed)
            other._draw_parameters(other.seed)
        other.sigma = other._noise_sigma()
        return other

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
        """Generate items ``indices`` at once.

        Args:
            indices: ``[B]`` item indices (list, range, NumPy array or tensor of ints;
                negative ones count from the end).

        Returns:
            ``(canvases float32 [B, 1, H, W], labels int64 [B], boxes float32 [B, 4])``.
        """
        idx = self._check_indices(indices)
        height, width = self.canvas_size
        canvases = torch.zeros(len(idx), 1, height, width)
        if self.snr_db is not None:
            self._add_noise(canvases, idx)
        if self.n_clutter:
            canvases = self._draw_clutter(canvases, idx)
        self._draw_digits(canvases, idx)
        left, top, side = self._left[idx], self._top[idx], self.side[idx]
        boxes = np.stack([left, top, left + side - 1, top + side - 1], axis=1)
        return canvases, self._labels[torch.from_numpy(idx)], torch.from_numpy(boxes).float()

    def batches(
        self, batch_size: int, shuffle: bool = False, seed: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Iterate over the whole dataset in vectorised batches (the last one may be smaller).

        Args:
            batch_size: items per batch, > 0.
            shuffle: visit the items in the order of a permutation drawn from ``seed``.
            seed: seed of that permutation.

        Yields:
            ``(canvases [B, 1, H, W], labels [B], boxes [B, 4])`` as from ``batch``.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if not isinstance(shuffle, bool):
            raise TypeError(f"shuffle must be a bool, got {type(shuffle).__name__}")
        n = len(self)
        order = np.random.default_rng(_check_seed(seed)).permutation(n) if shuffle else np.arange(n)
        # A nested generator, so that bad arguments raise here and not at the first next().
        return (self.batch(order[i : i + batch_size]) for i in range(0, n, batch_size))

    def _check_indices(self, indices) -> np.ndarray:
        """``indices`` as a NumPy int64 ``[B]`` array of valid, non-negative item indices."""
        if isinstance(indices, torch.Tensor):
            indices = indices.detach().cpu().numpy()
        idx = np.asarray(indices)
        if idx.ndim != 1 or idx.size == 0:
            raise ValueError(f"indices must be a non-empty 1-D sequence, got shape {idx.shape}")
        if idx.dtype == np.bool_ or not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
        n = len(self)
        if idx.min() < -n or idx.max() >= n:
            raise IndexError(
                f"indices must lie in [-{n}, {n}), got values {idx.min()}..{idx.max()}"
            )
        return np.where(idx < 0, idx + n, idx).astype(np.int64)

    def _tiles(self, idx: np.ndarray, side: int) -> torch.Tensor:
        """Digits ``idx`` resized to ``side``: float32 ``[G, S, S]`` in [0, 1]."""
        digits = self._images[torch.from_numpy(idx)]
        if digits.dtype == torch.uint8:
            digits = digits.float() / 255
        tiles = F.interpolate(
            digits[:, None], size=(side, side), mode="bilinear", antialias=True, align_corners=False
        )[:, 0]
        # The filter weights are non-negative, so only float rounding can leave [0, 1].
        return tiles.clamp_(0.0, 1.0)

    def _add_noise(self, canvases: torch.Tensor, idx: np.ndarray) -> None:
        """Fill ``canvases`` ``[B, 1, H, W]`` in place with each item's own N(0, σ²) noise."""
        generator = torch.Generator()
        # One reseed per item keeps an item's noise independent of the batch around it.
        for canvas, noise_seed in zip(canvases, self._noise_seed[idx].tolist(), strict=True):
            generator.manual_seed(noise_seed)
            canvas.normal_(generator=generator)
        canvases.mul_(torch.from_numpy(self.sigma[idx]).float().view(-1, 1, 1, 1))

    def _draw_clutter(self, canvases: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        """Return ``canvases`` ``[B, 1, H, W]`` with each item's 8×8 clutter pieces drawn on."""
        batch, _, height, width = canvases.shape
        offsets = torch.arange(CLUTTER_PIECE)
        crop = torch.from_numpy(self._clutter_crop[idx])  # [B, P, 2] (row, column)
        rows = (crop[..., 0, None] + offsets)[..., :, None]  # [B, P, 8, 1]
        cols = (crop[..., 1, None] + offsets)[..., None, :]  # [B, P, 1, 8]
        src = torch.from_numpy(self._clutter_src[idx])[..., None, None]
        pieces = self._images[src, rows, cols]  # [B, P, 8, 8]
        if pieces.dtype == torch.uint8:
            pieces = pieces.float() / 255
        y = torch.from_numpy(self._clutter_y[idx])[..., None, None] + offsets[:, None]
        x = torch.from_numpy(self._clutter_x[idx])[..., None, None] + offsets
        target = (y * width + x).reshape(batch, -1)
        layer = torch.zeros(batch, height * width)
        layer.scatter_reduce_(1, target, pieces.reshape(batch, -1), reduce="amax")
        flat = canvases.view(batch, -1)
        return torch.where(layer > 0, layer, flat).view_as(canvases)

    def _draw_digits(self, canvases: torch.Tensor, idx: np.ndarray) -> None:
        """Draw each item's resized digit into ``canvases`` ``[B, 1, H, W]`` in place."""
        batch, _, height, width = canvases.shape
        flat = canvases.view(-1)
        for side, rows in _size_groups(self.side[idx], np.arange(batch)):
            tiles = self._tiles(idx[rows], side)  # [G, S, S]
            offsets = torch.arange(side)
            top = torch.from_numpy(self._top[idx[rows]])[:, None, None]
            left = torch.from_numpy(self._left[idx[rows]])[:, None, None]
            start = torch.from_numpy(rows)[:, None, None] * (height * width)
            where = start + (top + offsets[:, None]) * width + left + offsets  # [G, S, S]
            flat[where] = torch.where(tiles > 0, tiles, flat[where])


def _size_groups(sides: np.ndarray, members: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(side, members with that side)`` for each distinct value of ``sides[members]``."""
    for side in np.unique(sides[members]):
        yield int(side), members[sides[members] == side]


def _check_images(images) -> torch.Tensor:
    """``images`` ``[N, 28, 28]`` as a private uint8 or float32 tensor, values checked."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
            raise TypeError(f"images must be uint8 or floating point, got dtype {images.dtype}")
        tensor = torch.from_numpy(np.array(images))
    elif isinstance(images, torch.Tensor):
        tensor = images.detach().cpu().clone()
    else:
        raise TypeError(
            f"images must be a NumPy array or a torch.Tensor, got {type(images).__name__}"
        )
    if tensor.dtype != torch.uint8 and not tensor.is_floating_point():
        raise TypeError(f"images must be uint8 or floating point, got dtype {tensor.dtype}")
    if tensor.dim() != 3 or tuple(tensor.shape[1:]) != (DIGIT_SIDE, DIGIT_SIDE):
        raise ValueError(f"images must have shape [N, 28, 28], got {tuple(tensor.shape)}")
    if len(tensor) == 0:
        raise ValueError(f"images must not be empty, got shape {tuple(tensor.shape)}")
    if tensor.is_floating_point():
        tensor = tensor.float()
        if not torch.isfinite(tensor).all():
            raise ValueError("images must be finite, got NaN or infinite values")
        if tensor.min() < 0 or tensor.max() > 1:
            raise ValueError(
                f"float images must lie in [0, 1], got values {tensor.min().item():.4g}.."
                f"{tensor.max().item():.4g}"
            )
    return tensor


def _check_labels(labels, n: int) -> torch.Tensor:
    """``labels`` ``[N]`` integers as an int64 tensor, one per image."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    if not isinstance(labels, np.ndarray):
        raise TypeError(
            f"labels must be a NumPy array or a torch.Tensor, got {type(labels).__name__}"
        )
    if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape [N] = ({n},) to match images, got {labels.shape}")
    return torch.from_numpy(labels.astype(np.int64))


def _check_canvas(canvas) -> tuple[int, int]:
    """``canvas`` (an int side or an ``(H, W)`` pair) as ``(H, W)``, each at least 28."""
    if isinstance(canvas, int) and not isinstance(canvas, bool):
        size = (canvas, canvas)
    else:
        size = _checks.size_pair("canvas", canvas)
    if min(size) < DIGIT_SIDE:
        raise ValueError(f"canvas must be at least 28 pixels on each side, got {canvas!r}")
    return size


def _check_scale(scale, short_side: int) -> tuple[float, float]:
    """``scale`` ``(a, b)`` with ``0 < a <= b <= 1``, giving digits of at least 2 pixels."""
    ok = (
        isinstance(scale, (tuple, list))
        and len(scale) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scale)
    )
    if not ok:
        raise TypeError(f"scale must be a pair (min, max) of numbers, got {scale!r}")
    low, high = float(scale[0]), float(scale[1])
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high <= 1):
        raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale!r}")
    smallest = int(np.rint(low * short_side))
    if smallest < 2:
        raise ValueError(
            f"scale {scale!r} makes digits as small as {smallest} px on a {short_side}-px "
            "canvas side; expected at least 2 px"
        )
    return low, high


def _check_seed(seed) -> int:
    """``seed``: a non-negative int."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return int(seed)


def _check_n_clutter(n_clutter, background: str, canvas: tuple[int, int], n: int) -> int:
    """Clutter pieces per canvas: 0 for noise, else ``n_clutter`` or the area-scaled default."""
    if background != "clutter":
        if n_clutter is not None:
            raise ValueError(
                f"n_clutter applies to background='clutter' only, got n_clutter={n_clutter!r} "
                f"with background={background!r}"
            )
        return 0
    if n < 2:
        raise ValueError(
            f"background='clutter' cuts pieces from other digits, so images must hold at least "
            f"2 digits, got {n}"
        )
    if n_clutter is None:
        return max(1, round(CLUTTER_PER_120 * canvas[0] * canvas[1] / 120**2))
    if isinstance(n_clutter, bool) or not isinstance(n_clutter, int) or n_clutter < 0:
        raise ValueError(f"n_clutter must be an int >= 0, got {n_clutter!r}")
    return n_clutter
