"""MNIST loading and the translated-digit canvases, all offline.

The full-MNIST path is exercised with tiny synthetic idx files served from a loopback HTTP
server that stands in for torchvision's mirrors.
"""

import functools
import gzip
import hashlib
import http.server
import math
import re
import shutil
import socket
import struct
import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.datasets import MNIST

from dham_lib import data
from dham_lib.data import BUNDLED_SHA256, TranslatedMNIST, load_mnist, noise_sigma, snr_db_of


@pytest.fixture(scope="module")
def digits():
    """The first 64 bundled training digits: ``(uint8 [64, 28, 28], int64 [64])``."""
    images, labels = load_mnist("train", source="bundled", verbose=False)
    return images[:64], labels[:64]


def clean_and_noisy(digits, snr_db, **kwargs):
    """Two datasets with one seed: clean and noisy, so their digits sit at the same boxes."""
    clean = TranslatedMNIST(*digits, snr_db=None, seed=3, **kwargs)
    noisy = TranslatedMNIST(*digits, snr_db=snr_db, seed=3, **kwargs)
    return clean, noisy


def outside_box(boxes, height, width):
    """Boolean ``[B, H, W]``: True for the pixels outside each ``[B, 4]`` box."""
    ys = torch.arange(height)[None, :, None]
    xs = torch.arange(width)[None, None, :]
    x0, y0, x1, y1 = (boxes[:, k, None, None] for k in range(4))
    return (xs < x0) | (xs > x1) | (ys < y0) | (ys > y1)


# --------------------------------------------------------------------------- TranslatedMNIST


@pytest.mark.parametrize("background", ["noise", "clutter"])
def test_same_seed_same_items_other_seed_other_items(digits, background):
    first = TranslatedMNIST(*digits, snr_db=3.0, background=background, seed=1)
    again = TranslatedMNIST(*digits, snr_db=3.0, background=background, seed=1)
    other = TranslatedMNIST(*digits, snr_db=3.0, background=background, seed=2)
    a, b, c = (ds.batch(range(16)) for ds in (first, again, other))
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[2], c[2])


def assert_same_items(first: TranslatedMNIST, second: TranslatedMNIST, n: int = 16) -> None:
    """The first ``n`` canvases, labels and boxes of the two datasets are identical."""
    for x, y in zip(first.batch(range(n)), second.batch(range(n)), strict=True):
        assert torch.equal(x, y)


def test_variant_with_a_seed_is_a_fresh_draw_of_the_same_task(digits):
    base = TranslatedMNIST(*digits, snr_db=3.0, seed=1)
    again = base.variant(seed=2)
    assert_same_items(again, TranslatedMNIST(*digits, snr_db=3.0, seed=2))
    assert not torch.equal(base.batch(range(16))[2], again.batch(range(16))[2])
    # The original keeps its own draws.
    assert_same_items(base, TranslatedMNIST(*digits, snr_db=3.0, seed=1), n=4)
    assert_same_items(base.variant(), base)  # nothing named, nothing changed


def test_variant_with_an_snr_keeps_the_canvases_and_changes_only_the_noise_level(digits):
    noisy = TranslatedMNIST(*digits, snr_db=6.0, seed=4)
    louder = noisy.variant(snr_db=0.0)
    assert_same_items(louder, TranslatedMNIST(*digits, snr_db=0.0, seed=4))
    # 6 dB less SNR is twice the noise amplitude (10·log10(4) = 6.02 dB).
    np.testing.assert_allclose(louder.sigma / noisy.sigma, 10 ** (6 / 20))
    assert noisy.snr_db == 6.0  # the original is untouched
    clean = noisy.variant(snr_db=None)
    assert torch.equal(
        clean.batch(range(4))[0], TranslatedMNIST(*digits, seed=4).batch(range(4))[0]
    )
    assert noisy.variant(seed=7).snr_db == 6.0  # left out, the SNR stays
    with pytest.raises(ValueError, match="snr_db"):
        noisy.variant(snr_db=float("nan"))


def test_variant_on_a_canvas_keeps_each_digit_s_pixel_size_and_draws_the_rest_anew(digits):
    small = TranslatedMNIST(*digits, canvas=120, scale=(0.24, 0.40), snr_db=3.0, seed=4)
    large = small.variant(seed=9, canvas=240)
    assert large.canvas_size == (240, 240) and small.canvas_size == (120, 120)
    # The same digit sizes in pixels as a 240-pixel set made with half the scale.
    assert_same_items(
        large, TranslatedMNIST(*digits, canvas=240, scale=(0.12, 0.20), snr_db=3.0, seed=9)
    )
    canvases, _, boxes = large.batch(range(8))
    assert canvases.shape == (8, 1, 240, 240)
    sides = boxes[:, 2] - boxes[:, 0]
    assert 0.24 * 120 - 1 <= sides.min() and sides.max() <= 0.40 * 120 + 1
    # Without a seed, the dataset's own seed draws the new canvases.
    assert_same_items(small.variant(canvas=240), small.variant(seed=4, canvas=240))
    # All three at once: a new seed, canvas and SNR.
    assert_same_items(
        small.variant(seed=2, canvas=240, snr_db=None),
        TranslatedMNIST(*digits, canvas=240, scale=(0.12, 0.20), seed=2),
    )
    clutter = TranslatedMNIST(*digits, canvas=120, background="clutter", seed=1)
    assert clutter.variant(seed=1, canvas=240).n_clutter == 4 * clutter.n_clutter  # per area
    with pytest.raises(ValueError, match="scale"):
        small.variant(seed=0, canvas=30)  # digits of 40% of 120 px do not fit on 30 px


@pytest.mark.parametrize("background", ["noise", "clutter"])
def test_item_does_not_depend_on_its_batch(digits, background):
    ds = TranslatedMNIST(*digits, snr_db=0.0, background=background, seed=5)
    canvases, labels, boxes = ds.batch([40, 3, 11, 63, 0])
    canvas, label, box = ds[11]
    assert canvas.shape == (1, 120, 120) and canvas.dtype == torch.float32
    assert label.dtype == torch.int64 and label.dim() == 0
    assert box.shape == (4,) and box.dtype == torch.float32
    assert torch.equal(canvas, canvases[2])
    assert torch.equal(label, labels[2])
    assert torch.equal(box, boxes[2])
    assert torch.equal(ds.batch(range(64))[0][11], canvas)
    assert torch.equal(ds[-1][0], canvases[3])


def test_box_holds_every_stroke_pixel_and_lies_inside_the_canvas(digits):
    ds = TranslatedMNIST(*digits, seed=7)
    canvases, _, boxes = ds.batch(range(len(ds)))
    assert canvases.min() >= 0 and canvases.max() <= 1
    assert not (canvases[:, 0] * outside_box(boxes, 120, 120)).any()
    assert (boxes >= 0).all() and (boxes <= 119).all()
    side = torch.from_numpy(ds.side).float()
    torch.testing.assert_close(boxes[:, 2] - boxes[:, 0], side - 1, rtol=0, atol=0)
    torch.testing.assert_close(boxes[:, 3] - boxes[:, 1], side - 1, rtol=0, atol=0)
    assert ds.side.min() >= round(0.24 * 120) and ds.side.max() <= round(0.40 * 120)


def test_a_glimpse_over_the_box_samples_exactly_the_resized_digit(digits):
    ds = TranslatedMNIST(*digits, seed=2)
    for i in (0, 9, 33):
        canvas, _, box = ds[i]
        side = int(ds.side[i])
        # docs/conventions.md: x0 = (tx - s + 1)/2·(W-1), x1 = (tx + s + 1)/2·(W-1), same for y.
        tx = (box[0] + box[2]) / 119 - 1
        ty = (box[1] + box[3]) / 119 - 1
        s = (box[2] - box[0]) / 119
        u = torch.linspace(-1, 1, side)
        grid = torch.stack(torch.meshgrid(tx + s * u, ty + s * u, indexing="xy"), dim=-1)
        glimpse = F.grid_sample(canvas[None], grid[None], align_corners=True)[0, 0]
        digit = torch.from_numpy(digits[0][i]).float()[None, None] / 255
        tile = F.interpolate(digit, size=(side, side), mode="bilinear", antialias=True)[0, 0]
        torch.testing.assert_close(glimpse, tile.clamp(0, 1), rtol=0, atol=1e-5)


@pytest.mark.parametrize("snr_db", [-3.0, 0.0, 6.0, 12.0])
def test_measured_snr_matches_the_request(digits, snr_db):
    clean, noisy = clean_and_noisy(digits, snr_db)
    plain, _, boxes = clean.batch(range(32))
    canvases, _, noisy_boxes = noisy.batch(range(32))
    assert torch.equal(boxes, noisy_boxes)
    outside = outside_box(boxes, 120, 120)
    noise_power = (canvases[:, 0].square() * outside).sum(dim=(1, 2)) / outside.sum(dim=(1, 2))
    inside = ~outside
    signal_power = (plain[:, 0].square() * inside).sum(dim=(1, 2)) / inside.sum(dim=(1, 2))
    measured = 10 * torch.log10(signal_power / noise_power)
    assert (measured - snr_db).abs().max() < 0.5
    exact = 10 * np.log10(signal_power.double().numpy() / noisy.sigma[:32] ** 2)
    np.testing.assert_allclose(exact, snr_db, atol=1e-4)


def test_strokes_replace_the_noise_and_nothing_is_clipped(digits):
    clean, noisy = clean_and_noisy(digits, -3.0)
    plain = clean.batch(range(16))[0]
    canvases = noisy.batch(range(16))[0]
    stroke = plain > 0
    assert torch.equal(canvases[stroke], plain[stroke])
    assert (canvases[~stroke] != 0).all()
    assert canvases.min() < 0 and canvases.max() > 1
    assert clean.sigma.tolist() == [0.0] * len(clean)


def test_clutter_puts_ink_outside_the_box(digits):
    ds = TranslatedMNIST(*digits, background="clutter", seed=4)
    assert ds.n_clutter == 8
    canvases, _, boxes = ds.batch(range(len(ds)))
    assert canvases.min() >= 0 and canvases.max() <= 1
    ink_outside = (canvases[:, 0] * outside_box(boxes, 120, 120)).flatten(1).amax(dim=1) > 0
    assert ink_outside.float().mean() > 0.9
    # The digit is drawn over the clutter: its strokes are those of the clutter-free canvas.
    plain = TranslatedMNIST(*digits, seed=4).batch(range(len(ds)))[0]
    assert torch.equal(canvases[plain > 0], plain[plain > 0])


def test_clutter_with_noise(digits):
    cluttered = TranslatedMNIST(*digits, background="clutter", seed=6).batch(range(16))[0]
    ds = TranslatedMNIST(*digits, snr_db=6.0, background="clutter", seed=6)
    canvases = ds.batch(range(16))[0]
    assert torch.isfinite(canvases).all()
    ink = cluttered > 0
    assert torch.equal(canvases[ink], cluttered[ink])
    assert (canvases[~ink] != 0).all()
    assert TranslatedMNIST(*digits, background="clutter", n_clutter=30).n_clutter == 30


def test_non_square_canvas_and_tensor_inputs(digits):
    images = torch.from_numpy(digits[0]).float() / 255
    labels = torch.from_numpy(digits[1])
    ds = TranslatedMNIST(images, labels, canvas=(64, 150), scale=(0.5, 1.0), snr_db=6.0)
    canvases, out_labels, boxes = ds.batch(range(len(ds)))
    assert canvases.shape == (64, 1, 64, 150)
    assert torch.equal(out_labels, labels)
    assert (boxes[:, [0, 2]] <= 149).all() and (boxes[:, [1, 3]] <= 63).all()
    assert (boxes >= 0).all() and ds.side.max() <= 64
    # Float images in [0, 1] give the same canvases as the uint8 digits they came from.
    from_uint8 = TranslatedMNIST(*digits, canvas=(64, 150), scale=(0.5, 1.0), snr_db=6.0)
    torch.testing.assert_close(from_uint8.batch(range(8))[0], canvases[:8])


def test_labels_follow_the_source(digits):
    ds = TranslatedMNIST(*digits, seed=9)
    assert torch.equal(ds.batch(range(len(ds)))[1], torch.from_numpy(digits[1]))
    assert [int(ds[i][1]) for i in (0, 17, 63)] == [int(digits[1][i]) for i in (0, 17, 63)]


@pytest.mark.parametrize("shuffle", [False, True])
def test_batches_cover_every_item_once(digits, shuffle):
    ids = np.arange(len(digits[1]))  # labels that name the item
    ds = TranslatedMNIST(digits[0], ids, seed=1)
    chunks = list(ds.batches(24, shuffle=shuffle, seed=3))
    assert [len(c[1]) for c in chunks] == [24, 24, 16]
    seen = torch.cat([c[1] for c in chunks]).numpy()
    assert sorted(seen.tolist()) == ids.tolist()
    assert (seen.tolist() != ids.tolist()) == shuffle
    canvases, labels, boxes = chunks[1]
    again = ds.batch(labels)
    assert torch.equal(again[0], canvases) and torch.equal(again[2], boxes)


def test_works_with_a_dataloader(digits):
    ds = TranslatedMNIST(*digits, snr_db=6.0)
    canvases, labels, boxes = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    expected = ds.batch(range(8))
    assert torch.equal(canvases, expected[0]) and torch.equal(labels, expected[1])
    assert torch.equal(boxes, expected[2])


@settings(max_examples=25, deadline=None)
@given(
    height=st.integers(28, 90),
    width=st.integers(28, 90),
    low=st.floats(0.1, 1.0),
    spread=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32),
)
def test_boxes_hold_the_digit_for_any_canvas(digits, height, width, low, spread, seed):
    high = low + spread * (1 - low)
    ds = TranslatedMNIST(*digits, canvas=(height, width), scale=(low, high), seed=seed)
    canvases, _, boxes = ds.batch(range(16))
    assert not (canvases[:, 0] * outside_box(boxes, height, width)).any()
    assert (boxes >= 0).all()
    assert (boxes[:, 2] <= width - 1).all() and (boxes[:, 3] <= height - 1).all()
    assert (ds.side[:16] == (boxes[:, 2] - boxes[:, 0] + 1).numpy()).all()


# --------------------------------------------------------------------------- bundled data


def test_bundled_split_shapes_dtypes_and_classes(capsys):
    train = load_mnist("train", source="bundled")
    val = load_mnist("val", source="bundled", verbose=False)
    test = load_mnist("test", source="bundled", verbose=False)
    assert capsys.readouterr().out == "load_mnist: bundled MNIST subset train (3,500 digits)\n"
    for (images, labels), n in ((train, 3500), (val, 500), (test, 1000)):
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int64
        assert np.bincount(labels, minlength=10).tolist() == [n // 10] * 10
    assert images.max() == 255
    path = data.data_dir() / data.BUNDLED_FILE
    assert hashlib.sha256(path.read_bytes()).hexdigest() == BUNDLED_SHA256


def test_validation_digits_are_the_last_50_training_digits_of_each_class():
    with np.load(data.data_dir() / data.BUNDLED_FILE) as npz:
        pool, pool_labels = npz["train_images"], npz["train_labels"]
    held_out = np.zeros(len(pool_labels), dtype=bool)
    for digit in range(10):
        held_out[np.flatnonzero(pool_labels == digit)[-50:]] = True
    val, val_labels = load_mnist("val", source="bundled", verbose=False)
    train, train_labels = load_mnist("train", source="bundled", verbose=False)
    np.testing.assert_array_equal(val, pool[held_out])
    np.testing.assert_array_equal(train, pool[~held_out])
    np.testing.assert_array_equal(train_labels, pool_labels[~held_out])
    every = load_mnist("train+val", source="bundled", verbose=False)
    np.testing.assert_array_equal(every[0], pool)  # in the file's order


def test_bundled_file_corruption_is_caught(tmp_path, monkeypatch):
    raw = bytearray((data.data_dir() / data.BUNDLED_FILE).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / data.BUNDLED_FILE).write_bytes(bytes(raw))
    monkeypatch.setenv("DHAM_DATA_DIR", str(tmp_path))
    actual = hashlib.sha256(bytes(raw)).hexdigest()
    with pytest.raises(RuntimeError, match=data.BUNDLED_FILE) as err:
        load_mnist("train", source="bundled")
    assert actual in str(err.value) and BUNDLED_SHA256 in str(err.value)


def test_missing_bundled_file_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("DHAM_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="DHAM_DATA_DIR"):
        load_mnist("test", source="bundled")


# --------------------------------------------------------------------------- full MNIST, offline


def idx_gz(array: np.ndarray) -> bytes:
    """``array`` (uint8, 1-D labels or 3-D images) as a gzip-compressed idx file."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.tobytes(), mtime=0)


@pytest.fixture(scope="module")
def fake_mnist(tmp_path_factory):
    """Tiny MNIST archives (20 train, 10 test digits) on disk, and their arrays and md5s."""
    folder = tmp_path_factory.mktemp("mirror")
    rng = np.random.default_rng(0)
    arrays = {
        "train": (rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), rng.integers(0, 10, 20)),
        "test": (rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), rng.integers(0, 10, 10)),
    }
    resources = []
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = arrays[split]
        for kind, array in (("images-idx3", images), ("labels-idx1", labels.astype(np.uint8))):
            name = f"{prefix}-{kind}-ubyte.gz"
            blob = idx_gz(array)
            (folder / name).write_bytes(blob)
            resources.append((name, hashlib.md5(blob).hexdigest()))
    return folder, arrays, resources


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without logging every request to stderr."""

    def log_message(self, format, *args):
        pass


@pytest.fixture
def mirror(fake_mnist, monkeypatch):
    """A loopback HTTP server with the fake archives, installed as torchvision's only mirror."""
    folder, _, resources = fake_mnist
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{server.server_port}/"])
    monkeypatch.setattr(MNIST, "resources", resources)
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def closed_port_url() -> str:
    """A loopback URL on a port that nothing listens on: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def dead_mirror(fake_mnist, monkeypatch):
    """torchvision's only mirror is a closed loopback port."""
    monkeypatch.setattr(MNIST, "mirrors", [closed_port_url()])
    monkeypatch.setattr(MNIST, "resources", fake_mnist[2])


def assert_same(loaded, expected):
    """``loaded`` is ``(uint8 images, int64 labels)`` equal to ``expected``."""
    images, labels = loaded
    assert images.dtype == np.uint8 and labels.dtype == np.int64
    np.testing.assert_array_equal(images, expected[0])
    np.testing.assert_array_equal(labels, expected[1])


def without_validation(arrays):
    """The training part of full training arrays: all but their last twelfth (the "val")."""
    n = len(arrays[1]) - len(arrays[1]) // 12
    return arrays[0][:n], arrays[1][:n]


def test_full_downloads_then_loads(fake_mnist, mirror, tmp_path, capsys):
    loaded = load_mnist("train", source="full", cache_dir=tmp_path)
    assert_same(loaded, without_validation(fake_mnist[1]["train"]))
    images, labels = fake_mnist[1]["train"]
    assert_same(load_mnist("val", source="full", cache_dir=tmp_path), (images[19:], labels[19:]))
    assert_same(load_mnist("train+val", source="full", cache_dir=tmp_path), (images, labels))
    assert_same(load_mnist("test", source="auto", cache_dir=tmp_path), fake_mnist[1]["test"])
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "load_mnist: full MNIST train (19 digits)",
        "load_mnist: full MNIST val (1 digits)",
        "load_mnist: full MNIST train+val (20 digits)",
        "load_mnist: full MNIST test (10 digits)",
    ]
    assert str(tmp_path) not in out
    assert socket.getdefaulttimeout() is None


def test_cached_files_load_without_a_server(fake_mnist, dead_mirror, tmp_path, capsys):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, _ in fake_mnist[2]:
        shutil.copy(fake_mnist[0] / name, raw / name)
    assert_same(load_mnist("test", source="full", cache_dir=tmp_path), fake_mnist[1]["test"])
    assert capsys.readouterr().out == "load_mnist: full MNIST test (10 digits)\n"


def test_cache_dir_defaults_to_the_environment(fake_mnist, mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("DHAM_CACHE_DIR", str(tmp_path))
    load_mnist("test", source="full", verbose=False)
    assert (tmp_path / "MNIST" / "raw" / fake_mnist[2][2][0]).is_file()


def test_corrupted_archive_is_reported_and_downloaded_again(fake_mnist, mirror, tmp_path, capsys):
    load_mnist("train", source="full", cache_dir=tmp_path, verbose=False)
    archive = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    archive.write_bytes(archive.read_bytes()[:100])
    loaded = load_mnist("train", source="full", cache_dir=tmp_path)
    assert_same(loaded, without_validation(fake_mnist[1]["train"]))
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert "train-images-idx3-ubyte.gz failed its md5 check" in out[0]
    assert archive.read_bytes() == (fake_mnist[0] / archive.name).read_bytes()


def test_damaged_extracted_file_is_rebuilt_from_its_archive(
    fake_mnist, mirror, tmp_path, monkeypatch
):
    load_mnist("train", source="full", cache_dir=tmp_path, verbose=False)
    monkeypatch.setattr(MNIST, "mirrors", [closed_port_url()])
    extracted = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    extracted.write_bytes(extracted.read_bytes()[:500])
    loaded = load_mnist("train", source="full", cache_dir=tmp_path, verbose=False)
    assert_same(loaded, without_validation(fake_mnist[1]["train"]))


def test_full_without_network_raises_one_clear_error(dead_mirror, tmp_path):
    with pytest.raises(RuntimeError, match="Could not download the full MNIST") as err:
        load_mnist("train", source="full", cache_dir=tmp_path, timeout=2.0)
    message = str(err.value)
    assert str(tmp_path) in message and 'source="bundled"' in message
    assert "\n" not in message
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert socket.getdefaulttimeout() is None


def test_a_silent_server_times_out_instead_of_hanging(fake_mnist, tmp_path, monkeypatch):
    # A listening socket that never answers: connections succeed, reads stall.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        monkeypatch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{silent.getsockname()[1]}/"])
        monkeypatch.setattr(MNIST, "resources", fake_mnist[2])
        start = time.monotonic()
        with pytest.raises(RuntimeError, match="timed out"):
            load_mnist("train", source="full", cache_dir=tmp_path, timeout=0.3)
    assert time.monotonic() - start < 5
    assert socket.getdefaulttimeout() is None


def test_auto_without_network_falls_back_to_bundled(dead_mirror, tmp_path, capsys):
    images, labels = load_mnist("test", source="auto", cache_dir=tmp_path, timeout=2.0)
    assert images.shape == (1000, 28, 28) and labels.shape == (1000,)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    assert "falling back to the bundled 5,000-digit subset" in out[0]
    assert "refused" in out[0].lower()
    assert str(tmp_path) not in out[0]


# --------------------------------------------------------------------------- bad input


def images_with(**changes):
    """Small valid ``(images, labels)``, with a NaN, a bad value or a blank digit if asked."""
    images = np.random.default_rng(0).random((4, 28, 28)).astype(np.float32)
    if changes.get("nan"):
        images[1, 2, 3] = math.nan
    if changes.get("above_one"):
        images[0, 0, 0] = 1.5
    if changes.get("blank"):
        images[2] = 0
    return images, np.arange(4)


IMAGES, LABELS = images_with()
BAD_INPUT = {
    "images list": (lambda: TranslatedMNIST(IMAGES.tolist(), LABELS), TypeError, "images"),
    "images int64": (
        lambda: TranslatedMNIST(IMAGES.astype(np.int64), LABELS),
        TypeError,
        "images",
    ),
    "images 2-D": (lambda: TranslatedMNIST(IMAGES[:, 0], LABELS), ValueError, "images"),
    "images 32x32": (lambda: TranslatedMNIST(np.zeros((4, 32, 32)), LABELS), ValueError, "images"),
    "images empty": (
        lambda: TranslatedMNIST(IMAGES[:0], LABELS[:0]),
        ValueError,
        "images",
    ),
    "images NaN": (lambda: TranslatedMNIST(*images_with(nan=True)), ValueError, "images"),
    "images > 1": (lambda: TranslatedMNIST(*images_with(above_one=True)), ValueError, "images"),
    "images blank with noise": (
        lambda: TranslatedMNIST(*images_with(blank=True), snr_db=0.0),
        ValueError,
        "images[2]",
    ),
    "clutter of one digit": (
        lambda: TranslatedMNIST(IMAGES[:1], LABELS[:1], background="clutter"),
        ValueError,
        "images",
    ),
    "labels float": (lambda: TranslatedMNIST(IMAGES, LABELS * 1.0), TypeError, "labels"),
    "labels list": (lambda: TranslatedMNIST(IMAGES, [0, 1, 2, 3]), TypeError, "labels"),
    "labels too short": (lambda: TranslatedMNIST(IMAGES, LABELS[:3]), ValueError, "labels"),
    "canvas too small": (lambda: TranslatedMNIST(IMAGES, LABELS, canvas=20), ValueError, "canvas"),
    "canvas pair too small": (
        lambda: TranslatedMNIST(IMAGES, LABELS, canvas=(64, 27)),
        ValueError,
        "canvas",
    ),
    "canvas float": (lambda: TranslatedMNIST(IMAGES, LABELS, canvas=120.0), TypeError, "canvas"),
    "scale reversed": (
        lambda: TranslatedMNIST(IMAGES, LABELS, scale=(0.5, 0.3)),
        ValueError,
        "scale",
    ),
    "scale zero": (lambda: TranslatedMNIST(IMAGES, LABELS, scale=(0, 0.3)), ValueError, "scale"),
    "scale above one": (
        lambda: TranslatedMNIST(IMAGES, LABELS, scale=(0.2, 1.5)),
        ValueError,
        "scale",
    ),
    "scale NaN": (
        lambda: TranslatedMNIST(IMAGES, LABELS, scale=(math.nan, 0.5)),
        ValueError,
        "scale",
    ),
    "scale number": (lambda: TranslatedMNIST(IMAGES, LABELS, scale=0.3), TypeError, "scale"),
    "scale too small a digit": (
        lambda: TranslatedMNIST(IMAGES, LABELS, scale=(0.001, 0.01)),
        ValueError,
        "scale",
    ),
    "snr_db NaN": (lambda: TranslatedMNIST(IMAGES, LABELS, snr_db=math.nan), ValueError, "snr_db"),
    "snr_db inf": (lambda: TranslatedMNIST(IMAGES, LABELS, snr_db=math.inf), ValueError, "snr_db"),
    "snr_db str": (lambda: TranslatedMNIST(IMAGES, LABELS, snr_db="6"), TypeError, "snr_db"),
    "background unknown": (
        lambda: TranslatedMNIST(IMAGES, LABELS, background="stars"),
        ValueError,
        "background",
    ),
    "seed negative": (lambda: TranslatedMNIST(IMAGES, LABELS, seed=-1), ValueError, "seed"),
    "seed float": (lambda: TranslatedMNIST(IMAGES, LABELS, seed=1.5), TypeError, "seed"),
    "n_clutter without clutter": (
        lambda: TranslatedMNIST(IMAGES, LABELS, n_clutter=3),
        ValueError,
        "n_clutter",
    ),
    "n_clutter negative": (
        lambda: TranslatedMNIST(IMAGES, LABELS, background="clutter", n_clutter=-1),
        ValueError,
        "n_clutter",
    ),
    "batch empty": (lambda: TranslatedMNIST(IMAGES, LABELS).batch([]), ValueError, "indices"),
    "batch out of range": (
        lambda: TranslatedMNIST(IMAGES, LABELS).batch([0, 4]),
        IndexError,
        "indices",
    ),
    "batch float": (lambda: TranslatedMNIST(IMAGES, LABELS).batch([0.5]), TypeError, "indices"),
    "item out of range": (lambda: TranslatedMNIST(IMAGES, LABELS)[-5], IndexError, "indices"),
    "batches size 0": (
        lambda: TranslatedMNIST(IMAGES, LABELS).batches(0),
        ValueError,
        "batch_size",
    ),
    "split unknown": (lambda: load_mnist("valid"), ValueError, "split"),
    "source unknown": (lambda: load_mnist("train", source="web"), ValueError, "source"),
    "timeout zero": (lambda: load_mnist("train", timeout=0), ValueError, "timeout"),
    "timeout str": (lambda: load_mnist("train", timeout="10"), TypeError, "timeout"),
    "cache_dir int": (lambda: load_mnist("train", cache_dir=3), TypeError, "cache_dir"),
    "verbose str": (lambda: load_mnist("train", verbose="yes"), TypeError, "verbose"),
}


@pytest.mark.parametrize(("call", "error", "word"), BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_is_rejected_with_a_clear_message(call, error, word):
    with pytest.raises(error, match=re.escape(word)):
        call()


def test_balanced_order_takes_the_classes_in_turn():
    from dham_lib.data import balanced_order

    labels = np.array([3, 3, 3, 8, 9, 8, 0, 3])
    assert balanced_order(labels).tolist() == [6, 0, 3, 4, 1, 5, 2, 7]
    _, test_labels = load_mnist("test", source="bundled", verbose=False)
    first = test_labels[balanced_order(test_labels)[:250]]
    assert np.bincount(first, minlength=10).tolist() == [25] * 10
    assert np.bincount(test_labels[:36], minlength=10)[[3, 8, 9]].sum() == 36  # as shipped
    data = TranslatedMNIST(IMAGES, LABELS)
    np.testing.assert_array_equal(data.labels, LABELS)


def test_noise_sigma_and_snr_db_of_are_the_definition_and_its_inverse():
    # By hand: 10^(6/10) = 3.98107, so sigma = sqrt(0.1 / 3.98107) = 0.158489.
    assert noise_sigma(0.1, 6.0) == pytest.approx(0.158489, abs=1e-6)
    # 0.1 / 0.154^2 = 4.21656, and 10 log10 of it is 6.2496 dB.
    assert snr_db_of(0.1, 0.154) == pytest.approx(6.2496, abs=1e-4)
    powers = np.array([0.05, 0.1, 0.3])
    np.testing.assert_allclose(snr_db_of(powers, noise_sigma(powers, -3.0)), -3.0)
