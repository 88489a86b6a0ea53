"""Save and load trained models, safely and verifiably: a checkpoint holds plain types only,
so ``torch.load(weights_only=True)`` reads it without running pickled code, and the
``sha256sum`` beside it, ``<file>.sha256``, makes a truncated or corrupted file fail loudly."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

import dham_lib
from dham_lib.models import build_model

FORMAT = 1
_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def sha256_file(path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_path(path) -> Path:
    """Where the checksum of ``path`` lives: ``<path>.sha256``."""
    return Path(f"{path}.sha256")


def _check_plain(name: str, value) -> None:
    """Check that ``value`` nests only types that ``weights_only`` loading accepts."""
    if isinstance(value, (dict, list, tuple)):
        for key, item in value.items() if isinstance(value, dict) else enumerate(value):
            if not isinstance(key, (str, int)):
                raise TypeError(f"{name} keys must be str or int, got {key!r}")
            _check_plain(f"{name}[{key!r}]", item)
    elif not isinstance(value, _PLAIN):
        raise TypeError(
            f"{name} must hold only dicts, lists, str, numbers, None or tensors, "
            f"got {type(value).__name__}"
        )


def save_checkpoint(path, model: nn.Module, data_config=None, metrics=None, extra=None) -> str:
    """Save ``model`` (its ``config`` and weights) and metadata to ``path`` and its sha256 to
    ``<path>.sha256``; returns the sha256."""
    if not isinstance(getattr(model, "config", None), dict):
        raise TypeError(f"model must have a config dict (a dham_lib model), got {type(model)}")
    meta = {"data_config": data_config, "metrics": metrics, "extra": extra}
    for name, value in meta.items():
        _check_plain(name, value)
    checkpoint = {
        "format": FORMAT,
        "model_config": dict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **meta,
        "library_version": dham_lib.__version__,
        "torch_version": str(torch.__version__),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so an interrupted save never leaves a half file under the real name.
    partial = path.with_name(path.name + ".partial")
    torch.save(checkpoint, partial)
    os.replace(partial, path)
    digest = sha256_file(path)
    sidecar_path(path).write_text(f"{digest}  {path.name}\n")
    return digest


def _check_config(path: Path, config: dict, expected: dict) -> None:
    """Compare the saved model config with the expected one, naming any differing keys."""
    if not isinstance(expected, dict):
        raise TypeError(f"expected_config must be a model config dict, got {expected!r}")
    expected = {k: list(v) if isinstance(v, tuple) else v for k, v in expected.items()}
    differing = sorted(k for k in config | expected if config.get(k) != expected.get(k))
    details = [f"{k}: saved {config.get(k)!r}, expected {expected.get(k)!r}" for k in differing]
    if details:
        raise ValueError(f"checkpoint {path} has another model config ({', '.join(details)})")


def load_checkpoint(path, expected_config=None, map_location="cpu") -> tuple[nn.Module, dict]:
    """Load a checkpoint saved by ``save_checkpoint``: returns ``(model in eval mode, meta)``.

    Verifies the sha256 sidecar, loads with ``weights_only=True``, rebuilds the model from
    its config (compared with ``expected_config``, e.g. ``build_model("dham").config``, when
    given) and loads the weights strictly. ``meta``: all saved but the weights, and ``sha256``.
    """
    path, sidecar = Path(path), sidecar_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not sidecar.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} has no checksum file {sidecar.name}; "
            "save it with save_checkpoint, which writes both"
        )
    expected = (sidecar.read_text().split() or [""])[0].lower()
    if (digest := sha256_file(path)) != expected:
        raise ValueError(
            f"checkpoint {path} is corrupt or truncated: its sha256 is {digest}, "
            f"but {sidecar.name} expects {expected or '(empty file)'}"
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise ValueError(f"{path} is not a readable checkpoint: {error}") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint)
        raise ValueError(f"{path} is not a format-{FORMAT} dham_lib checkpoint, got {found!r}")
    config = checkpoint.get("model_config")
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError(f"checkpoint {path} has no model_config with a model name")
    if expected_config is not None:
        _check_config(path, config, expected_config)
    model = build_model(**config)
    try:
        model.load_state_dict(checkpoint["state_dict"], strict=True)
    except (KeyError, RuntimeError) as error:
        raise ValueError(
            f"checkpoint {path} has weights that do not fit its model: {error}"
        ) from error
    meta = {k: v for k, v in checkpoint.items() if k != "state_dict"}
    return model.to(map_location).eval(), {**meta, "sha256": digest}
