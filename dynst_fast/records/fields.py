"""What every record's ``from_dict`` shares: the error it raises and the field check."""

from __future__ import annotations

from typing import Any


class RecordError(ValueError):
    """A file that is not the record it should be (the message names the file and field)."""


def need(d: Any, key: str, kind: type | tuple[type, ...], source: str) -> Any:
    """``d[key]``, checked to be a ``kind`` (a bool is never an int here)."""
    if not isinstance(d, dict) or key not in d:
        raise RecordError(f"{source} has no {key!r} field")
    v = d[key]
    if (
        isinstance(v, bool)
        and kind is not bool
        and bool not in (kind if isinstance(kind, tuple) else (kind,))
    ):
        raise RecordError(f"{source}: field {key!r} must be {kind_name(kind)}, got {v!r}")
    if not isinstance(v, kind):
        got = type(v).__name__
        raise RecordError(f"{source}: field {key!r} must be {kind_name(kind)}, got {got}")
    return v


def kind_name(kind: type | tuple[type, ...]) -> str:
    """``"int or float"``: the type names of ``kind`` for a message."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)
