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
VAL_PER_CLASS = 50  # the bundled set's validation digits per class
FULL_VAL_FRACTION = 12  # the full set's validation digits: the last twelfth
# What a failed download raises: torchvision's RuntimeError, or socket timeouts, broken
# connections, truncated gzip streams and damaged idx files as they come.
_READ_ERRORS = (RuntimeError, OSError, EOFError, AssertionError, ValueError, HTTPException)


def data_dir() -> Path:
    """The folder holding ``mnist5k.npz``: ``$DHAM_DATA_DIR`` if set, else the repo's data/."""
    override = os.environ.get("DHAM_DATA_DIR")
    return Path(override).expanduser() if override else Path(__file__).resolve().parents[2] / "data"


def cache_dir_default() -> Path:
    """Where the full MNIST is cached: ``$DHAM_CACHE_DIR`` if set, else ``~/.cache/dham_lib``."""
    override = os.environ.get("DHAM_CACHE_DIR")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "dham_lib"


def full_mnist_present(cache_dir: str | os.PathLike | None = None) -> bool:
    """Whether the full MNIST's four idx files (or their archives) are in
    ``<cache_dir>/MNIST/raw/`` (default :func:`cache_dir_default`), so that ``source="full"``
    needs no download; their md5s are checked when they are read. Notebook 08 draws its
    canvases from them when present, else from the bundled digits."""
    root = cache_dir_default() if cache_dir is None else Path(cache_dir).expanduser()
    raw = root / "MNIST" / "raw"
    return all((raw / name).is_file() or (raw / f"{name}.gz").is_file() for name in EXTRACTED_MD5)


def load_mnist(
    split: str,
    source: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    timeout: float = 10.0,
    verbose: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Load an MNIST split as ``(images uint8 [N, 28, 28], labels int64 [N])``.

    ``split``: ``"train"``, ``"val"`` (carved from the training digits), ``"test"``, or
    ``"train+val"`` (every training digit, in the file's order). ``source``: ``"bundled"``
    (3,500/500/1,000 digits in data/, offline), ``"full"`` (55,000/5,000/10,000 in
    ``<cache_dir>/MNIST/raw/``, downloaded once if missing; ``cache_dir`` defaults to
    :func:`cache_dir_default`) or ``"auto"`` (full, else bundled). ``timeout``: seconds a
    network operation may stall. ``verbose``: print the source used; problems (a damaged
    archive, a fall-back to bundled) are printed always.

    Raises ``RuntimeError`` if the full MNIST is neither cached nor downloadable (``"full"``),
    a copied idx file lacks its published md5, or the bundled file is damaged.
    """
    _checks.option("split", split, SPLITS)
    _checks.option("source", source, SOURCES)
    timeout = _checks.positive("timeout", timeout)
    if not isinstance(verbose, bool):
        raise TypeError(f"verbose must be a bool, got {type(verbose).__name__}")
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"cache_dir must be None, a str or a path, got {type(cache_dir).__name__}")
    root = cache_dir_default() if cache_dir is None else Path(cache_dir).expanduser()
    raw_dir = root / "MNIST" / "raw"
    if source == "bundled":
        (images, labels, held_out), what = _load_bundled(split), "bundled MNIST subset"
    else:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(timeout)  # urllib inherits it: a dead network fails, not hangs
        try:
            (images, labels, held_out), what = _load_full(split, raw_dir), "full MNIST"
        except _FullUnavailable as err:
            reason, hint = err.args
            if source == "full":
                raise RuntimeError(
                    f"Could not download the full MNIST into {raw_dir} ({reason}); "
                    f'{hint}, or use source="bundled" for the 5,000-digit subset that ships '
                    "with the course."
                ) from None
            (images, labels, held_out), verbose = _load_bundled(split), True
            what = (
                f"full MNIST unavailable ({reason}); falling back to the bundled "
                "5,000-digit subset:"
            )
        finally:
            socket.setdefaulttimeout(previous)
    if split in ("train", "val"):
        keep = held_out == (split == "val")
        images, labels = images[keep], labels[keep]
    if verbose:  # no paths: the line ends up in notebook outputs
        print(f"load_mnist: {what} {split} ({len(labels):,} digits)")
    return images, labels


def _load_bundled(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bundled test or training digits, after checking the file's sha256, and the mask of
    the validation digits among them."""
    path = data_dir() / BUNDLED_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"the bundled MNIST subset {path} is missing; restore data/{BUNDLED_FILE} from the "
            "repository or set DHAM_DATA_DIR to the folder that holds it"
        )
    raw = path.read_bytes()  # hashed and parsed: it cannot change between the check and the load
    if (actual := hashlib.sha256(raw).hexdigest()) != BUNDLED_SHA256:
        raise RuntimeError(
            f"the bundled MNIST subset {path} is corrupted: its sha256 is {actual}, "
            f"expected {BUNDLED_SHA256}; restore it from the repository"
        )
    part = "test" if split == "test" else "train"
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        images, labels = npz[f"{part}_images"], npz[f"{part}_labels"]
    held_out = np.zeros(len(labels), dtype=bool)
    for digit in np.unique(labels):
        held_out[np.flatnonzero(labels == digit)[-VAL_PER_CLASS:]] = True
    return images, labels, held_out


class _FullUnavailable(Exception):
    """The full MNIST could not be downloaded; its args: a one-line reason, a hint."""


def _load_full(split: str, raw_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The full MNIST's test or training digits from ``raw_dir``, downloading what is missing,
    and the mask of the validation digits among them. Raises ``_FullUnavailable`` when the
    download fails."""
    from torchvision.datasets import MNIST  # deferred: only this path needs torchvision
    from torchvision.datasets.utils import check_integrity

    extracted = [raw_dir / name.removesuffix(".gz") for name, _ in MNIST.resources]
    stale = _stale_files(raw_dir, MNIST.resources)
    try:
        for path in stale:
            path.unlink()
        if not all(path.is_file() for path in extracted):
            # A read-only cache is fine once complete; one that needs a download is not.
            _checks.writable_folder("the cache folder", raw_dir)
        dataset = MNIST(root=str(raw_dir.parents[1]), train=split != "test", download=True)
    except PermissionError as err:
        reason = "the cache folder is not writable" if err.filename is None else str(err)
        hint = "pass cache_dir= or set DHAM_CACHE_DIR to a writable folder"
        raise _FullUnavailable(reason, hint) from err
    except _READ_ERRORS as err:
        if not all(check_integrity(raw_dir / name, md5) for name, md5 in MNIST.resources):
            hint = "check the network connection and try again"
            raise _FullUnavailable(_short_reason(err), hint) from err
        # The archives are intact, so an extracted copy is damaged: extract them again.
        for path in extracted:
            path.unlink(missing_ok=True)
        dataset = MNIST(root=str(raw_dir.parents[1]), train=split != "test", download=True)
    labels = dataset.targets.numpy().astype(np.int64)
    held_out = np.arange(len(labels)) >= len(labels) - len(labels) // FULL_VAL_FRACTION
    return dataset.data.numpy().astype(np.uint8), labels, held_out


def _stale_files(raw_dir: Path, resources) -> list[Path]:
    """The cached files to download again: archives that fail their md5 (torchvision checks it
    only right after a download) and extracted files beside them without their published md5.
    An extracted file without its archive is a user's copy: used if its md5 is the published
    one, refused otherwise, never deleted."""
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
            if (actual := calculate_md5(extracted)) != published:
                raise RuntimeError(
                    f"the MNIST file {extracted} has md5 {actual}, expected {published} (the "
                    "published md5 of that file); copy it again from a good source, or remove "
                    "it to download MNIST instead"
                )
    return stale


def _short_reason(err: BaseException) -> str:
    """The last line of an error (torchvision lists every mirror it tried, the last one's
    error last) without urllib's wrapper, at most 160 characters."""
    text = (str(err).strip().splitlines() or [type(err).__name__])[-1].strip()
    if text.startswith("<urlopen error ") and text.endswith(">"):
        text = text[len("<urlopen error ") : -1]
    return text if len(text) <= 160 else text[:157] + "..."


def balanced_order(labels) -> np.ndarray:
    """Indices of ``labels`` ``[N]`` that take the classes in turn (the first item of each
    class, then the second of each, ...), so that any first n of them are as evenly spread over
    the classes as the counts allow: the bundled test digits come clumped by class
    (data/README.md); every subset of them is drawn in this order."""
    labels = np.asarray(labels)
    rank = np.empty(len(labels), dtype=np.int64)
    for digit in np.unique(labels):
        members = np.flatnonzero(labels == digit)
        rank[members] = np.arange(len(members))
    return np.lexsort((labels, rank))  # by rank first, then by class
