"""The optional ``meta.json`` beside a data set, read and checked in one place.

Fields (all optional): ``name`` and ``units`` (text), ``steps_per_day`` (a positive
integer), ``step_hours`` (a positive number: grids give their step this way), ``start``
or ``time_start`` (the ISO 8601 local time of the first step), ``latitude`` and
``longitude`` (lists of numbers: a grid's rows and columns) and ``missing_value`` (a
number: readings equal to it are missing, like ``--missing-value``). A field of the
wrong type is one ``ValueError`` that names the file and the field.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..limits import F32_MAX

TEXT = ("name", "units", "start", "time_start")
NUMBER_LISTS = ("latitude", "longitude")


def read_meta(directory: str | Path) -> dict[str, Any]:
    """The checked ``meta.json`` of ``directory`` (``{}`` if there is none)."""
    d = Path(directory)
    f = d / "meta.json"
    where = f"meta.json in {str(d)!r}"
    if not f.is_file():
        return {}
    try:
        meta = json.loads(f.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"{where} is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{where} must be an object, got a {type(meta).__name__}")
    for key in TEXT:
        if key in meta and not isinstance(meta[key], str):
            raise ValueError(f"{where}: {key} must be text, got {meta[key]!r}")
    if "steps_per_day" in meta:
        meta["steps_per_day"] = _positive_int(meta["steps_per_day"], where, "steps_per_day")
    if "step_hours" in meta:
        v = meta["step_hours"]
        if not _number(v) or not (math.isfinite(v) and v > 0):
            raise ValueError(f"{where}: step_hours must be a positive number, got {v!r}")
        per_day = 24 / v
        if abs(per_day - round(per_day)) > 1e-6 or round(per_day) < 1:
            raise ValueError(
                f"{where}: step_hours {v!r} must divide a day (24 h) into whole steps, "
                "for the calendar"
            )
    if "missing_value" in meta and meta["missing_value"] is not None:
        v = meta["missing_value"]
        if not _number(v) or not math.isfinite(v) or abs(v) > F32_MAX:
            raise ValueError(
                f"{where}: missing_value must be a finite number within float32's range, got {v!r}"
            )
    for key in NUMBER_LISTS:
        v = meta.get(key)
        if v is not None and not (isinstance(v, list) and all(_number(x) for x in v)):
            raise ValueError(f"{where}: {key} must be a list of numbers")
    return meta


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _positive_int(v: Any, where: str, key: str) -> int:
    if _number(v) and float(v).is_integer() and v >= 1:
        return int(v)
    raise ValueError(f"{where}: {key} must be a positive integer, got {v!r}")
