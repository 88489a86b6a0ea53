"""Checkpoints: a faithful round trip, and a loud failure for every kind of bad file."""

import hashlib
import os

import pytest
import torch

import dham_lib
from dham_lib.checkpoints import load_checkpoint, save_checkpoint, sha256_file, sidecar_path
from dham_lib.models import build_model

CONFIGS = {
    "dham": {"width": 4, "k": 2, "stride": 2},
    "stn": {"canvas": 60},
    "cnn": {},
    "oracle": {"glimpse_size": (20, 20)},
}


def _trained_like(name: str) -> torch.nn.Module:
    """A small model with every weight perturbed, so a lost tensor would show."""
    torch.manual_seed(0)
    model = build_model(name, **CONFIGS[name])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.fixture
def saved(tmp_path):
    """A saved DHAM checkpoint: ``(path, model)``."""
    model = _trained_like("dham")
    path = tmp_path / "dham.pt"
    save_checkpoint(path, model, data_config={"canvas": 60, "snr_db": None}, metrics={"acc": 0.9})
    return path, model


@pytest.mark.parametrize("name", CONFIGS)
def test_round_trip_gives_identical_outputs(tmp_path, name):
    model = _trained_like(name)
    path = tmp_path / f"{name}.pt"
    digest = save_checkpoint(path, model, data_config={"canvas": 60}, metrics={"test_acc": 0.5})
    loaded, meta = load_checkpoint(path, expected_config=model.config)
    canvas = torch.rand(2, 1, 60, 60)
    box = torch.tensor([[10.0, 12.0, 40.0, 42.0]] * 2)
    with torch.no_grad():
        before, after = model(canvas, true_box=box), loaded(canvas, true_box=box)
    for a, b in zip(before, after, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    assert not loaded.training
    assert meta["model_config"] == model.config
    assert meta["data_config"] == {"canvas": 60} and meta["metrics"] == {"test_acc": 0.5}
    assert meta["library_version"] == dham_lib.__version__
    assert meta["sha256"] == digest


def test_sidecar_is_in_sha256sum_format(saved):
    path, _ = saved
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert sha256_file(path) == digest
    assert sidecar_path(path).read_text() == f"{digest}  {path.name}\n"


def test_truncated_file_is_refused(saved):
    path, _ = saved
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"dham\.pt is corrupt or truncated"):
        load_checkpoint(path)


def test_flipped_byte_is_refused(saved):
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"dham\.pt is corrupt or truncated.*sha256"):
        load_checkpoint(path)


def test_missing_sidecar_is_refused(saved):
    path, _ = saved
    sidecar_path(path).unlink()
    with pytest.raises(FileNotFoundError, match=r"dham\.pt has no checksum file dham\.pt\.sha256"):
        load_checkpoint(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pt"):
        load_checkpoint(tmp_path / "nowhere.pt")


def _with_sidecar(path):
    sidecar_path(path).write_text(f"{sha256_file(path)}  {path.name}\n")
    return path


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ValueError, match=r"noise\.pt is not a readable checkpoint"):
        load_checkpoint(_with_sidecar(path))


def test_another_torch_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match=r"weights\.pt is not a format-1"):
        load_checkpoint(_with_sidecar(path))


class Payload:
    """An arbitrary pickled object: weights-only loading must refuse to build it."""


def test_pickled_code_is_never_loaded(tmp_path):
    path = tmp_path / "pickle.pt"
    torch.save({"format": 1, "payload": Payload()}, path)
    with pytest.raises(ValueError, match=r"pickle\.pt is not a readable checkpoint"):
        load_checkpoint(_with_sidecar(path))


def test_config_mismatch_names_the_keys(saved):
    path, model = saved
    expected = build_model("dham", width=8, k=2, stride=2).config
    with pytest.raises(ValueError, match=r"dham\.pt has another model config \(width: saved 4"):
        load_checkpoint(path, expected_config=expected)


def test_metadata_must_be_plain(tmp_path):
    with pytest.raises(TypeError, match=r"metrics\['when'\]"):
        save_checkpoint(tmp_path / "x.pt", build_model("cnn"), metrics={"when": object()})
