"""``dynst predict``'s output file, written chunk by chunk and published atomically.

The forecasts go to ``.<name>.partial`` beside the output (a ``.npy`` header for the
whole batch, then each chunk's rows as they come) and only a complete file is renamed
onto the output: an interrupted predict leaves no output file, and the next one starts
the partial file over. ``.csv`` (graphs, one window of one channel) holds a header of all
N sensor ids and ``T_out`` rows. numpy only.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from types import TracebackType

import numpy as np

from .predict_input import PredictError


def check_output_path(path: str | os.PathLike, meta: dict) -> Path:
    """The output path, checked before any work: a ``.npy`` or (graphs) ``.csv`` file."""
    path = Path(path)
    if path.suffix not in (".npy", ".csv"):
        raise PredictError(f"{path}: output must be .npy or .csv")
    if path.suffix == ".csv" and meta["kind"] != "graph":
        raise PredictError(f"{path}: image forecasts are written as .npy")
    if path.is_dir():
        raise PredictError(f"--out {path} is a directory: name a .npy or .csv file")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise PredictError(f"--out {path}: {parent} is a file, not a directory")
    return path


class ForecastWriter:
    """``with ForecastWriter(path, meta, count) as w: w.write(chunk)`` for ``count``
    windows in all; the file appears at ``path`` only when the block ends without an
    error and every window was written."""

    def __init__(self, path: str | os.PathLike, meta: dict, count: int) -> None:
        self.path = check_output_path(path, meta)
        self.meta, self.count, self.done = meta, count, 0
        self.partial = self.path.with_name(f".{self.path.name}.partial")
        self._file = None
        self._rows: list[np.ndarray] = []

    def __enter__(self) -> ForecastWriter:
        return self

    def write(self, y: np.ndarray) -> None:
        """The forecasts of the next ``len(y)`` windows."""
        y = np.ascontiguousarray(y, dtype=np.float32)
        if self.path.suffix == ".csv":
            if self.count != 1 or y.shape[3] != 1:
                raise PredictError(
                    f"CSV output holds one window of one channel; got {self.count} windows of "
                    f"{y.shape[3]} channels: write .npy instead"
                )
            self._rows.append(y)
        else:
            if self._file is None:
                self._open((self.count, *y.shape[1:]))
            try:
                self._file.write(y.tobytes())
            except OSError as exc:
                raise self._cannot(exc) from None
        self.done += y.shape[0]

    def _open(self, shape: tuple[int, ...]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = _fresh(self.partial)
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                      "fortran_order": False, "shape": shape}  # fmt: skip
            np.lib.format.write_array_header_2_0(self._file, header)
        except OSError as exc:
            raise PredictError(
                f"--out {self.path}: cannot write it ({exc.strerror or exc})"
            ) from None

    def _cannot(self, exc: OSError) -> PredictError:
        return PredictError(f"--out {self.path}: cannot write it ({exc.strerror or exc})")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if kind is None:
                if self.done != self.count:
                    raise PredictError(f"wrote {self.done} of {self.count} windows")
                self._publish()
        finally:
            if self._file is not None and not self._file.closed:
                self._file.close()
            try:
                self.partial.unlink(missing_ok=True)
            except OSError:
                pass  # nothing was created there

    def _publish(self) -> None:
        try:
            if self.path.suffix == ".csv":
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with _fresh(self.partial, text=True) as f:
                    w = csv.writer(f)
                    w.writerow(self.meta["all_sensor_ids"])
                    w.writerows([[f"{v:.6g}" for v in row] for row in self._rows[0][0, :, :, 0]])
            else:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
            os.replace(self.partial, self.path)
        except OSError as exc:
            raise PredictError(
                f"--out {self.path}: cannot write it ({exc.strerror or exc})"
            ) from None


def _fresh(path: Path, text: bool = False):
    """``path`` opened for writing as a new file: a stale one (a killed predict's) is
    removed first, never followed if it is a link, and the new one gets the umask's mode
    (0666 less it), whatever the old one had."""
    path.unlink(missing_ok=True)  # a link is removed, not followed
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o666)
    return os.fdopen(fd, "w", newline="") if text else os.fdopen(fd, "wb")
