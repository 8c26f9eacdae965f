"""``dynst predict``: run an exported model with onnxruntime, without importing torch.

Only numpy, json and onnxruntime are used here, so a production host needs neither
PyTorch nor a compiler. The sidecar ``<model>.onnx.json`` written by ``dynst export``
says what the model takes; every input is checked against it before running.

Input files:
- ``.npy``: ``[B, T_in, K, C]``, ``[T_in, K, C]``, or ``[T_in, K]`` when C = 1, the K
  input sensors in sidecar order (``sensor_ids``), original units.
- ``.csv``: one window (C = 1): a header row of sensor ids, then ``T_in`` rows, oldest
  first. Columns are matched by id, so a file with all N sensors works too; a missing
  input sensor is an error.

Image models (sidecar ``kind: image``) take ``.npy`` only: the K active patch tiles
``[B, K, T_in, C, p, p]`` (or ``[K, T_in, C, p, p]``), or whole frames
``[B, T_in, C, H, W]`` (or ``[T_in, C, H, W]``) from which the active tiles are cut.

Output: ``.npy`` ``[B, T_out, N, C]`` (images: ``[B, T_out, C, H, W]``), or for graphs
``.csv`` (B = 1, C = 1) with a header of all N sensor ids and ``T_out`` rows.

The sidecar is read and checked by ``dynst_fast.sidecar``.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .calendar import Calendar, parse_time
from .sidecar import load as load_sidecar
from .sidecar import sensor_axis


class PredictError(ValueError):
    """Bad model, sidecar or input for ``dynst predict`` (the message says which)."""


def read_input(path: str | os.PathLike, meta: dict, allow_missing: bool = False) -> np.ndarray:
    """The input file as the model's input (``[B, T_in, K, C]``, or image tiles
    ``[B, K, T_in, C, p, p]``) in float32, checked against the sidecar. NaN and inf are
    refused unless ``allow_missing`` (then :func:`failed_sensors` finds them)."""
    path = Path(path)
    if not path.is_file():
        raise PredictError(f"no input file at {path}")
    if meta["kind"] == "image":
        x = _read_tiles(path, meta)
        return x.astype(np.float32) if allow_missing else _finite(x, path, meta)
    t_in, k, c = meta["t_in"], len(meta["sensor_ids"]), meta["channels"]
    if path.suffix == ".npy":
        x = _load_npy(path)
        if x.ndim == 2 and c == 1:
            x = x[None, :, :, None]
        elif x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1:] != (t_in, k, c):
            raise PredictError(
                f"{path}: input must be [B, {t_in}, {k}, {c}] (T_in, input sensors, channels), "
                f"got shape {tuple(np.shape(x))}"
            )
        if not np.issubdtype(x.dtype, np.number):
            raise PredictError(f"{path}: input must be numeric, got dtype {x.dtype}")
    elif path.suffix == ".csv":
        x = _read_csv(path, meta)
    else:
        raise PredictError(f"{path}: input must be .npy or .csv")
    return x.astype(np.float32) if allow_missing else _finite(x, path, meta)


def failed_sensors(x: np.ndarray, meta: dict) -> np.ndarray:
    """``[B, K]`` bool: the input sensors whose window holds a NaN or inf."""
    axis = sensor_axis(meta)
    bad = ~np.isfinite(x)
    other = tuple(a for a in range(1, x.ndim) if a != axis)
    return bad.any(axis=other)


def _load_npy(path: Path) -> np.ndarray:
    """A ``.npy`` file, never unpickled (object arrays are refused), named in errors."""
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        first = " ".join(str(exc).split()) or type(exc).__name__
        raise PredictError(f"{path} is not a readable numeric .npy file ({first})") from None
    if not isinstance(x, np.ndarray):
        raise PredictError(f"{path} is not a .npy array file (an .npz archive?)")
    if np.iscomplexobj(x) or not np.issubdtype(x.dtype, np.number):
        raise PredictError(f"{path}: input must be real and numeric, got dtype {x.dtype}")
    return x


def _finite(x: np.ndarray, path: Path, meta: dict) -> np.ndarray:
    x = x.astype(np.float32)
    axis = sensor_axis(meta)
    if not np.isfinite(x).all():
        at = np.argwhere(~np.isfinite(x))[0]
        t = at[2] if axis == 1 else at[1]
        raise PredictError(
            f"{path}: input has NaN or inf (window {at[0]}, step {t}, sensor "
            f"{meta['sensor_ids'][at[axis]]!r}); the model needs every active sensor's data"
        )
    return np.ascontiguousarray(x)


def _read_tiles(path: Path, meta: dict) -> np.ndarray:
    """Image input: the active tiles as given, or cut from whole frames."""
    if path.suffix != ".npy":
        raise PredictError(f"{path}: image models take .npy input (tiles or frames)")
    x = _load_npy(path)
    if not np.issubdtype(x.dtype, np.number):
        raise PredictError(f"{path}: input must be numeric, got dtype {x.dtype}")
    g, t_in, c = meta["grid"], meta["t_in"], meta["channels"]
    p, k = g["patch"], len(meta["sensor_ids"])
    tiles, frames = (k, t_in, c, p, p), (t_in, c, g["height"], g["width"])
    if x.shape in (tiles, frames):
        x = x[None]
    if x.shape[1:] == tiles:
        return x
    if x.shape[1:] == frames:
        pad = (
            (0, 0),
            (0, 0),
            (0, 0),
            (0, g["rows"] * p - g["height"]),
            (0, g["cols"] * p - g["width"]),
        )
        f = np.pad(x, pad)
        b = f.shape[0]
        f = f.reshape(b, t_in, c, g["rows"], p, g["cols"], p).transpose(0, 3, 5, 1, 2, 4, 6)
        f = f.reshape(b, g["rows"] * g["cols"], t_in, c, p, p)
        return f[:, np.asarray(meta["input_index"], dtype=np.int64)]
    raise PredictError(
        f"{path}: input must be the active tiles [B, {', '.join(map(str, tiles))}] or frames "
        f"[B, {', '.join(map(str, frames))}], got shape {tuple(x.shape)}"
    )


def _read_csv(path: Path, meta: dict) -> np.ndarray:
    if meta["channels"] != 1:
        raise PredictError(
            f"{path}: CSV input holds one channel; this model takes {meta['channels']}"
        )
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise PredictError(f"{path} is empty")
    header = [h.strip() for h in rows[0]]
    col_of = {h: i for i, h in enumerate(header)}
    missing = [s for s in meta["sensor_ids"] if str(s) not in col_of]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise PredictError(
            f"{path}: missing input sensor column(s) {', '.join(map(repr, missing[:3]))}{more}"
        )
    body = [r for r in rows[1:] if any(cell.strip() for cell in r)]
    if len(body) != meta["t_in"]:
        raise PredictError(f"{path}: expected {meta['t_in']} rows (T_in steps), got {len(body)}")
    cols = [col_of[str(s)] for s in meta["sensor_ids"]]
    try:
        x = np.array([[float(r[j]) if r[j].strip() else np.nan for j in cols] for r in body])
    except (ValueError, IndexError) as exc:
        raise PredictError(f"{path}: a cell is not a number or a row is short ({exc})") from exc
    return x[None, :, :, None]


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


def write_output(path: str | os.PathLike, y: np.ndarray, meta: dict) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    if path.is_dir():
        raise PredictError(f"--out {path} is a directory: name a .npy or .csv file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, tmp, y, meta)
        os.replace(tmp, path)
    except OSError as exc:
        raise PredictError(f"--out {path}: cannot write it ({exc.strerror or exc})") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _write(path: Path, tmp: Path, y: np.ndarray, meta: dict) -> None:
    if path.suffix == ".npy":
        with open(tmp, "wb") as f:
            np.save(f, y)
    elif path.suffix == ".csv":
        if meta["kind"] != "graph":
            raise PredictError(f"{path}: image forecasts are written as .npy")
        if y.shape[0] != 1 or y.shape[3] != 1:
            raise PredictError(
                f"CSV output holds one window of one channel; got {y.shape[0]} windows of "
                f"{y.shape[3]} channels: write .npy instead"
            )
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(meta["all_sensor_ids"])
            w.writerows([[f"{v:.6g}" for v in row] for row in y[0, :, :, 0]])
    else:
        raise PredictError(f"{path}: output must be .npy or .csv")


ON_MISSING = ("drop", "fail")


def predict(
    model: str | os.PathLike,
    input: str | os.PathLike,
    out: str | os.PathLike,
    sidecar: str | os.PathLike | None = None,
    on_missing: str = "drop",
    threads: int | None = None,
    optimization: str = "all",
    time: str | None = None,
) -> dict[str, Any]:
    """Check, run and write; returns a short summary.

    ``on_missing="drop"``: an input sensor whose window holds NaN (or inf) is treated as
    failed, switched off through the model's ``alive`` input for that window (a warning
    names it); ``"fail"``: such an input is an error. ``threads`` and ``optimization``
    are the onnxruntime session's settings (:func:`make_session`). ``time``: for a model
    with calendar inputs, the local time of every window's last input step."""
    if on_missing not in ON_MISSING:
        raise PredictError(
            f"--on-missing must be one of {', '.join(ON_MISSING)}, got {on_missing!r}"
        )
    if Path(out).suffix not in (".npy", ".csv"):
        raise PredictError(f"{out}: output must be .npy or .csv")
    meta = load_sidecar(model, sidecar)
    if Path(out).suffix == ".csv" and meta["kind"] != "graph":
        raise PredictError(f"{out}: image forecasts are written as .npy")
    cal = calendar_input(meta, time)
    session = make_session(model, threads, optimization)
    if on_missing == "fail" or "alive" not in meta:
        x = read_input(input, meta)
        y = run_model(model, x, meta, session=session, calendar=cal)
        failed = np.zeros((x.shape[0], 0), bool)
    else:
        x = read_input(input, meta, allow_missing=True)
        failed = failed_sensors(x, meta)
        y = _run_with_failures(model, x, failed, meta, Path(input), session, cal)
    write_output(out, y, meta)
    return {
        "windows": int(x.shape[0]),
        "output_shape": list(y.shape),
        "units": meta["units"],
        "failed": [[meta["sensor_ids"][k] for k in np.nonzero(row)[0]] for row in failed],
    }


def _run_with_failures(
    model: str | os.PathLike,
    x: np.ndarray,
    failed: np.ndarray,
    meta: dict,
    path: Path,
    session,
    calendar: np.ndarray | None = None,
) -> np.ndarray:
    """Run each group of windows that share a set of failed sensors with those sensors
    switched off (their input zeroed: it is not used)."""
    ids = meta["sensor_ids"]
    if failed.all(axis=1).any():
        w = int(np.argmax(failed.all(axis=1)))
        raise PredictError(
            f"{path}: window {w} has NaN for every input sensor: nothing to forecast from"
        )
    if failed.any():
        names = [ids[k] for k in np.nonzero(failed.any(axis=0))[0]]
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        windows = np.nonzero(failed.any(axis=1))[0].tolist()
        print(
            f"dynst predict: warning: {path.name}: sensor(s) {', '.join(map(repr, names[:5]))}"
            f"{more} have NaN in window(s) {windows[:10]}: treated as failed (switched off)",
            file=sys.stderr,
        )
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
