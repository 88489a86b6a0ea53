"""train_or_load: load a matching committed checkpoint, else train; quick mode; bad files."""

import pytest

from dham_lib.checkpoints import load_checkpoint, save_checkpoint
from dham_lib.models import build_model
from dham_lib.study import pretrained
from dham_lib.study.runs import SCORES, make_record, make_run

RUN = make_run("cnn", epochs=3)


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("DHAM_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.delenv("DHAM_QUICK", raising=False)
    monkeypatch.delenv("DHAM_TRAIN", raising=False)
    return tmp_path


@pytest.fixture
def trained(monkeypatch):
    """Replace training by an instant stand-in; records the runs it was asked to train."""
    calls = []

    def fake_train_run(run, **kwargs):
        calls.append(run)
        history = {"epoch": [1], "test_acc": [0.5]}
        scores = {**dict.fromkeys(SCORES, 0.5), "train_seconds": 1.0}
        return build_model("cnn"), make_record(run, scores, history, "cpu")

    monkeypatch.setattr(pretrained, "train_run", fake_train_run)
    return calls


def test_missing_then_trained_then_loaded(folder, trained, capsys):
    pretrained.train_or_load("demo", RUN)
    assert "No committed checkpoint demo.pt" in capsys.readouterr().out
    assert (folder / "demo.pt").exists() and pretrained.verify_manifest(folder) == []
    model, history, row = pretrained.train_or_load("demo", RUN)
    assert "Loaded the committed checkpoint demo.pt" in capsys.readouterr().out
    assert len(trained) == 1
    assert history["test_acc"] == [0.5] and row["test_acc"] == 0.5
    assert not model.training


def test_other_setting_or_asked_to_train_trains_again(folder, trained, capsys):
    pretrained.train_or_load("demo", RUN)
    first = (folder / "demo.pt").read_bytes()
    pretrained.train_or_load("demo", make_run("cnn", epochs=4))
    out = capsys.readouterr().out
    assert "trained for another setting" in out and "kept as demo.pt.old" in out
    # The other setting's finished training is kept, checksum and all, out of the manifest.
    assert (folder / "demo.pt.old").read_bytes() == first
    _, meta = load_checkpoint(folder / "demo.pt.old")
    assert meta["data_config"]["train"]["epochs"] == 3
    assert pretrained.verify_manifest(folder) == []
    pretrained.train_or_load("demo", make_run("cnn", epochs=4), train=True)
    assert len(trained) == 3


def test_corrupt_checkpoint_is_reported_and_replaced(folder, trained, capsys):
    pretrained.train_or_load("demo", RUN)
    data = (folder / "demo.pt").read_bytes()
    (folder / "demo.pt").write_bytes(data[: len(data) // 2])  # a truncated file
    assert pretrained.verify_manifest(folder) == ["demo.pt"]
    pretrained.train_or_load("demo", RUN)
    out = capsys.readouterr().out
    assert "unusable" in out and "demo.pt" in out
    assert len(trained) == 2
    assert pretrained.verify_manifest(folder) == []  # replaced, manifest rewritten


def test_quick_mode_trains_a_small_run_and_saves_nothing(folder, trained, monkeypatch, capsys):
    monkeypatch.setenv("DHAM_QUICK", "1")
    pretrained.train_or_load("demo", RUN)
    assert trained[0].train.epochs == 1 and trained[0].data.train_size == 512
    assert trained[0].data.source == "bundled"  # never a download in the tests or CI
    assert not (folder / "demo.pt").exists()
    assert "Quick mode" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "run", "error"),
    [("a/b", RUN, ValueError), ("", RUN, ValueError), ("x", {}, TypeError)],
)
def test_bad_arguments(folder, name, run, error):
    with pytest.raises(error):
        pretrained.train_or_load(name, run)


def test_load_committed_checks_the_sidecar(folder):
    path = folder / "dham-snr6-w2.pt"
    save_checkpoint(path, build_model("dham", width=2), data_config={"snr_db": 6.0})
    model, meta = pretrained.load_committed("dham-snr6-w2")
    assert model.config["width"] == 2 and meta["data_config"] == {"snr_db": 6.0}
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="dham-snr6-w2.pt"):
        pretrained.load_committed("dham-snr6-w2")
