"""Notebook 05's slider functions: the SNR gallery and live attention at a chosen SNR."""

import math

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from dham_lib.data import TranslatedMNIST, load_mnist
from dham_lib.models import build_model
from dham_lib.noisy import attention_at_snr, measured_snr_db, snr_gallery


def test_measured_snr_matches_the_request():
    images, labels = load_mnist("test", source="bundled", verbose=False)
    for snr in (-3.0, 6.0, 12.0):
        clean = TranslatedMNIST(images[:32], labels[:32], snr_db=None, seed=4)
        noisy = TranslatedMNIST(images[:32], labels[:32], snr_db=snr, seed=4)
        canvases, _, boxes = noisy.batch(range(32))
        measured = measured_snr_db(clean.batch(range(32))[0], canvases, boxes)
        assert measured.mean().item() == pytest.approx(snr, abs=0.5)


def test_gallery_follows_the_slider():
    quiet, loud = snr_gallery(12.0).numbers, snr_gallery(-3.0).numbers
    assert quiet["mean measured SNR (dB)"] == pytest.approx(12.0, abs=1.0)
    assert loud["mean measured SNR (dB)"] == pytest.approx(-3.0, abs=1.0)
    assert loud["mean noise sigma"] > 4 * quiet["mean noise sigma"]
    clean = snr_gallery(None)
    assert clean.numbers["mean noise sigma"] == 0 and math.isinf(
        clean.numbers["requested SNR (dB)"]
    )
    assert clean.figure.axes[0].get_xlabel() == "x (pixels)"


def test_attention_at_snr_runs_the_chosen_model():
    torch.manual_seed(0)
    models = {2: build_model("dham", width=2, uniform_start=False), 8: build_model("dham", width=8)}
    for m in models.values():
        m.eval()
    a = attention_at_snr(models, 2, 6.0, n=4, score=32)
    b = attention_at_snr(models, 8, 6.0, n=4, score=32)
    assert a.numbers["width"] == 2 and b.numbers["width"] == 8
    # The uniform start of the width-8 model centres its box; the random one does not.
    assert a.numbers["mean IoU"] != b.numbers["mean IoU"]
    noisier = attention_at_snr(models, 2, -3.0, n=4, score=32)
    assert noisier.numbers != a.numbers
    assert 0 <= a.numbers["accuracy on 32 canvases (%)"] <= 100


@pytest.mark.parametrize(
    ("kwargs", "error", "word"),
    [
        ({"width": 4}, ValueError, "width"),
        ({"snr_db": float("nan")}, ValueError, "snr_db"),
        ({"snr_db": "6"}, ValueError, "snr_db"),
        ({"n": 0}, ValueError, "n"),
    ],
)
def test_bad_arguments(kwargs, error, word):
    args = {
        "models": {2: build_model("dham", width=2)},
        "width": 2,
        "snr_db": 6.0,
        "n": 2,
        "score": 8,
    }
    args.update(kwargs)
    with pytest.raises(error, match=word):
        attention_at_snr(**args)
