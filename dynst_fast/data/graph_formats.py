"""Graph-type spatio-temporal data sets: the `GraphDataset` type and its file readers.

A data set is a values file plus an adjacency (DESIGN.md section 7):

- values: ``speed.csv`` / ``values.csv`` ([T, N], a header row of sensor ids; empty cells
  and ``nan`` are missing), or ``values.npy`` / ``values.npz`` ([T, N] or [T, N, C]; an
  ``.npz`` may also hold ``sensor_ids``);
- adjacency: ``adj.csv`` ([N, N], no header) / ``adj.npy`` / ``adj.npz`` (a
  ``scipy.sparse.save_npz`` file, N x N), or ``edges.csv`` with a header
  ``source,target[,weight]`` (sensor ids or 0-based indices; weight defaults to 1);
- optional ``locations.csv`` (``[index,]sensor_id,latitude,longitude`` or ``x,y``) and
  ``meta.json`` (``name``, ``units``, ``steps_per_day``, ``start``: the time of the
  first step, which with ``steps_per_day`` gives the calendar).

Adjacency convention as in `CSRGraph`: row = target, column = source, weights as given
(self-loops kept). Every problem with the files raises one ``ValueError`` /
``FileNotFoundError`` that names it.
"""

from __future__ import annotations

import csv
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..calendar import Calendar, calendar_from_meta
from ..graph import CSRGraph, as_graph
from ..limits import F32_MAX
from ..sensors import GraphSensors
from .arrays import CHUNK_STEPS, load_npy, load_npz_member
from .meta import read_meta
from .missing import MissingValues

VALUE_FILES = ("speed.csv", "values.csv", "values.npy", "values.npz")
ADJ_FILES = ("adj.csv", "adj.npy", "adj.npz", "edges.csv")
_INDEX_HEADERS = {"", "time", "timestamp", "date", "datetime", "index"}


@dataclass
class GraphDataset:
    """A sensor network: values ``[T, N, C]`` (original units, NaN = missing) and its graph."""

    name: str
    values: np.ndarray  # [T, N, C] float32
    adjacency: CSRGraph  # N x N, row = target, col = source
    sensor_ids: list[str]  # N ids, input order
    coords: np.ndarray | None  # [N, 2] (lat, lon) or (x, y), for plotting
    units: str  # e.g. "mph", "" if unknown
    planted: np.ndarray | None = None  # sorted int64 planted sensor indices (synthetic only)
    steps_per_day: int | None = None  # e.g. 288 for 5-minute data
    geographic: bool = True  # coords are (latitude, longitude); False: plain (x, y)
    calendar: Calendar | None = None  # when each step is, where the data says so
    missing: MissingValues | None = None  # what --missing-value masked (set at load)

    def __post_init__(self) -> None:
        # the graph may come as a PyG Data or (edge_index, edge_weight): see as_graph
        self.adjacency = as_graph(self.adjacency, int(np.shape(self.values)[1]), "GraphDataset")

    @property
    def num_steps(self) -> int:
        return int(self.values.shape[0])

    @property
    def num_sensors(self) -> int:
        return int(self.values.shape[1])

    @property
    def num_channels(self) -> int:
        return int(self.values.shape[2])

    @property
    def planted_sparsity(self) -> float | None:
        """``1 - len(planted) / N``, or None for data without planted sensors."""
        if self.planted is None:
            return None
        return 1.0 - len(self.planted) / self.num_sensors

    kind = "graph"
    values_layout = "[T, N, C]"

    def sensor_space(self, patch: int | None = None) -> GraphSensors:
        """The nodes of the network as sensors (``patch`` is for grids; ignored)."""
        return GraphSensors(
            self.adjacency, self.sensor_ids, self.planted, self.coords, self.geographic
        )

    def cell_name(self, cell: tuple[int, ...]) -> str:
        """How errors name the value at ``[sensor, channel]`` of ``values[t]``."""
        return f"sensor {self.sensor_ids[cell[0]]!r}"


def shared_data_dir() -> Path:
    """The real-data directory: ``$DYNST_DATA_DIR`` if set, else ``../shared/data`` found
    relative to the working directory (or an ancestor) or to this package's checkout."""
    env = os.environ.get("DYNST_DATA_DIR")
    if env:
        p = Path(env).expanduser()
        if not p.is_dir():
            raise FileNotFoundError(f"DYNST_DATA_DIR={env!r} is not a directory")
        return p
    repo = Path(__file__).resolve().parents[2]
    tried: list[Path] = []
    for base in (Path.cwd().resolve(), repo):
        for anc in (base, *base.parents):
            cand = anc / "shared" / "data"
            if cand not in tried:
                tried.append(cand)
            if cand.is_dir():
                return cand
    raise FileNotFoundError(
        "real data directory not found: set DYNST_DATA_DIR, or put the data in ../shared/data "
        f"(looked for shared/data under {Path.cwd()} and {repo} and their parents)"
    )


# --------------------------------------------------------------------------- readers
def _read_csv_rows(path: Path) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # a BOM is not part of an id
            rows = [[c.strip() for c in r] for r in csv.reader(f)]
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path.name} is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except csv.Error as exc:
        raise ValueError(f"{path.name} is not a CSV table ({exc})") from None
    rows = [r for r in rows if r and r != [""]]  # skip blank lines (",," is a row of NaN)
    if not rows:
        raise ValueError(f"{path.name} is empty")
    return rows


_MISSING = {"", "na", "nan", "null", "none"}


def check_float32_range(vals: np.ndarray, name: str) -> None:
    """``ValueError`` naming the first finite value beyond float32's range (the models
    compute in float32; a cast would make it infinite), in time chunks."""
    if vals.dtype.kind != "f" or vals.dtype.itemsize <= 4:
        return
    for lo in range(0, vals.shape[0], CHUNK_STEPS):
        chunk = vals[lo : lo + CHUNK_STEPS]
        with np.errstate(invalid="ignore"):
            big = np.isfinite(chunk) & (np.abs(chunk) > F32_MAX)
        if big.any():
            at = tuple(int(i) for i in np.argwhere(big)[0])
            raise ValueError(
                f"{name}: value {chunk[at]:.4g} at step {lo + at[0]} is beyond float32's range "
                f"(+-{F32_MAX:.3g}): rescale the data (its units are free)"
            )


def _to_float(cells: list[list[str]], path: Path, first_line: int, names=None) -> np.ndarray:
    """Parse a rectangular table of strings; empty / ``NA`` / ``nan`` cells become NaN."""
    width = len(cells[0])
    bad = next((i for i, r in enumerate(cells) if len(r) != width), None)
    if bad is not None:
        raise ValueError(
            f"{path.name}: line {first_line + bad} has {len(cells[bad])} values, "
            f"line {first_line} has {width}"
        )
    table = [["nan" if c.lower() in _MISSING else c for c in r] for r in cells]
    try:
        if any("_" in c for r in table for c in r):  # Python reads 1_0 as 10; a table does not
            raise ValueError("an underscore in a number")
        return np.array(table, dtype=np.float64).reshape(len(cells), width)
    except ValueError:
        for i, r in enumerate(table):
            for j, c in enumerate(r):
                try:
                    if "_" in c:
                        raise ValueError(c)
                    float(c)
                except ValueError:
                    col = f"sensor {names[j]!r}" if names is not None else f"column {j + 1}"
                    raise ValueError(
                        f"{path.name}: non-numeric value {c!r} at line {first_line + i}, {col}"
                    ) from None
        raise


def _read_values_csv(path: Path) -> tuple[np.ndarray, list[str]]:
    rows = _read_csv_rows(path)
    header, body = rows[0], rows[1:]
    if not body:
        raise ValueError(f"{path.name} has a header but no data rows")
    skip = 1 if header[0].lower() in _INDEX_HEADERS else 0  # a leading time/index column
    header = header[skip:]
    if not header:
        raise ValueError(f"{path.name}: the header row names no sensors")
    for i, r in enumerate(body):
        if len(r) - skip != len(header):
            what = "more sensors in the header than" if len(r) - skip < len(header) else "fewer"
            raise ValueError(
                f"{path.name}: {what} columns: the header names {len(header)} sensors but "
                f"line {i + 2} has {len(r) - skip} values"
            )
    vals = _to_float([r[skip:] for r in body], path, 2, header)
    return vals, header


def _read_values_array(path: Path) -> tuple[np.ndarray, list[str] | None]:
    ids = None
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                keys = [k for k in z.files if k != "sensor_ids"]
                key = next((k for k in ("values", "data", "x") if k in keys), None)
                if key is None and len(keys) == 1:
                    key = keys[0]
                if key is None:
                    raise _NoValues(z.files)
                if "sensor_ids" in z.files:
                    ids = [str(s) for s in z["sensor_ids"]]
            arr = load_npz_member(path, key)
        else:
            arr = load_npy(path)
    except _NoValues as e:
        raise ValueError(f"{path.name}: expected an array named 'values' (found {e})") from None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path.name}: cannot read it as a numpy file ({e})") from None
    if arr.size == 0:
        raise ValueError(f"{path.name} is empty (shape {arr.shape})")
    if np.iscomplexobj(arr) or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{path.name}: values must be real and numeric, got dtype {arr.dtype}")
    return arr, ids


class _NoValues(Exception):
    """An ``.npz`` without a values array (its files are the message)."""


def _read_sparse_npz(path: Path, n: int) -> CSRGraph:
    """A ``scipy.sparse.save_npz`` adjacency (read without pickles)."""
    import scipy.sparse as sp

    try:
        m = sp.load_npz(path)
    except (ValueError, KeyError, OSError) as exc:
        raise ValueError(
            f"{path.name}: not a scipy.sparse.save_npz file (an N x N sparse matrix) ({exc})"
        ) from None
    if m.shape != (n, n):
        raise ValueError(f"{path.name}: adjacency is {m.shape}, expected ({n}, {n})")
    m = sp.csr_matrix(m, dtype=np.float32)
    m.sum_duplicates()
    m.sort_indices()
    check_weights(m.data, path)
    return CSRGraph.from_scipy(m)


def read_adjacency(path: Path, ids: list[str]) -> np.ndarray | CSRGraph:
    n = len(ids)
    if path.name.startswith("edges"):
        return _read_edges(path, ids)
    if path.suffix == ".npz":
        return _read_sparse_npz(path, n)
    if path.suffix == ".npy":
        adj, _ = _read_values_array(path)
    else:
        adj = _to_float(_read_csv_rows(path), path, 1)
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise ValueError(f"{path.name}: adjacency must be a square matrix, got shape {adj.shape}")
    if adj.shape[0] != n:
        raise ValueError(
            f"{path.name}: adjacency is {adj.shape[0]} x {adj.shape[1]} but the values have "
            f"{n} sensors (expected {n} x {n})"
        )
    check_weights(adj, path)
    return adj.astype(np.float32)


def check_unique_ids(ids: list[str], where: str) -> None:
    """One ``ValueError`` naming the first sensor id that appears twice."""
    seen: set[str] = set()
    for s in ids:
        if s in seen:
            raise ValueError(f"{where}: sensor id {s!r} appears twice (ids must be unique)")
        seen.add(s)


def check_weights(w: np.ndarray, path: Path) -> None:
    if np.isnan(w).any() or np.isinf(w).any():
        raise ValueError(f"{path.name}: adjacency weights contain NaN or inf")
    if (w < 0).any():
        raise ValueError(f"{path.name}: adjacency weights must be >= 0, found {w.min():g}")


def _read_edges(path: Path, ids: list[str]) -> CSRGraph:
    import torch

    rows = _read_csv_rows(path)
    head = [h.lower() for h in rows[0]]
    if head not in (["source", "target"], ["source", "target", "weight"]):
        raise ValueError(f"{path.name}: header must be source,target[,weight], got {rows[0]}")
    body = rows[1:]
    bad = next((i for i, r in enumerate(body) if len(r) != len(head)), None)
    if bad is not None:
        raise ValueError(f"{path.name}: line {bad + 2} has {len(body[bad])} fields, not 2-3")
    pos = {s: i for i, s in enumerate(ids)}
    ends = [[r[0] for r in body], [r[1] for r in body]]
    if all(s in pos for e in ends for s in e):
        idx = np.array([[pos[s] for s in e] for e in ends], dtype=np.int64).reshape(2, -1)
    else:
        try:
            idx = np.array([[int(s) for s in e] for e in ends], dtype=np.int64).reshape(2, -1)
        except ValueError:
            unknown = next(s for e in ends for s in e if s not in pos)
            raise ValueError(f"{path.name}: unknown sensor id {unknown!r}") from None
        if idx.size and (idx.min() < 0 or idx.max() >= len(ids)):
            raise ValueError(f"{path.name}: node index out of range [0, {len(ids)})")
    w = np.ones(idx.shape[1])
    if len(head) == 3:
        w = _to_float([[r[2]] for r in body], path, 2)[:, 0]
    check_weights(w, path)
    return CSRGraph.from_edge_index(
        torch.from_numpy(idx), len(ids), torch.from_numpy(w.astype(np.float32))
    )


def read_locations(path: Path, ids: list[str]) -> np.ndarray:
    rows = _read_csv_rows(path)
    head = [h.lower() for h in rows[0]]
    pairs = (("latitude", "longitude"), ("lat", "lon"), ("lat", "lng"), ("x", "y"))
    cols = next(((head.index(a), head.index(b)) for a, b in pairs if a in head and b in head), None)
    if cols is None:
        raise ValueError(f"{path.name}: needs latitude,longitude or x,y columns, got {rows[0]}")
    body = rows[1:]
    if len(body) != len(ids):
        raise ValueError(f"{path.name}: {len(body)} locations for {len(ids)} sensors")
    xy = _to_float([[r[cols[0]], r[cols[1]]] for r in body], path, 2)
    if "sensor_id" in head:  # reorder to the values' sensor order
        k = head.index("sensor_id")
        where = {r[k]: i for i, r in enumerate(body)}
        missing = [s for s in ids if s not in where]
        if missing:
            raise ValueError(f"{path.name}: no location for sensor {missing[0]!r}")
        xy = xy[[where[s] for s in ids]]
    return xy.astype(np.float32)


def load_graph_dataset(path: str | os.PathLike) -> GraphDataset:
    """Load a graph data set from its directory (or its values file, with the adjacency
    beside it). Los-loop loads from ``.../los_loop`` (5-minute data: steps_per_day=288, mph)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"data set path {str(p)!r} does not exist")
    d = p if p.is_dir() else p.parent
    if p.is_dir():
        vfile = next((d / f for f in VALUE_FILES if (d / f).is_file()), None)
        if vfile is None:
            raise FileNotFoundError(
                f"no values file in {str(d)!r}: looked for {', '.join(VALUE_FILES)}"
            )
    else:
        vfile = p
    afile = next((d / f for f in ADJ_FILES if (d / f).is_file()), None)
    if afile is None:
        raise FileNotFoundError(f"no adjacency in {str(d)!r}: looked for {', '.join(ADJ_FILES)}")
    meta = read_meta(d)

    if vfile.suffix == ".csv":
        vals, ids = _read_values_csv(vfile)
    elif vfile.suffix in (".npy", ".npz"):
        vals, ids = _read_values_array(vfile)
    else:
        raise ValueError(f"unsupported values file {vfile.name!r} (use .csv, .npy or .npz)")
    if vals.ndim == 2:
        vals = vals[:, :, None]
    if vals.ndim != 3:
        raise ValueError(
            f"{vfile.name}: values must be [T, N] or [T, N, C], got {vals.ndim} dimensions "
            f"(shape {vals.shape})"
        )
    check_float32_range(vals, vfile.name)
    vals = vals.astype(np.float32, copy=False)  # a float32 memory map stays one
    n = vals.shape[1]
    ids = ids if ids is not None else [str(i) for i in range(n)]
    if len(ids) != n:
        raise ValueError(f"{vfile.name}: {len(ids)} sensor ids for {n} sensors")
    check_unique_ids(ids, vfile.name)
    dead = np.ones(n, dtype=bool)  # sensors with no value at all, in time chunks
    for lo in range(0, vals.shape[0], CHUNK_STEPS):
        chunk = vals[lo : lo + CHUNK_STEPS]
        dead &= np.isnan(chunk).all(axis=(0, 2))
        if np.isinf(chunk).any():
            t, i = (int(v) for v in np.argwhere(np.isinf(chunk))[0][:2])
            raise ValueError(
                f"{vfile.name}: values contain inf (step {lo + t}, sensor {ids[i]!r}): mark a "
                "missing value as NaN or an empty cell"
            )
    if dead.any():
        raise ValueError(
            f"{vfile.name}: sensor {ids[int(np.argmax(dead))]!r} has no value at all (all NaN)"
            + (f" ({int(dead.sum())} such sensors)" if dead.sum() > 1 else "")
        )

    adj = read_adjacency(afile, ids)
    graph = adj if isinstance(adj, CSRGraph) else CSRGraph.from_dense(adj)
    coords = None
    if (d / "locations.csv").is_file():
        coords = read_locations(d / "locations.csv", ids)
    is_speed = vfile.name == "speed.csv"  # Los-loop / METR-LA style: 5-minute speeds in mph
    spd = meta.get("steps_per_day", 288 if is_speed else None)
    calendar = calendar_from_meta(meta, str(d / "meta.json"))
    return GraphDataset(
        name=str(meta.get("name", d.name)),
        values=np.ascontiguousarray(vals),
        adjacency=graph,
        sensor_ids=ids,
        coords=coords,
        units=str(meta.get("units", "mph" if is_speed else "")),
        planted=None,
        steps_per_day=None if spd is None else int(spd),
        calendar=calendar,
    )
