"""One type coercer for settings: the configuration tree's (TOML, ``from_flags``) and the
backbone registry's options (which the command line gives as strings)."""

from __future__ import annotations

import typing
from typing import Any


def unwrap_optional(kind: Any) -> Any:
    """``X`` of ``X | None``; any other type as it is."""
    args = typing.get_args(kind)
    if type(None) in args:
        return next(a for a in args if a is not type(None))
    return kind


def coerce(value: Any, kind: Any, what: str, *, parse: bool = False) -> Any:
    """``value`` checked against the field type ``kind``: ``bool``, ``int``, ``float``
    (ints accepted), ``str``, ``list[str]``, ``dict`` or ``X | None``.

    ``parse``: also convert text (``"3"``, ``"0.5"``, ``"true"``) and integral floats to
    ints, and anything to ``str``, as options given on a command line need. Anything else
    is one ``ValueError``: "<what> must be <type>, got <value>".
    """
    if type(None) in typing.get_args(kind):
        if value is None:
            return None
        kind = unwrap_optional(kind)
    origin = typing.get_origin(kind)
    if origin is list:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
    elif origin is dict:
        if isinstance(value, dict):
            return dict(value)
    elif kind is bool:
        if isinstance(value, bool):
            return value
        if parse and isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if parse:
            try:
                if isinstance(value, str) or (isinstance(value, float) and value.is_integer()):
                    return int(value)
            except ValueError:
                pass
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if parse and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str) or parse:
            return str(value)
    name = getattr(kind, "__name__", str(kind))
    raise ValueError(f"{what} must be {name}, got {value!r}")
