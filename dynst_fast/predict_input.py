"""``dynst predict``'s input file, read and checked against the sidecar, window chunk by
window chunk (memory bounded by the chunk, not the file). numpy only.

- ``.npy``: ``[B, T_in, K, C]``, ``[T_in, K, C]``, or ``[T_in, K]`` when C = 1, the K
  input sensors in sidecar order (``sensor_ids``), original units. Image models take
  the K active tiles ``[B, K, T_in, C, p, p]`` (or ``[K, T_in, C, p, p]``), or whole
  frames ``[B, T_in, C, H, W]`` (or ``[T_in, C, H, W]``) from which the tiles are cut.
  Never unpickled; read by seeking, so a file of 100,000 windows is never in memory.
- ``.csv`` (graphs, C = 1): one window, a header row of sensor ids, then ``T_in`` rows,
  oldest first, UTF-8 with or without a byte-order mark. Columns are matched by id (a
  file with all N sensors works too); a missing or repeated input sensor is an error.

NaN and inf are kept (the caller decides what a missing reading means); a number that
float32 cannot hold is an error.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .limits import F32_MAX


class PredictError(ValueError):
    """Bad model, sidecar or input for ``dynst predict`` (the message says which)."""


class InputWindows:
    """The windows of one input file in the model's input layout (graphs ``[B, T_in, K,
    C]``, images ``[B, K, T_in, C, p, p]``): ``count`` of them, read by :meth:`chunks`."""

    def __init__(self, path: str | os.PathLike, meta: dict) -> None:
        self.path, self.meta = Path(path), meta
        if not self.path.is_file():
            raise PredictError(f"no input file at {self.path}")
        if self.path.suffix == ".csv":
            if meta["kind"] == "image":
                raise PredictError(f"{self.path}: image models take .npy input (tiles or frames)")
            self._whole: np.ndarray | None = _read_csv(self.path, meta)
            self.count = 1
        elif self.path.suffix == ".npy":
            self._whole = None
            self._open_npy()
        else:
            raise PredictError(f"{self.path}: input must be .npy or .csv")
        if self.count == 0:
            raise PredictError(f"{self.path}: the input holds 0 windows: nothing to forecast")

    # ------------------------------------------------------------------ .npy
    def _open_npy(self) -> None:
        try:
            mm = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            first = " ".join(str(exc).split()) or type(exc).__name__
            raise PredictError(
                f"{self.path} is not a readable numeric .npy file ({first})"
            ) from None
        if not isinstance(mm, np.ndarray):
            raise PredictError(f"{self.path} is not a .npy array file (an .npz archive?)")
        if np.iscomplexobj(mm) or mm.dtype.kind not in "iuf":
            raise PredictError(f"{self.path}: input must be real and numeric, got dtype {mm.dtype}")
        self.dtype, shape = mm.dtype, tuple(mm.shape)
        self._offset = int(mm.offset) if isinstance(mm, np.memmap) else None
        self._fortran = bool(mm.flags.f_contiguous and not mm.flags.c_contiguous)
        del mm
        self._file_shape = shape
        self._batched, self._frames = self._layout(shape)
        self.count = shape[0] if self._batched else 1

    def _layout(self, shape: tuple[int, ...]) -> tuple[bool, bool]:
        """(the file has a batch axis, it holds whole frames) for a shape the sidecar
        allows; ``PredictError`` otherwise."""
        m = self.meta
        t_in, k, c = m["t_in"], len(m["sensor_ids"]), m["channels"]
        if m["kind"] == "image":
            g = m["grid"]
            p = g["patch"]
            tiles, frames = (k, t_in, c, p, p), (t_in, c, g["height"], g["width"])
            for one, is_frames in ((tiles, False), (frames, True)):
                if shape == one:
                    return False, is_frames
                if shape[1:] == one:
                    return True, is_frames
            raise PredictError(
                f"{self.path}: input must be the active tiles [B, {', '.join(map(str, tiles))}] "
                f"or frames [B, {', '.join(map(str, frames))}], got shape {shape}"
            )
        if len(shape) == 2 and c == 1 and shape == (t_in, k):
            return False, False
        if shape == (t_in, k, c):
            return False, False
        if len(shape) == 4 and shape[1:] == (t_in, k, c):
            return True, False
        raise PredictError(
            f"{self.path}: input must be [B, {t_in}, {k}, {c}] (T_in, input sensors, channels), "
            f"got shape {shape}"
        )

    def _read_rows(self, start: int, stop: int) -> np.ndarray:
        """Windows ``start:stop`` of the file as stored (with its batch axis)."""
        shape = self._file_shape if self._batched else (1, *self._file_shape)
        per = int(np.prod(shape[1:], dtype=np.int64))
        if self._fortran or self._offset is None:  # not laid out window by window
            whole = np.load(self.path, allow_pickle=False)
            return np.ascontiguousarray(whole).reshape(shape)[start:stop]
        with open(self.path, "rb") as f:
            f.seek(self._offset + start * per * self.dtype.itemsize)
            flat = np.fromfile(f, dtype=self.dtype, count=(stop - start) * per)
        if flat.size != (stop - start) * per:
            raise PredictError(f"{self.path} is shorter than its header says (truncated?)")
        return flat.reshape(stop - start, *shape[1:])

    # --------------------------------------------------------------- chunks
    def chunks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, windows)``: the windows ``start:start + size`` as float32 in the
        model's input layout, NaN kept."""
        for start in range(0, self.count, size):
            stop = min(start + size, self.count)
            if self._whole is not None:
                raw = self._whole[start:stop]
            else:
                raw = self._read_rows(start, stop)
                if self.meta["kind"] == "graph" and raw.ndim == 3:  # [B, T_in, K], C = 1
                    raw = raw[..., None]
                if self._frames:
                    raw = self._tiles(raw)
            yield start, self._float32(raw, start)

    def _tiles(self, f: np.ndarray) -> np.ndarray:
        """Frames ``[B, T_in, C, H, W]`` -> the active tiles ``[B, K, T_in, C, p, p]``."""
        g, t_in, c = self.meta["grid"], self.meta["t_in"], self.meta["channels"]
        p = g["patch"]
        pad = ((0, 0), (0, 0), (0, 0), (0, g["rows"] * p - g["height"]),
               (0, g["cols"] * p - g["width"]))  # fmt: skip
        f = np.pad(f, pad)
        b = f.shape[0]
        f = f.reshape(b, t_in, c, g["rows"], p, g["cols"], p).transpose(0, 3, 5, 1, 2, 4, 6)
        f = f.reshape(b, g["rows"] * g["cols"], t_in, c, p, p)
        return f[:, np.asarray(self.meta["input_index"], dtype=np.int64)]

    def _float32(self, x: np.ndarray, start: int) -> np.ndarray:
        """``x`` as float32; a finite value beyond float32's range is an error naming
        where it is (it would otherwise become inf, i.e. missing)."""
        if x.dtype.kind == "f" and x.dtype.itemsize > 4:
            with np.errstate(invalid="ignore"):
                big = np.isfinite(x) & (np.abs(x) > F32_MAX)
            if big.any():
                at = tuple(int(i) for i in np.argwhere(big)[0])
                axis = 2 if self.meta["kind"] == "graph" else 1
                raise PredictError(
                    f"{self.path}: value {x[at]:.4g} (window {start + at[0]}, sensor "
                    f"{self.meta['sensor_ids'][at[axis]]!r}) is beyond float32's range "
                    f"(+-{F32_MAX:.3g}), which the model computes in"
                )
        return np.ascontiguousarray(x, dtype=np.float32)


def read_input(path: str | os.PathLike, meta: dict, allow_missing: bool = False) -> np.ndarray:
    """The whole input file as the model's input (float32), checked against the sidecar.
    NaN and inf are refused unless ``allow_missing``."""
    src = InputWindows(path, meta)
    x = np.concatenate([c for _, c in src.chunks(src.count)])
    if not allow_missing and not np.isfinite(x).all():
        raise missing_error(path, meta, ~np.isfinite(x))
    return x


def missing_error(path: str | os.PathLike, meta: dict, bad: np.ndarray, start: int = 0):
    """The error for the first missing reading of ``bad`` (a chunk's non-finite mask, in
    the model's input layout; its windows from ``start``)."""
    at = np.argwhere(bad)[0]
    axis = 2 if meta["kind"] == "graph" else 1
    t = at[1] if axis == 2 else at[2]
    return PredictError(
        f"{path}: input has NaN or inf (window {start + at[0]}, step {t}, sensor "
        f"{meta['sensor_ids'][at[axis]]!r}); the model needs every active sensor's data"
    )


def _read_csv(path: Path, meta: dict) -> np.ndarray:
    """One window ``[1, T_in, K, 1]`` from a CSV with a header row of sensor ids."""
    if meta["channels"] != 1:
        raise PredictError(
            f"{path}: CSV input holds one channel; this model takes {meta['channels']}"
        )
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as exc:
        raise PredictError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise PredictError(f"{path} is not a CSV table ({exc})") from None
    if not rows:
        raise PredictError(f"{path} is empty")
    header = [h.strip() for h in rows[0]]
    wanted = {str(s) for s in meta["sensor_ids"]}
    col_of: dict[str, int] = {}
    for i, h in enumerate(header):
        if h in col_of and h in wanted:
            raise PredictError(
                f"{path}: input sensor {h!r} is a column twice (columns {col_of[h] + 1} and "
                f"{i + 1}): keep one"
            )
        col_of.setdefault(h, i)
    missing = [s for s in meta["sensor_ids"] if str(s) not in col_of]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise PredictError(
            f"{path}: missing input sensor column(s) {', '.join(map(repr, missing[:3]))}{more}"
        )
    body = [r for r in rows[1:] if r]  # a line of empty cells is a step with no reading
    if len(body) != meta["t_in"]:
        raise PredictError(f"{path}: expected {meta['t_in']} rows (T_in steps), got {len(body)}")
    cols = [col_of[str(s)] for s in meta["sensor_ids"]]
    try:
        x = np.array([[_number(r[j]) for j in cols] for r in body])
    except (ValueError, IndexError) as exc:
        raise PredictError(f"{path}: a cell is not a number or a row is short ({exc})") from exc
    huge = np.isinf(x) & np.array(
        [[r[j].strip().lower().lstrip("+-") not in ("inf", "infinity") for j in cols] for r in body]
    )
    if huge.any():
        t, k = (int(i) for i in np.argwhere(huge)[0])
        raise PredictError(
            f"{path}: value {body[t][cols[k]].strip()!r} (step {t}, sensor "
            f"{meta['sensor_ids'][k]!r}) is beyond float32's range (+-{F32_MAX:.3g})"
        )
    return x[None, :, :, None]


def _number(cell: str) -> float:
    """A CSV cell as a number (blank: NaN); Python's ``1_0`` (10) is not one in a table."""
    cell = cell.strip()
    if not cell:
        return np.nan
    if "_" in cell:
        raise ValueError(f"could not convert string to float: {cell!r}")
    return float(cell)
