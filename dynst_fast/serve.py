"""``dynst predict``: run an exported model with onnxruntime, without importing torch.

Only numpy, json and onnxruntime are used here, so a production host needs neither
PyTorch nor a compiler. The sidecar ``<model>.onnx.json`` written by ``dynst export``
says what the model takes; every input is checked against it before running.

The input (``dynst_fast.predict_input``: ``.npy`` windows or tiles, a ``.csv`` window)
is streamed in chunks of windows, and the output (``dynst_fast.predict_output``:
``.npy`` ``[B, T_out, N, C]``, images ``[B, T_out, C, H, W]``, or a graph's one-window
``.csv``) is written chunk by chunk and published atomically. In each window, an input
sensor is **missing** where it holds NaN, inf or the sidecar's ``missing_value``
(``--on-missing``), and **suspect** where the sidecar's rules flag it as stuck or out of
range (``--on-suspect``, :mod:`dynst_fast.suspect`); a dropped sensor is switched off for
that window through the model's ``alive`` input.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .calendar import Calendar, parse_time
from .predict_input import InputWindows, PredictError, missing_error, read_input
from .predict_output import ForecastWriter, check_output_path
from .sidecar import load as load_sidecar
from .sidecar import sensor_axis
from .suspect import SuspectRules

__all__ = ["PredictError", "make_session", "predict", "read_input", "run_model"]


OPTIMIZATION = ("disable", "basic", "extended", "all")


def make_session(model: str | os.PathLike, threads: int | None = None, optimization: str = "all"):
    """An onnxruntime CPU session of ``model``: ``threads`` intra-op threads (None:
    onnxruntime's default, one per core) and graph ``optimization`` (one of
    ``OPTIMIZATION``). ``PredictError`` for settings or a file it cannot take."""
    import onnxruntime as ort

    if optimization not in OPTIMIZATION:
        choices = ", ".join(OPTIMIZATION)
        raise PredictError(f"--graph-optimization must be one of {choices}, got {optimization!r}")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise PredictError(f"--threads must be a positive integer, got {threads!r}")
    so = ort.SessionOptions()
    # errors only: the alive input's default (an initializer that is also an input, so
    # a call may override it) makes onnxruntime warn on every session otherwise
    so.log_severity_level = 3
    if threads is not None:
        so.intra_op_num_threads = threads
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    try:
        return ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own classes for a bad file
        raise PredictError(f"{model} is not a model onnxruntime can load ({_first(exc)})") from None


def calendar_input(meta: dict, time: str | None) -> np.ndarray | None:
    """``[T_in, F]``: the calendar features of the model's input steps, the last of them
    at ``time`` (ISO 8601 local time); None for a model without calendar inputs."""
    if "calendar" not in meta:
        if time is not None:
            raise PredictError("--time: this model takes no calendar inputs; leave it out")
        return None
    if time is None:
        raise PredictError(
            "this model reads the time of day and day of week: give --time, the local time "
            "of the last input step (e.g. 2012-03-07T23:55)"
        )
    try:
        cal = Calendar.from_dict(meta["calendar"], "the sidecar's calendar")
        when = parse_time(time, "--time")
    except ValueError as exc:
        raise PredictError(str(exc)) from None
    return cal.features_at(when, meta["t_in"])


def with_calendar(x: np.ndarray, meta: dict, cal: np.ndarray | None) -> np.ndarray:
    """The model's input: ``x`` (its data channels) with the calendar channels ``cal
    [T_in, F]`` appended, the same for every window and sensor."""
    if cal is None:
        return x
    f = cal.shape[1]
    if meta["kind"] == "image":  # tiles [B, K, T, C, p, p]
        b, k, t, _, p, _ = x.shape
        extra = np.broadcast_to(cal[None, None, :, :, None, None], (b, k, t, f, p, p))
        return np.ascontiguousarray(np.concatenate([x, extra], axis=3), dtype=np.float32)
    b, t, k, _ = x.shape
    extra = np.broadcast_to(cal[None, :, None, :], (b, t, k, f))
    return np.ascontiguousarray(np.concatenate([x, extra], axis=3), dtype=np.float32)


def run_model(
    model: str | os.PathLike,
    x: np.ndarray,
    meta: dict,
    alive: np.ndarray | None = None,
    session=None,
    calendar: np.ndarray | None = None,
) -> np.ndarray:
    """onnxruntime on ``x[B, T_in, K, C]`` -> ``[B, T_out, N, C]``; ``alive [K]`` (1 =
    reporting, 0 = failed) for a model exported with that input (all ones if None);
    ``session`` a :func:`make_session` of ``model`` (default settings if None);
    ``calendar [T_in, F]`` the calendar features of a model with calendar inputs
    (:func:`calendar_input`)."""
    sess = session if session is not None else make_session(model)
    feed = {meta["input"]["name"]: with_calendar(x, meta, calendar)}
    if "alive" in meta:
        k = len(meta["sensor_ids"])
        feed[meta["alive"]["name"]] = (
            np.ones(k, np.float32) if alive is None else alive.astype(np.float32)
        )
    try:
        return sess.run([meta["output"]["name"]], feed)[0]
    except Exception as exc:
        raise PredictError(
            f"{model} does not run on this input as its sidecar describes it (was the "
            f"sidecar edited?): {_first(exc)}"
        ) from None


def _first(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


ON_MISSING = ("drop", "fail")
ON_SUSPECT = ("drop", "keep", "fail")
# Windows run at once: about this much input and output, at most MAX_CHUNK windows. The
# model's activations are some hundred times its output, and onnxruntime keeps its arena
# at the largest batch it ran: 3,640 windows of a small model took 2 GB, 128 windows
# 120 MB at the same speed (bench: dynst predict --chunk on 20,000 windows).
CHUNK_BYTES = 512 << 10
MAX_CHUNK = 128
SHOWN = 5  # sensors named in a warning


class DroppedSensors:
    """Which input sensors were switched off, in which windows and why, over all chunks:
    the sensors of each reason, its first windows and its count of windows (bounded
    memory whatever the number of windows)."""

    def __init__(self, k: int) -> None:
        self.sensors: dict[str, np.ndarray] = {}
        self.windows: dict[str, list[int]] = {}
        self.counts: dict[str, int] = {}
        self.k = k

    def add(self, start: int, reason: str, flags: np.ndarray) -> None:
        rows = np.nonzero(flags.any(axis=1))[0]
        if rows.size == 0:
            return
        self.sensors[reason] = self.sensors.get(reason, np.zeros(self.k, bool)) | flags.any(axis=0)
        shown = self.windows.setdefault(reason, [])
        shown += (start + rows[: 10 - len(shown)]).tolist() if len(shown) < 10 else []
        self.counts[reason] = self.counts.get(reason, 0) + int(rows.size)

    def warn(self, path: Path, ids: list[str]) -> None:
        for reason, mask in self.sensors.items():
            names = [ids[k] for k in np.nonzero(mask)[0]]
            more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
            n = self.counts[reason]
            windows = f"{self.windows[reason]}" + (f" ({n} in all)" if n > 10 else "")
            print(
                f"dynst predict: warning: {path.name}: sensor(s) "
                f"{', '.join(map(repr, names[:SHOWN]))}{more} {_WHAT[reason]} in window(s) "
                f"{windows}: treated as failed (switched off)",
                file=sys.stderr,
            )

    def summary(self, ids: list[str]) -> dict[str, Any]:
        return {
            reason: {"sensors": [ids[k] for k in np.nonzero(m)[0]], "windows": self.counts[reason]}
            for reason, m in self.sensors.items()
        }


_IS = {
    "stuck": "stuck (the same reading at every step)",
    "out of range": "out of its training range",
}
_WHAT = {
    "missing": "have NaN (missing readings)",
    "stuck": "are stuck (the same reading at every step)",
    "out of range": "read out of their training range",
}


def predict(
    model: str | os.PathLike,
    input: str | os.PathLike,
    out: str | os.PathLike,
    sidecar: str | os.PathLike | None = None,
    on_missing: str = "drop",
    threads: int | None = None,
    optimization: str = "all",
    time: str | None = None,
    on_suspect: str = "drop",
    chunk: int | None = None,
) -> dict[str, Any]:
    """Check, run and write; returns a short summary.

    ``on_missing="drop"``: an input sensor whose window holds NaN, inf or the sidecar's
    missing value is treated as failed, switched off through the model's ``alive``
    input for that window (a warning names it); ``"fail"``: such an input is an error.
    ``on_suspect``: the same for a sensor the sidecar's rules flag as stuck or out of
    range (``"keep"``: run on it as it is). ``threads`` and ``optimization`` are the
    onnxruntime session's settings (:func:`make_session`). ``time``: for a model with
    calendar inputs, the local time of every window's last input step. ``chunk``:
    windows run at once (default: about 512 KiB of input and output, at most 128)."""
    if on_missing not in ON_MISSING:
        raise PredictError(
            f"--on-missing must be one of {', '.join(ON_MISSING)}, got {on_missing!r}"
        )
    if on_suspect not in ON_SUSPECT:
        raise PredictError(
            f"--on-suspect must be one of {', '.join(ON_SUSPECT)}, got {on_suspect!r}"
        )
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise PredictError(f"--chunk must be a positive integer, got {chunk!r}")
    meta = load_sidecar(model, sidecar)
    check_output_path(out, meta)
    try:
        rules = SuspectRules.from_sidecar(meta) if on_suspect != "keep" else None
    except ValueError as exc:
        raise PredictError(f"{sidecar or f'{model}.json'}: {exc}") from None
    if rules is None and on_suspect != "keep":
        what = (
            f"the sidecar of {model} has no suspect rules (exported before they existed, or edited)"
        )
        if on_suspect == "fail":
            raise PredictError(f"--on-suspect fail: {what}: export it again")
        print(f"dynst predict: warning: {what}: stuck or absurd sensors are not checked; "
              "export it again", file=sys.stderr)  # fmt: skip
    cal = calendar_input(meta, time)
    src = InputWindows(input, meta)
    session = make_session(model, threads, optimization)
    ids, path = meta["sensor_ids"], Path(input)
    dropped = DroppedSensors(len(ids))
    size = chunk or _chunk_windows(meta)
    with ForecastWriter(out, meta, src.count) as writer:
        for start, x in src.chunks(size):
            failed = _failed(x, meta, start, path, on_missing, rules, on_suspect, dropped)
            writer.write(_run_with_failures(model, x, failed, meta, path, start, session, cal))
    dropped.warn(path, ids)
    return {
        "windows": src.count,
        "output_shape": [src.count, *meta["output"]["shape"][1:]],
        "units": meta["units"],
        "dropped": dropped.summary(ids),
    }


def _chunk_windows(meta: dict) -> int:
    """Windows per chunk: about ``CHUNK_BYTES`` of input and output (float32)."""
    sizes = [meta["input"]["shape"][1:], meta["output"]["shape"][1:]]
    per = sum(int(np.prod([int(d) for d in s])) for s in sizes) * 4
    return max(1, min(MAX_CHUNK, CHUNK_BYTES // max(per, 1)))


def _failed(
    x: np.ndarray,
    meta: dict,
    start: int,
    path: Path,
    on_missing: str,
    rules: SuspectRules | None,
    on_suspect: str,
    dropped: DroppedSensors,
) -> np.ndarray:
    """``[b, K]`` the input sensors to switch off in each window of the chunk ``x``
    (missing, or suspect under ``drop``); ``x``'s missing readings become NaN in place.
    An error for a missing sensor under ``--on-missing fail`` or a suspect one under
    ``--on-suspect fail``, or where the model cannot switch sensors off."""
    axis, ids = sensor_axis(meta), meta["sensor_ids"]
    if meta.get("missing_value") is not None:
        x[x == np.float32(meta["missing_value"])] = np.nan
    bad = ~np.isfinite(x)
    missing = bad.any(axis=tuple(a for a in range(1, x.ndim) if a != axis))
    can_drop = "alive" in meta
    if missing.any() and (on_missing == "fail" or not can_drop):
        raise missing_error(path, meta, bad, start)
    dropped.add(start, "missing", missing)
    failed = missing.copy()
    if rules is None:
        return failed
    for reason, flags in rules.flags(x, meta["kind"]).items():
        flags &= ~missing
        if flags.any() and (on_suspect == "fail" or not can_drop):
            w, k = (int(i) for i in np.argwhere(flags)[0])
            keep = "" if can_drop else " (this model cannot switch sensors off)"
            raise PredictError(
                f"{path}: sensor {ids[k]!r} is {_IS[reason]} in window {start + w}{keep}: "
                "--on-suspect drop switches it off, keep uses it as it is"
            )
        dropped.add(start, reason, flags)
        failed |= flags
    return failed


def _run_with_failures(
    model: str | os.PathLike,
    x: np.ndarray,
    failed: np.ndarray,
    meta: dict,
    path: Path,
    start: int,
    session,
    calendar: np.ndarray | None = None,
) -> np.ndarray:
    """Run each group of windows that share a set of failed sensors with those sensors
    switched off (their input zeroed: it is not used)."""
    if failed.all(axis=1).any():
        w = start + int(np.argmax(failed.all(axis=1)))
        raise PredictError(
            f"{path}: window {w} has every input sensor missing or suspect: nothing to "
            "forecast from"
        )
    if not failed.any():
        return run_model(model, x, meta, session=session, calendar=calendar)
    x = np.where(np.isfinite(x), x, np.float32(0)).astype(np.float32)
    patterns, group = np.unique(failed, axis=0, return_inverse=True)
    y = None
    for g, pattern in enumerate(patterns):
        rows = np.nonzero(group.reshape(-1) == g)[0]
        alive = (~pattern).astype(np.float32)
        xs = np.ascontiguousarray(x[rows])
        out = run_model(model, xs, meta, alive=alive, session=session, calendar=calendar)
        if y is None:
            y = np.empty((x.shape[0], *out.shape[1:]), dtype=out.dtype)
        y[rows] = out
    return y
