"""The checkpoints behind notebooks 04-07 and the app: load one when it matches, else train.

``train_or_load`` loads ``data/checkpoints/<name>.pt`` when it was trained for exactly the
requested :class:`~dham_lib.study.runs.Run`. It trains instead when asked (``train=True`` or
``DHAM_TRAIN=1``), or when the file is missing, was trained for another run or fails its
checksum; it says why and keeps the file it replaces as ``<name>.pt.old``. A read-only
folder is reported and the model returned unsaved. Quick mode (``DHAM_QUICK=1``, the tests)
trains a shrunken run on the bundled digits for seconds (never downloading) and saves nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from dham_lib import _checks
from dham_lib.checkpoints import load_checkpoint, save_checkpoint, sha256_file, sidecar_path
from dham_lib.settings import as_json
from dham_lib.study.runs import Run, flat_settings, train_run, with_settings

MANIFEST = "SHA256SUMS"
QUICK = {"epochs": 1, "train_size": 512, "test_size": 256, "source": "bundled"}


def checkpoint_dir() -> Path:
    """``$DHAM_CHECKPOINT_DIR`` if set, else the repository's ``data/checkpoints``."""
    default = Path(__file__).resolve().parents[2] / "data" / "checkpoints"
    return Path(os.environ.get("DHAM_CHECKPOINT_DIR") or default).expanduser()


def quick_mode() -> bool:
    """True when ``DHAM_QUICK=1``: every training run shrinks to seconds."""
    return os.environ.get("DHAM_QUICK") == "1"


def _trained(run: Run, device, progress: bool):
    """``train_run`` as ``(model, history, row)``: ``row`` the run's settings and scores, flat."""
    model, record = train_run(run, device=device, progress=progress)
    row = {"model": run.model, "seed": run.seed, **flat_settings(run), **record["scores"]}
    return model, record["history"], row


def train_or_load(
    name: str, run: Run, train: bool | None = None, device=None, progress: bool = True
):
    """The model of ``run`` as ``(model, history, row)``, loaded from ``<name>.pt`` or trained
    (``history``: ``fit``'s per-epoch record; ``row``: the run's settings and scores, flat).
    Prints one line saying which it did and why."""
    if not isinstance(run, Run):
        raise TypeError(f"run must be a study.runs.Run, got {type(run).__name__}")
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError(f"name must be a plain file name such as 'dham-clean-w16', got {name!r}")
    if quick_mode():
        run = with_settings(run, **QUICK)
        print(
            f"Quick mode (DHAM_QUICK=1): training {name} for {run.train.epochs} epoch on "
            f"{run.data.train_size} digits, not saved."
        )
        return _trained(run, device, progress)
    path = checkpoint_dir() / f"{name}.pt"
    if not (os.environ.get("DHAM_TRAIN") == "1" if train is None else train):
        loaded = _load_matching(path, run)
        if loaded is not None:
            return loaded
    try:
        _checks.writable_folder("the checkpoint folder", path.parent)
    except PermissionError as error:
        print(f"{error}: training {name} anyway; it will not be saved (set DHAM_CHECKPOINT_DIR).")
        return _trained(run, device, progress)
    model, history, row = _trained(run, device, progress)
    if path.exists():  # it may hold another setting's finished training: keep it aside
        old = path.with_name(path.name + ".old")
        path.replace(old)
        if sidecar_path(path).exists():
            sidecar_path(path).replace(sidecar_path(old))
        print(f"The previous {path.name} is kept as {old.name}.")
    save_checkpoint(path, model, data_config=as_json(run), metrics=row, extra={"history": history})
    write_manifest(path.parent)
    print(f"Trained {name} and saved it as {path.name}.")
    return model, history, row


def _load_matching(path: Path, run: Run):
    """The checkpoint's ``(model, history, row)`` if it holds ``run``'s model, else None."""
    if not path.exists():
        print(f"No committed checkpoint {path.name}: training it (this takes minutes).")
        return None
    try:
        model, meta = load_checkpoint(path)
    except (ValueError, FileNotFoundError) as error:
        print(f"The checkpoint {path.name} is unusable ({error}); training it again.")
        return None
    if meta.get("data_config") != as_json(run):
        print(f"The checkpoint {path.name} was trained for another setting; training it again.")
        return None
    row = meta["metrics"]
    print(
        f"Loaded the committed checkpoint {path.name}: {run.train.epochs} epochs, test accuracy "
        f"{row['test_acc']:.1%}, {row['train_seconds']:.0f} s of training. "
        "Set DHAM_TRAIN=1 to train it yourself."
    )
    return model, meta["extra"]["history"], row


def write_manifest(folder: str | os.PathLike | None = None) -> Path:
    """Write ``SHA256SUMS`` (``sha256sum`` format) for every ``*.pt`` in the folder."""
    folder = checkpoint_dir() if folder is None else Path(folder)
    manifest = folder / MANIFEST
    manifest.write_text(
        "".join(f"{sha256_file(p)}  {p.name}\n" for p in sorted(folder.glob("*.pt")))
    )
    return manifest


def verify_manifest(folder: str | os.PathLike | None = None) -> list[str]:
    """Names of the files in the folder's ``SHA256SUMS`` that are missing or differ."""
    folder = checkpoint_dir() if folder is None else Path(folder)
    entries = (line.split(maxsplit=1) for line in (folder / MANIFEST).read_text().splitlines())
    return [
        name
        for digest, name in entries
        if not (folder / name).exists() or sha256_file(folder / name) != digest
    ]


def load_committed(name: str):
    """Load the committed checkpoint ``<name>.pt``: ``(model in eval mode, metadata)``. Its
    sha256 is checked against its sidecar; a bad file raises ``ValueError`` naming it
    (``train_or_load`` or the sweep that made it can remake it)."""
    return load_checkpoint(checkpoint_dir() / f"{name}.pt")
