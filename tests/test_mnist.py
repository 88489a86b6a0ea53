"""The full MNIST from the four extracted idx files a user copies into the cache, offline.

Uses the copy beside the project (``../shared/mnist/``) when it is present and skips otherwise;
the download path is tested with a fake mirror in test_data.py.
"""

import hashlib
from pathlib import Path

import numpy as np
import pytest
from torchvision.datasets import MNIST

from dham_lib.data import EXTRACTED_MD5, full_mnist_present, load_mnist

SHARED = Path(__file__).parents[2] / "shared" / "mnist"
# MNIST's class counts, zeros to nines (LeCun et al.; ../shared/mnist/README.md).
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache folder whose ``MNIST/raw/`` links the four shared idx files; no mirror."""
    if not all((SHARED / name).is_file() for name in EXTRACTED_MD5):
        pytest.skip(f"the shared copy of the full MNIST is absent: no idx files in {SHARED}")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in EXTRACTED_MD5:
        (raw / name).symlink_to(SHARED / name)
    monkeypatch.setattr(MNIST, "mirrors", [])  # any download attempt fails at once
    return tmp_path


def read_idx(path: Path) -> np.ndarray:
    """An idx file read by hand: a 4-byte magic whose last byte is the number of dimensions,
    one big-endian uint32 per dimension, then the uint8 values."""
    raw = path.read_bytes()
    ndim = raw[3]
    shape = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def test_the_copied_files_load_without_a_download(cache, capsys):
    every = load_mnist("train+val", source="full", cache_dir=cache)
    train = load_mnist("train", source="full", cache_dir=cache)
    val = load_mnist("val", source="full", cache_dir=cache)
    test = load_mnist("test", source="auto", cache_dir=cache)
    sizes = (60_000, 55_000, 5_000, 10_000)
    for (images, labels), n in zip((every, train, val, test), sizes, strict=True):
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int64
    assert np.bincount(every[1]).tolist() == TRAIN_COUNTS
    assert np.bincount(test[1]).tolist() == TEST_COUNTS
    # Validation is the last 5,000 training digits, in the file's order.
    np.testing.assert_array_equal(every[0], read_idx(SHARED / "train-images-idx3-ubyte"))
    np.testing.assert_array_equal(train[0], every[0][:55_000])
    np.testing.assert_array_equal(val[1], every[1][55_000:])
    np.testing.assert_array_equal(test[0], read_idx(SHARED / "t10k-images-idx3-ubyte"))
    np.testing.assert_array_equal(test[1], read_idx(SHARED / "t10k-labels-idx1-ubyte"))
    assert capsys.readouterr().out.splitlines()[-1] == "load_mnist: full MNIST test (10,000 digits)"
    assert sorted(path.name for path in (cache / "MNIST" / "raw").iterdir()) == sorted(
        EXTRACTED_MD5
    )


def test_a_copied_file_with_a_flipped_byte_is_refused_and_kept(cache):
    name = "t10k-labels-idx1-ubyte"
    copied = cache / "MNIST" / "raw" / name
    damaged = bytearray((SHARED / name).read_bytes())
    damaged[100] ^= 0x01
    copied.unlink()
    copied.write_bytes(bytes(damaged))
    actual = hashlib.md5(damaged).hexdigest()
    for source in ("full", "auto"):  # never a silent fall-back from a damaged copy
        with pytest.raises(RuntimeError, match=name) as err:
            load_mnist("test", source=source, cache_dir=cache, verbose=False)
        assert actual in str(err.value) and EXTRACTED_MD5[name] in str(err.value)
    assert copied.read_bytes() == bytes(damaged)  # still there, as the user left it


def test_a_damaged_archive_beside_a_good_copy_goes_and_the_copy_stays(cache, capsys):
    raw = cache / "MNIST" / "raw"
    archive = raw / "t10k-labels-idx1-ubyte.gz"
    archive.write_bytes(b"not a gzip archive")
    images, labels = load_mnist("test", source="full", cache_dir=cache)
    assert np.bincount(labels).tolist() == TEST_COUNTS
    out = capsys.readouterr().out
    assert "t10k-labels-idx1-ubyte.gz failed its md5 check" in out
    assert not archive.exists() and (raw / "t10k-labels-idx1-ubyte").is_file()


def test_full_mnist_present_needs_all_four_files(cache, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty")
    assert full_mnist_present(cache)
    assert not full_mnist_present(empty)
    (cache / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    assert not full_mnist_present(cache)
