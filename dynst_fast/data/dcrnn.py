"""The METR-LA / PEMS-BAY layout of DCRNN: a pandas HDF5 store of values and an
``adj_mx.pkl`` adjacency.

- values: one ``.h5`` file, a pandas DataFrame (timestamps x sensor ids, as
  ``DataFrame.to_hdf`` writes it, the "fixed" format); the steps per day come from the
  timestamps. It is read with h5py (``pip install 'dynst_fast[h5]'``), never with
  pandas, which would unpickle the file's attributes.
- adjacency: DCRNN's ``adj_mx.pkl`` (``(sensor_ids, sensor_id_to_ind, adj_mx [N, N])``,
  read with :func:`~dynst_fast.data.safe_pickle.load_plain_pickle`, which runs no code
  from the file); the sensors then take the pickle's order. Else any adjacency file of
  the graph layout (``adj.npz`` from ``scipy.sparse.save_npz``, ``adj.csv``, ...), in the
  columns' order.
- optional ``graph_sensor_locations.csv`` or ``locations.csv``
  (``index,sensor_id,latitude,longitude``).
"""

from __future__ import annotations

import codecs
from datetime import datetime
from pathlib import Path

import numpy as np

from ..calendar import Calendar
from ..graph import CSRGraph
from .graph_formats import ADJ_FILES, GraphDataset, check_weights, read_adjacency, read_locations
from .options import ReadOptions
from .safe_pickle import load_plain_pickle

LAYOUT = (
    "a directory (or its .h5 file) with one pandas HDF5 store of values (timestamps x "
    "sensor ids) and DCRNN's adj_mx.pkl or an adjacency adj.npz / adj.csv / adj.npy / edges.csv"
)
LOCATION_FILES = ("graph_sensor_locations.csv", "locations.csv")


def is_dcrnn_data(path: Path) -> bool:
    """A ``.h5`` file, or a directory holding exactly one."""
    if path.is_file():
        return path.suffix == ".h5"
    return path.is_dir() and len(list(path.glob("*.h5"))) == 1


def _read_h5(path: Path) -> tuple[np.ndarray, list[str], int | None]:
    """``(values [T, N], column ids, steps per day or None)`` of a pandas HDF5 store in
    the "fixed" format (what ``DataFrame.to_hdf`` writes by default), read with h5py.

    pandas and PyTables unpickle attributes and object columns when they read a store,
    which runs code from the file; h5py reads only arrays and plain attributes, so this
    reader never unpickles. Object (non-numeric) columns and the "table" format (whose
    column names are pickled) are refused.
    """
    try:
        import h5py
    except ImportError:
        raise ImportError(f"reading {path.name} needs h5py: pip install 'dynst_fast[h5]'") from None
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path.name}: not a pandas HDF5 store (HDF5 says: {exc})") from None
    with f:
        frames = [
            k
            for k, node in f.items()
            if isinstance(node, h5py.Group)
            and _attr(node, "pandas_type") in ("frame", "frame_table")
        ]
        if len(frames) != 1:
            raise ValueError(
                f"{path.name}: not a pandas HDF5 store with one DataFrame "
                f"(found {len(frames)} frames)"
            )
        g = f[frames[0]]
        if _attr(g, "pandas_type") == "frame_table":
            raise ValueError(
                f"{path.name}: a pandas 'table'-format store, whose column names are pickles; "
                "re-save it in the fixed format: df.to_hdf(path, key='df')"
            )
        enc = _encoding(_attr(g, "encoding"))
        try:
            ids = [_text(c, enc) for c in _array(g, "axis0", path)]
            index = _array(g, "axis1", path)
            vals = np.full((index.shape[0], len(ids)), np.nan)
            pos = {c: i for i, c in enumerate(ids)}
            for b in range(int(g.attrs.get("nblocks", 0))):
                items = [_text(c, enc) for c in _array(g, f"block{b}_items", path)]
                block = _array(g, f"block{b}_values", path)
                if "value_type" in g[f"block{b}_values"].attrs:  # datetime / timedelta
                    raise ValueError(
                        f"{path.name}: columns {items[:3]} hold dates or durations; "
                        "values must be numeric"
                    )
                if block.dtype.kind not in "biuf":
                    raise ValueError(
                        f"{path.name}: columns {items[:3]} are not numeric "
                        f"({block.dtype}); values must be numeric"
                    )
                if block.shape != (index.shape[0], len(items)):
                    raise ValueError(f"{path.name}: block {b} has shape {block.shape}")
                vals[:, [pos[c] for c in items]] = block
        except KeyError as exc:
            raise ValueError(f"{path.name}: not a pandas HDF5 store ({exc})") from None
        except UnicodeError as exc:
            raise ValueError(f"{path.name}: a column name is not {enc} text ({exc})") from None
        kind = _attr(f[frames[0]]["axis1"], "kind") or ""
    spd = _steps_per_day(index, kind)
    return vals, ids, spd, _calendar(index, kind, spd)


def _attr(node, name: str) -> str | None:
    v = node.attrs.get(name)
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).decode("utf-8", "replace")
    return v if isinstance(v, str) else None


def _array(group, name: str, path: Path) -> np.ndarray:
    import h5py

    node = group.get(name)
    if not isinstance(node, h5py.Dataset):
        raise ValueError(f"{path.name}: not a pandas HDF5 store (no array {name!r})")
    if node.dtype.kind == "O" or h5py.check_vlen_dtype(node.dtype) is not None:
        raise ValueError(f"{path.name}: {name} holds objects (pickles); values must be numeric")
    return node[()]


def _encoding(name: str | None) -> str:
    """The store's text encoding, UTF-8 if it names none this Python knows (pandas wrote
    ``encoding=None`` as a pickle, which reads back as ``N.``)."""
    try:
        return codecs.lookup(name).name if name else "utf-8"
    except LookupError:
        return "utf-8"


def _text(v: object, encoding: str) -> str:
    return bytes(v).decode(encoding) if isinstance(v, (bytes, np.bytes_)) else str(v)


def _steps_per_day(index: np.ndarray, kind: str) -> int | None:
    """Steps per day of a datetime index (``kind`` ``datetime64[unit]``), else None."""
    if not kind.startswith("datetime64") or index.shape[0] < 2:
        return None
    unit = kind[len("datetime64") :].strip("[]") or "ns"
    per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}.get(unit)
    if per_second is None:
        return None
    step = float(np.median(np.diff(index.astype(np.int64))))
    if step <= 0:
        return None
    per_day = 86400 * per_second / step
    return int(round(per_day)) if per_day >= 1 and abs(per_day - round(per_day)) < 1e-9 else None


def _calendar(index: np.ndarray, kind: str, spd: int | None) -> Calendar | None:
    """The calendar of a regular datetime index (its first timestamp and steps per day)."""
    if spd is None:
        return None
    unit = kind[len("datetime64") :].strip("[]") or "ns"
    start = np.datetime64(int(index[0]), unit).astype("datetime64[s]").astype(object)
    return Calendar(spd, start) if isinstance(start, datetime) else None


def _read_adj_mx(path: Path, ids: list[str]) -> tuple[CSRGraph, list[str]]:
    """DCRNN's pickle: the graph and the sensor order it defines."""
    obj = load_plain_pickle(path)
    ok = (
        isinstance(obj, (list, tuple))
        and len(obj) == 3
        and isinstance(obj[0], (list, tuple))
        and isinstance(obj[2], np.ndarray)
    )
    if not ok:
        raise ValueError(
            f"{path.name}: expected DCRNN's (sensor_ids, sensor_id_to_ind, adj_mx [N, N]), "
            f"got {type(obj).__name__}"
        )
    order = [str(s) for s in obj[0]]
    adj = np.asarray(obj[2], dtype=np.float64)
    n = len(order)
    if adj.shape != (n, n):
        raise ValueError(f"{path.name}: adj_mx is {adj.shape}, expected {n} x {n} for {n} ids")
    missing = sorted(set(order) - set(ids))
    extra = sorted(set(ids) - set(order))
    if missing or extra:
        raise ValueError(
            f"{path.name} and the values have different sensors: "
            + (f"{len(missing)} not in the values (e.g. {missing[0]!r})" if missing else "")
            + ("; " if missing and extra else "")
            + (f"{len(extra)} not in the pickle (e.g. {extra[0]!r})" if extra else "")
        )
    check_weights(adj, path)
    return CSRGraph.from_dense(adj.astype(np.float32)), order


def load_dcrnn_dataset(path: Path, options: ReadOptions | None = None) -> GraphDataset:
    """The data set of the DCRNN layout at ``path`` (``data`` is not used)."""
    d = path if path.is_dir() else path.parent
    h5 = path if path.is_file() else next(d.glob("*.h5"))
    vals, ids, spd, calendar = _read_h5(h5)
    if vals.ndim != 2 or vals.shape[0] < 2 or vals.shape[1] < 1:
        raise ValueError(f"{h5.name}: values are {vals.shape}, expected {LAYOUT}")
    if len(set(ids)) != len(ids):
        dup = next(s for s in ids if ids.count(s) > 1)
        raise ValueError(f"{h5.name}: sensor id {dup!r} is a column twice")
    if (d / "adj_mx.pkl").is_file():
        graph, order = _read_adj_mx(d / "adj_mx.pkl", ids)
        pos = {s: i for i, s in enumerate(ids)}
        vals, ids = vals[:, [pos[s] for s in order]], order
    else:
        afile = next((d / f for f in ADJ_FILES if (d / f).is_file()), None)
        if afile is None:
            raise FileNotFoundError(
                f"no adjacency in {str(d)!r}: looked for adj_mx.pkl, {', '.join(ADJ_FILES)}"
            )
        adj = read_adjacency(afile, ids)
        graph = adj if isinstance(adj, CSRGraph) else CSRGraph.from_dense(adj)
    if np.isinf(vals).any():
        raise ValueError(f"{h5.name}: values contain inf")
    dead = np.isnan(vals).all(axis=0)
    if dead.any():
        raise ValueError(f"{h5.name}: sensor {ids[int(np.argmax(dead))]!r} has no value at all")
    loc = next((d / f for f in LOCATION_FILES if (d / f).is_file()), None)
    return GraphDataset(
        name=h5.stem,
        values=np.ascontiguousarray(vals[:, :, None], dtype=np.float32),
        adjacency=graph,
        sensor_ids=ids,
        coords=None if loc is None else read_locations(loc, ids),
        units="mph",  # METR-LA and PEMS-BAY hold speeds
        steps_per_day=spd,
        calendar=calendar,
    )
