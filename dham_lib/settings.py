"""One place per setting: a config dataclass's field holds its default, its help and its
allowed values; models, runs, records and the command line all read it from there."""

from __future__ import annotations

import dataclasses
from typing import Any


def setting(default: Any, help: str, choices: tuple | None = None, minimum: int = 1) -> Any:
    """A frozen config dataclass's field: ``default``, the command line's ``help``, the
    ``choices`` it accepts (None: any of the field's type) and, for an int, its ``minimum``."""
    metadata = {"help": help, "choices": choices, "minimum": minimum}
    return dataclasses.field(default=default, metadata=metadata)


def as_json(value: Any) -> Any:
    """``value`` (a config dataclass, or dicts, lists and tuples of plain values) as JSON
    writes it: dataclasses as dicts, tuples as lists."""
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_json(item) for item in value]
    return value


def updated(config: Any, **changes: Any) -> Any:
    """``dataclasses.replace(config, **changes)``, or a ``TypeError`` naming the unknown
    setting and the ones ``config``'s class has."""
    names = [field.name for field in dataclasses.fields(config)]
    unknown = sorted(set(changes) - set(names))
    if unknown:
        raise TypeError(
            f"{type(config).__name__} has no setting {', '.join(unknown)}; "
            f"its settings are {', '.join(names)}"
        )
    return dataclasses.replace(config, **changes)
