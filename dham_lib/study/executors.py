"""Where a sweep's runs train, and the records that keep each finished run.

An executor's ``map(function, items, names=None, **kwargs)`` yields ``(item,
function(item, **kwargs))`` as each call ends: :class:`InProcess` here, one after the other;
:class:`RayExecutor` as Ray tasks, a task that fails yielding a :class:`Failure` instead, so
that the caller keeps every run that finished. Ray is imported only by a ``RayExecutor``
(``pip install -e '.[cluster]'``). A record file is whole or detected as broken.
"""

import dataclasses
import hashlib
import inspect
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from dham_lib import _checks

EXECUTORS = ("local", "ray")
RECORD_FORMAT = 1
RAY_MISSING = "--executor ray needs Ray, the course's 'cluster' extra: pip install -e '.[cluster]'"


@dataclasses.dataclass(frozen=True)
class Failure:
    """The outcome of a task that raised, or whose worker died past its retries."""

    error: str  # ``type: message``


class InProcess:
    """Run every item in this process, one after the other (the default executor)."""

    def map(self, function: Callable, items: Iterable, names=None, **kwargs) -> Iterator[tuple]:
        """Yield ``(item, function(item, **kwargs))`` in order; an exception propagates."""
        for item in items:
            yield item, function(item, **kwargs)


class RayExecutor:
    """Run every item as one Ray task, ``num_cpus`` and ``num_gpus`` each.

    ``address``: the cluster's (``"auto"``: the one ``ray start`` started here, or
    ``$RAY_ADDRESS``; None: a new local one), unless Ray is initialised in this process
    already. A task whose worker died is rerun up to ``max_retries`` times; one that raises
    fails at once. ``function`` must be importable on every node.
    """

    def __init__(self, address=None, num_cpus: float = 1, num_gpus: float = 0, max_retries=3):
        try:
            import ray
        except ImportError as error:
            raise ImportError(RAY_MISSING) from error
        _checks.positive("num_cpus", num_cpus)
        if isinstance(num_gpus, bool) or not isinstance(num_gpus, int | float) or num_gpus < 0:
            raise ValueError(f"num_gpus must be a number >= 0, got {num_gpus!r}")
        _checks.non_negative_int("max_retries", max_retries)
        self._ray, self.address = ray, address
        self.options = dict(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries)
        self.options["retry_exceptions"] = False  # a bug raises again

    def map(self, function: Callable, items: Iterable, names=None, **kwargs) -> Iterator[tuple]:
        """Submit ``function(item, **kwargs)`` for every item as a task named ``names(item)``
        (``ray list tasks`` and the worker's title ``ray::<name>`` show it), then yield
        ``(item, result or Failure)`` as each task ends."""
        ray, started = self._ray, not self._ray.is_initialized()
        if started:
            ray.init(address=self.address, log_to_driver=False)
        try:
            task, pending = ray.remote(function), {}
            for item in items:
                name = names(item) if names is not None else None
                pending[task.options(**self.options, name=name).remote(item, **kwargs)] = item
            while pending:
                (ready,), _ = ray.wait(list(pending), num_returns=1)
                try:
                    outcome = ray.get(ready)
                except Exception as error:  # the task raised, or its worker died for good
                    outcome = Failure(_describe(error))
                yield pending.pop(ready), outcome
        finally:
            if started:
                ray.shutdown()


def _describe(error: BaseException) -> str:
    """A Ray error as ``type: message``: the task's own exception where Ray wrapped one."""
    error = error.cause if isinstance(getattr(error, "cause", None), BaseException) else error
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[-1] if lines else ''}".rstrip(": ")


def make_executor(name: str = "local", **ray_options):
    """The executor called ``name`` (``EXECUTORS``); ``ray_options`` are
    :class:`RayExecutor`'s, refused if misspelt even by the local one."""
    _checks.option("executor", name, EXECUTORS)
    inspect.signature(RayExecutor).bind(**ray_options)  # TypeError naming an unknown option
    return InProcess() if name == "local" else RayExecutor(**ray_options)


def _checksum(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def write_record(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` (JSON-able) and its checksum to ``path`` atomically: under a name of
    this process's own in the same folder, flushed to disk, then renamed over ``path``."""
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
    """The payload that ``write_record`` wrote; ``ValueError`` naming the path and the fault
    if it is truncated, corrupt or of another format."""
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
