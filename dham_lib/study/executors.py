"""Where a sweep's runs train: in this process, or as tasks of a Ray cluster; and the
one-file-per-run records that make a finished run safe the moment it ends.

An executor has one method, ``map(function, items, names=None, **kwargs)``, which calls
``function(item, **kwargs)`` for every item and yields ``(item, outcome)`` pairs as they
finish, in any order:

- :class:`InProcess` (the default, nothing to install) calls them one after the other
  in this process; an exception stops the sweep there, as a sweep always did.
- :class:`RayExecutor` submits each item as one Ray task (``num_cpus``/``num_gpus`` each)
  and yields the results as they come back. A worker that dies (killed, out of memory, a
  lost node) is retried by Ray up to ``max_retries`` times; a task that raises is not
  retried, and its outcome is a :class:`Failure` naming the error, so that the caller
  can report it at the end while keeping every run that finished. Ray is imported
  only when a ``RayExecutor`` is made, so the course imports, and runs on Colab,
  without it (``pip install -e '.[cluster]'`` installs it).

``write_record`` and ``read_record`` keep small JSON files, one per finished run, each
written to a temporary name, flushed to disk and renamed into place (atomic on one file
system), with a checksum of its content: a file is either whole or detected as broken.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from dham_lib import _checks

EXECUTORS = ("local", "ray")
RECORD_FORMAT = 1
RAY_MISSING = (
    "--executor ray needs Ray, which the course's optional 'cluster' extra installs: "
    "pip install -e '.[cluster]' (or pip install 'ray>=2.9')"
)


@dataclasses.dataclass(frozen=True)
class Failure:
    """The outcome of an item whose task raised, or whose worker died more often than
    the retries allowed: the error, as ``type: message``."""

    error: str


class InProcess:
    """Run every item in this process, one after the other (the default executor)."""

    name = "local"

    def map(self, function: Callable, items: Iterable, names=None, **kwargs) -> Iterator[tuple]:
        """Yield ``(item, function(item, **kwargs))`` in order; an exception propagates
        at once. (``names`` is the same interface as Ray's, and not needed here.)"""
        for item in items:
            yield item, function(item, **kwargs)


def import_ray():
    """The ``ray`` module, or an ``ImportError`` that names the ``cluster`` extra."""
    try:
        import ray
    except ImportError as error:
        raise ImportError(RAY_MISSING) from error
    return ray


class RayExecutor:
    """Run every item as one Ray task, ``num_cpus`` and ``num_gpus`` each.

    ``address`` is the cluster's (``"auto"``: the one ``ray start`` started on this
    machine, or ``$RAY_ADDRESS``; ``None``: Ray's default, which starts a local cluster
    when there is none). When Ray is already initialised in this process (a test's or a
    notebook's ``ray.init``), that cluster is used and left running; otherwise ``map``
    connects, and disconnects at its end. ``max_retries`` is how often Ray reruns a task
    whose worker died; a task that raises fails at once (rerunning a bug finds the same
    bug). Ray hides the GPUs a task was not given (``CUDA_VISIBLE_DEVICES``), so a task
    without ``num_gpus`` sees none.

    ``function`` must be importable by the workers (a module-level function of an
    installed package): every node needs the course installed, the same version as the
    driver's.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_cpus: float = 1,
        num_gpus: float = 0,
        max_retries: int = 3,
    ):
        self._ray = import_ray()
        if not (isinstance(num_cpus, int | float) and num_cpus > 0):
            raise ValueError(f"num_cpus must be a number > 0, got {num_cpus!r}")
        if not (isinstance(num_gpus, int | float) and num_gpus >= 0):
            raise ValueError(f"num_gpus must be a number >= 0, got {num_gpus!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        self.address, self.num_cpus, self.num_gpus = address, num_cpus, num_gpus
        self.max_retries = max_retries

    def map(
        self,
        function: Callable,
        items: Iterable,
        names: Callable[[Any], str] | None = None,
        **kwargs,
    ) -> Iterator[tuple[Any, Any]]:
        """Submit ``function(item, **kwargs)`` for every item as a task, then yield
        ``(item, result or Failure)`` as each task ends.

        ``names(item)``, if given, names each task (Ray shows it in ``ray list tasks``
        and as the worker's process title, ``ray::<name>``).
        """
        ray = self._ray
        started = not ray.is_initialized()
        if started:
            ray.init(address=self.address, log_to_driver=False)
        try:
            remote = ray.remote(function)
            options = {
                "num_cpus": self.num_cpus,
                "num_gpus": self.num_gpus,
                "max_retries": self.max_retries,
                "retry_exceptions": False,
            }
            pending = {}
            for item in items:
                named = {"name": names(item)} if names is not None else {}
                pending[remote.options(**options, **named).remote(item, **kwargs)] = item
            while pending:
                (ready,), _ = ray.wait(list(pending), num_returns=1)
                item = pending.pop(ready)
                try:
                    outcome = ray.get(ready)
                except Exception as error:  # the task raised, or its worker died for good
                    outcome = Failure(_describe(error))
                yield item, outcome
        finally:
            if started:
                ray.shutdown()


def _describe(error: BaseException) -> str:
    """A Ray error as ``type: message``: the task's own exception where Ray wrapped one."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        error = cause
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[-1] if lines else ''}".rstrip(": ")


def make_executor(name: str = "local", **ray_options):
    """The executor called ``name`` (``EXECUTORS``); ``ray_options`` are
    :class:`RayExecutor`'s (``address``, ``num_cpus``, ``num_gpus``, ``max_retries``) and
    mean nothing to the local one, though a misspelt one is refused by either."""
    _checks.option("executor", name, EXECUTORS)
    inspect.signature(RayExecutor).bind(**ray_options)  # TypeError naming an unknown option
    return InProcess() if name == "local" else RayExecutor(**ray_options)


# --------------------------------------------------------------------------- one file per record


def _checksum(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def write_record(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` (JSON-able) to ``path`` atomically, with its checksum.

    The file is written under a temporary name in the same folder (unique to this
    process, so concurrent writers never share one), flushed to disk, then renamed
    over ``path``: a reader sees the old file or the whole new one, never part of it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"format": RECORD_FORMAT, "sha256": _checksum(payload), "payload": payload})
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_record(path: str | os.PathLike) -> dict:
    """The payload of a file that ``write_record`` wrote; ``ValueError`` naming the path
    and the fault if it is truncated, corrupt or of another format."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a whole record (truncated or corrupt: {error})") from None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise ValueError(f"{path} is not a record of format {RECORD_FORMAT}")
    payload = record.get("payload")
    if not isinstance(payload, dict) or record.get("sha256") != _checksum(payload):
        raise ValueError(f"{path} fails its checksum (corrupt)")
    return payload
