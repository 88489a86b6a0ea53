"""Loading MNIST as NumPy arrays: the bundled 5,000-digit subset (offline) or the full 70,000
(from ``<cache>/MNIST/raw/``: the four idx files a user copied there, or torchvision's
download). Each has a fixed validation split carved from its training digits, for every
choice of recipe, architecture or epochs; ``"test"`` is for final numbers only."""

from __future__ import annotations

import hashlib
import io
import os
import socket
from http.client import HTTPException
from pathlib import Path

import numpy as np

from dham_lib import _checks

BUNDLED_FILE = "mnist5k.npz"
BUNDLED_SHA256 = "4facb8b9d7f3eff1f80b7b87a5146cae4da87df7ab8b5335f426ded757fc1595"
# The published md5s of the extracted files; torchvision holds only its archives'.
EXTRACTED_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
SPLITS = ("train", "val", "test", "train+val")
SOURCES = ("bundled", "full", "auto")
# Validation digits: per class from the bundled set, the last twelfth of the full one.
VAL_PER_CLASS = 50
FULL_VAL_FRACTION = 12
NETWORK_HINT = "check the network connection and try again"
READ_ONLY_HINT = "pass cache_dir= or set DHAM_CACHE_DIR to a writable folder"
# What a failed download raises: torchvision wraps URL errors in RuntimeError, but socket
# timeouts, broken connections and truncated gzip streams come through as they are; reading a
# damaged idx file raises AssertionError or ValueError inside torchvision.
_READ_ERRORS = (RuntimeError, OSError, EOFError, AssertionError, ValueError, HTTPException)


def data_dir() -> Path:
    """The folder holding ``mnist5k.npz``: ``$DHAM_DATA_DIR`` if set, else the repo's data/."""
    override = os.environ.get("DHAM_DATA_DIR")
    return Path(override).expanduser() if override else Path(__file__).resolve().parents[2] / "data"


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
        source: ``"bundled"`` (3,500/500/1,000 digits in data/, offline), ``"full"``
            (55,000/5,000/10,000 in ``cache_dir``, downloaded once if missing) or ``"auto"``.
        cache_dir: folder for the full MNIST, whose files live in ``<cache_dir>/MNIST/raw/``;
            default ``$DHAM_CACHE_DIR`` or ``~/.cache/dham_lib``.
        timeout: seconds a network operation may stall before the download gives up.
        verbose: print one line naming the source used. Problems (a damaged cached archive, a
            fallback from full to bundled) are printed even when ``verbose`` is False.

    Raises:
        RuntimeError: the full MNIST is neither cached nor downloadable (``source="full"``), a
            copied idx file does not have its published md5, or the bundled file is damaged.
    """
    _checks.option("split", split, SPLITS)
    _checks.option("source", source, SOURCES)
    timeout = _checks.positive("timeout", timeout)
    if not isinstance(verbose, bool):
        raise TypeError(f"verbose must be a bool, got {type(verbose).__name__}")
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"cache_dir must be None, a str or a path, got {type(cache_dir).__name__}")
    root = cache_dir_default() if cache_dir is None else Path(cache_dir).expanduser()
    if source == "bundled":
        images, labels = _load_bundled(split)
        what = "bundled MNIST subset"
    else:
        try:
            images, labels = _load_full(split, root, timeout)
            what = "full MNIST"
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
    if verbose:  # no paths: the line ends up in notebook outputs
        print(f"load_mnist: {what} {split} ({len(labels):,} digits)")
    return images, labels


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


class _FullUnavailable(Exception):
    """The full MNIST could not be downloaded: a one-line reason, the cache folder, a hint."""

    def __init__(self, reason: str, raw_dir: Path, hint: str = NETWORK_HINT):
        super().__init__(reason)
        self.reason, self.raw_dir, self.hint = reason, raw_dir, hint


def _load_full(split: str, root: Path, timeout: float) -> tuple[np.ndarray, np.ndarray]:
    """One split of the full MNIST from the cache under ``root``, downloading what is missing.

    Raises ``_FullUnavailable`` when the download fails.
    """
    from torchvision.datasets import MNIST  # deferred: only this path needs torchvision
    from torchvision.datasets.utils import check_integrity

    raw_dir = root / "MNIST" / "raw"
    extracted = [raw_dir / name.removesuffix(".gz") for name, _ in MNIST.resources]
    stale = _stale_files(raw_dir, MNIST.resources)
    try:
        for path in stale:
            path.unlink()
        if not all(path.is_file() for path in extracted):
            # A read-only cache is fine once complete; one that needs a download is not.
            _checks.writable_folder("the cache folder", raw_dir)
        dataset = _torchvision_mnist(MNIST, root, split, timeout)
    except PermissionError as err:
        reason = "the cache folder is not writable" if err.filename is None else str(err)
        raise _FullUnavailable(reason, raw_dir, READ_ONLY_HINT) from err
    except _READ_ERRORS as err:
        if not all(check_integrity(raw_dir / name, md5) for name, md5 in MNIST.resources):
            raise _FullUnavailable(_short_reason(err), raw_dir) from err
        # The archives are intact, so an extracted copy is damaged: extract them again.
        for path in extracted:
            path.unlink(missing_ok=True)
        dataset = _torchvision_mnist(MNIST, root, split, timeout)
    images, labels = dataset.data.numpy().astype(np.uint8), dataset.targets.numpy().astype(np.int64)
    if split == "test":
        return images, labels
    held_out = np.arange(len(labels)) >= len(labels) - len(labels) // FULL_VAL_FRACTION
    return _carve(images, labels, split, held_out)


def _stale_files(raw_dir: Path, resources) -> list[Path]:
    """The cached files to delete and download again: archives that fail their md5 and, beside
    them, extracted files that lack their published md5.

    torchvision checks an archive's md5 only right after downloading it and then trusts the
    extracted file by its name. An extracted file without its archive is a copy a user put
    there: it is used when its md5 is the published one and refused otherwise, never deleted.
    """
    from torchvision.datasets.utils import calculate_md5, check_integrity

    stale = []
    for name, md5 in resources:
        archive, extracted = raw_dir / name, raw_dir / name.removesuffix(".gz")
        published = EXTRACTED_MD5.get(extracted.name)
        if archive.is_file() and not check_integrity(archive, md5):
            print(
                f"load_mnist: cached {name} failed its md5 check; deleting it to download it again"
            )
            stale.append(archive)
            if extracted.is_file() and calculate_md5(extracted) != published:
                stale.append(extracted)
        elif not archive.is_file() and extracted.is_file():
            actual = calculate_md5(extracted)
            if actual != published:
                raise RuntimeError(
                    f"the MNIST file {extracted} has md5 {actual}, expected {published} (the "
                    "published md5 of that file); copy it again from a good source, or remove "
                    "it to download MNIST instead"
                )
    return stale


def _torchvision_mnist(mnist_class, root: Path, split: str, timeout: float):
    """``MNIST(root, train=..., download=True)`` with a socket timeout, restored afterwards."""
    previous = socket.getdefaulttimeout()
    # urllib inherits the default timeout, so a dead network fails instead of hanging.
    socket.setdefaulttimeout(timeout)
    try:
        return mnist_class(root=str(root), train=split != "test", download=True)
    finally:
        socket.setdefaulttimeout(previous)


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
