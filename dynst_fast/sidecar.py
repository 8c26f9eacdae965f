"""The sidecar ``<model>.json`` of an exported model, both ways: what ``dynst export``
writes (:func:`describe`) and what ``dynst predict`` reads and checks (:func:`load`).

It records what the model takes and returns: ``sensor_ids`` (the input sensors, in
input order), ``input_index`` (their numbers among all N), ``all_sensor_ids`` (the
output order), ``channels``, ``t_in``, ``t_out``, ``units``, the layout (``kind``:
``graph`` or ``image``, the ``input`` / ``output`` shapes, an image model's ``grid``),
and once exported the target's fields (input / output names, ``opset``, ``alive``,
the verification and the model file's ``sha256``), ``missing_value`` (an input reading
equal to it counts as missing, like NaN; null for none) and ``suspect`` (the rules that
flag a lying sensor, :mod:`dynst_fast.suspect`). A model with calendar inputs has a
``calendar`` (``steps_per_day``, ``start``, ``features``): its input carries those
features after the data channels, which ``dynst predict --time`` computes. Only json and
hashlib are used here: a serving host needs no torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .limits import F32_MAX

FORMAT = 1

# The JSON type of every field a sidecar must have (bool is no int here).
FIELD_TYPES: dict[str, type] = {
    "format": int,
    "kind": str,
    "sensor_ids": list,
    "input_index": list,
    "num_sensors": int,
    "all_sensor_ids": list,
    "channels": int,
    "t_in": int,
    "t_out": int,
    "units": str,
    "opset": int,
    "input": dict,
    "output": dict,
    "sha256": str,
}
# The axis of the K input sensors in the model's input, by layout: graphs
# ``[B, T_in, K, C]``, image tiles ``[B, K, T_in, C, p, p]``.
SENSOR_AXIS = {"graph": 2, "image": 1}
GRID_KEYS = ("rows", "cols", "patch", "height", "width")


class SidecarError(ValueError):
    """A sidecar that is missing, damaged, edited or another model's (the message says)."""


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def describe(
    *,
    model: str,
    dense: bool,
    dataset: str | None,
    sensor_ids: list[str],
    input_index: list[int],
    all_sensor_ids: list[str],
    channels: int,
    t_in: int,
    t_out: int,
    units: str,
    version: str,
    layout: dict[str, Any],
    missing_value: float | None = None,
) -> dict[str, Any]:
    """The sidecar of a deployable model before a target completes it; ``layout`` is the
    sensor space's part (``SensorSpace.sidecar``: ``kind``, shapes, ``grid``);
    ``missing_value``: an input reading equal to it is missing, like NaN."""
    return {
        "format": FORMAT,
        "model": model,
        "dense": dense,
        "dataset": dataset,
        "sensor_ids": list(sensor_ids),
        "input_index": list(input_index),
        "num_sensors": len(all_sensor_ids),
        "all_sensor_ids": list(all_sensor_ids),
        "channels": channels,
        "t_in": t_in,
        "t_out": t_out,
        "units": units,
        "dtype": "float32",
        "version": version,
        "missing_value": missing_value,
        **layout,
    }


def calendar_features(meta: dict[str, Any]) -> int:
    """F, the calendar channels the model's input carries after its data channels."""
    cal = meta.get("calendar")
    return len(cal["features"]) if isinstance(cal, dict) else 0


def sensor_axis(meta: dict[str, Any]) -> int:
    """The axis of the K input sensors in the model's input (graphs 2, image tiles 1)."""
    return SENSOR_AXIS[meta["kind"]]


def load(model: str | os.PathLike, sidecar: str | os.PathLike | None = None) -> dict[str, Any]:
    """The sidecar of ``model`` (default ``<model>.json``), checked field by field, for
    consistency and against the model file's sha256."""
    model = Path(model)
    if not model.is_file():
        raise SidecarError(f"no model file at {model}")
    side = Path(sidecar) if sidecar is not None else Path(f"{model}.json")
    if not side.is_file():
        raise SidecarError(f"no sidecar at {side}: export writes it beside the model")
    try:
        meta = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise SidecarError(f"sidecar {side} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise SidecarError(f"sidecar {side} must hold a JSON object")
    check(meta, side)
    digest = sha256_of(model)
    if digest != meta["sha256"]:
        raise SidecarError(
            f"{model} does not match its sidecar (sha256 {digest[:12]}... vs "
            f"{str(meta['sha256'])[:12]}...): the model or the sidecar was changed or mixed up"
        )
    return meta


def check(meta: dict[str, Any], side: str | os.PathLike = "the sidecar") -> None:
    """Every field a sidecar needs, with its JSON type, and shapes, ids and counts that
    agree with each other; one ``SidecarError`` naming the first that does not."""
    missing = [k for k in FIELD_TYPES if k not in meta]
    if missing:
        raise SidecarError(f"sidecar {side} lacks {', '.join(missing)}")
    _check_types(meta, side)
    if not _consistent(meta):
        raise SidecarError(f"sidecar {side} is inconsistent: its shapes, ids and counts disagree")


def _check_types(meta: dict[str, Any], side: str | os.PathLike) -> None:
    def bad(field: str, want: str) -> SidecarError:
        return SidecarError(f"sidecar {side}: field {field!r} must be {want}")

    for name, kind in FIELD_TYPES.items():
        v = meta[name]
        if isinstance(v, bool) or not isinstance(v, kind):
            raise bad(name, f"{kind.__name__}, got {type(v).__name__}")
        if kind is int and v < 0 or name in ("t_in", "t_out", "channels") and v < 1:
            raise bad(name, "a positive int")
    if "alive" in meta:
        a = meta["alive"]
        if not isinstance(a, dict) or not isinstance(a.get("name"), str):
            raise bad("alive", "an object with the input's name")
    v = meta.get("missing_value")
    if v is not None and (
        isinstance(v, bool) or not isinstance(v, (int, float)) or not abs(v) <= F32_MAX
    ):
        raise bad("missing_value", "a number within float32's range, or null")
    if "calendar" in meta:
        cal = meta["calendar"]
        if not (
            isinstance(cal, dict)
            and isinstance(cal.get("steps_per_day"), int)
            and not isinstance(cal.get("steps_per_day"), bool)
            and cal["steps_per_day"] > 0
            and isinstance(cal.get("start"), str)
            and isinstance(cal.get("features"), list)
        ):
            raise bad("calendar", "an object with steps_per_day, start and features")
    for name in ("input", "output"):
        if not isinstance(meta[name].get("name"), str):
            raise bad(f"{name}.name", "a string")
        shape = meta[name].get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(d, (int, str)) and not isinstance(d, bool) for d in shape
        ):
            raise bad(f"{name}.shape", "a list of sizes")
    if meta["format"] > FORMAT:
        raise bad(
            "format", f"at most {FORMAT} (written by a newer dynst_fast), got {meta['format']}"
        )
    if meta["kind"] not in SENSOR_AXIS:
        raise bad("kind", f"one of {', '.join(SENSOR_AXIS)}, got {meta['kind']!r}")
    for name in ("sensor_ids", "all_sensor_ids"):
        ids = meta[name]
        if not all(isinstance(i, str) for i in ids):
            raise bad(name, "a list of strings")
        if len(set(ids)) != len(ids):
            raise bad(name, "a list of distinct ids")
    index = meta["input_index"]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in index) or not all(
        0 <= i < meta["num_sensors"] for i in index
    ):
        raise bad("input_index", f"a list of sensor numbers in [0, {meta['num_sensors']})")
    if meta["kind"] == "image":
        g = meta.get("grid")
        if not isinstance(g, dict) or not all(
            isinstance(g.get(k), int) and not isinstance(g.get(k), bool) and g[k] > 0
            for k in GRID_KEYS
        ):
            raise bad("grid", "an object of positive ints " + ", ".join(GRID_KEYS))


def _consistent(meta: dict[str, Any]) -> bool:
    """Do the sidecar's shapes, ids and counts agree with each other?"""
    k, n, c = len(meta["sensor_ids"]), meta["num_sensors"], meta["channels"]
    c_in = c + calendar_features(meta)
    if len(meta["input_index"]) != k:
        return False
    if "alive" in meta and meta["alive"].get("shape") != [k]:
        return False
    shape_in, shape_out = meta["input"].get("shape"), meta["output"].get("shape")
    if not isinstance(shape_in, list) or not isinstance(shape_out, list):
        return False
    if len(meta["all_sensor_ids"]) != n or meta["kind"] not in SENSOR_AXIS:
        return False
    if meta["kind"] == "graph":
        return shape_in[1:] == [meta["t_in"], k, c_in] and shape_out[1:] == [meta["t_out"], n, c]
    g = meta.get("grid")
    if not isinstance(g, dict) or g.get("rows", 0) * g.get("cols", 0) != n:
        return False
    p = g["patch"]
    return shape_in[1:] == [k, meta["t_in"], c_in, p, p] and shape_out[1:] == [
        meta["t_out"],
        c,
        g["height"],
        g["width"],
    ]
