"""The PEMS03/04/07/08 layout of ASTGCN / STSGCN: values in an ``.npz`` and a distance
list, turned into the thresholded Gaussian-kernel adjacency of DCRNN.

- values: ``<name>.npz`` holding ``data`` ``[T, N, C]`` (PEMS04: flow, occupancy, speed;
  every channel is kept);
- distances: ``<name>.csv`` (or the one ``.csv`` beside it) with the header
  ``from,to,cost``: node indices (or, with a ``<name>.txt`` list of sensor ids, one per
  line or comma-separated, those ids) and the road distance;
- adjacency ``W_ij = exp(-(d_ij / sigma)^2)``, 0 where that is below ``threshold``, made
  symmetric (``max(W_ij, W_ji)``), self-loops 1. ``sigma`` defaults to the standard
  deviation of the listed distances and ``threshold`` to 0.1, as DCRNN does
  (``--distance-sigma``, ``--distance-threshold``).
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np

from ..graph import distance_kernel
from .graph_formats import GraphDataset, check_unique_ids, check_weights
from .options import ReadOptions

LAYOUT = (
    "a directory (or its .npz) with <name>.npz holding data [T, N, C] and a distance list "
    "<name>.csv with the header from,to,cost (optional <name>.txt of sensor ids)"
)


def _npz_keys(path: Path) -> list[str] | None:
    """The array names of an ``.npz`` (None if it cannot be read as a zip)."""
    try:
        with zipfile.ZipFile(path) as z:
            return [name.removesuffix(".npy") for name in z.namelist()]
    except (zipfile.BadZipFile, OSError):
        return None


def _may_be_pems(path: Path) -> bool:
    """Has a ``data`` array, or is unreadable (so that the loader names the file)."""
    keys = _npz_keys(path)
    return keys is None or "data" in keys


def _npz_of(path: Path) -> Path | None:
    if path.is_file():
        return path if path.suffix == ".npz" and _may_be_pems(path) else None
    if not path.is_dir():
        return None
    found = [p for p in sorted(path.glob("*.npz")) if _may_be_pems(p)]
    return found[0] if len(found) == 1 else None


def is_pems_data(path: Path) -> bool:
    """An ``.npz`` with a ``data`` array and a ``.csv`` beside it (or their directory)."""
    npz = _npz_of(path)
    return npz is not None and any(npz.parent.glob("*.csv"))


def _read_ids(path: Path) -> list[str]:
    text = path.read_text().replace(",", "\n")
    return [s.strip() for s in text.splitlines() if s.strip()]


def _read_distances(path: Path, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f) if r]
    head = [h.strip().lower() for h in rows[0]] if rows else []
    if head[:3] != ["from", "to", "cost"] and head[:3] != ["from", "to", "distance"]:
        raise ValueError(f"{path.name}: the header must be from,to,cost, got {rows[:1]}; {LAYOUT}")
    pos = {s: i for i, s in enumerate(ids)}
    ei, dist = [], []
    for line, r in enumerate(rows[1:], start=2):
        if len(r) < 3:
            raise ValueError(f"{path.name}: line {line} has {len(r)} fields, not 3")
        a, b = r[0].strip(), r[1].strip()
        try:
            pair = (pos[a], pos[b]) if a in pos and b in pos else (int(a), int(b))
            d = float(r[2])
        except ValueError:
            raise ValueError(f"{path.name}: line {line}: unknown sensor or bad cost {r}") from None
        if not (0 <= pair[0] < len(ids) and 0 <= pair[1] < len(ids)):
            raise ValueError(f"{path.name}: line {line}: node {r[:2]} outside 0..{len(ids) - 1}")
        ei.append(pair)
        dist.append(d)
    dist_a = np.asarray(dist, dtype=np.float64)
    check_weights(dist_a, path)
    return np.asarray(ei, dtype=np.int64).reshape(-1, 2).T, dist_a


def load_pems_dataset(path: Path, options: ReadOptions | None = None) -> GraphDataset:
    options = options or ReadOptions()
    npz = _npz_of(path)
    if npz is None:
        raise ValueError(f"{path}: no .npz with a data array; expected {LAYOUT}")
    try:
        with np.load(npz, allow_pickle=False) as z:
            vals = np.asarray(z["data"])
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise ValueError(f"{npz.name}: cannot read its 'data' array ({e})") from None
    if vals.ndim == 2:
        vals = vals[:, :, None]
    if vals.ndim != 3 or not np.issubdtype(vals.dtype, np.number):
        raise ValueError(f"{npz.name}: data is {vals.shape} {vals.dtype}, expected {LAYOUT}")
    if np.iscomplexobj(vals):
        raise ValueError(f"{npz.name}: data is complex; expected real values")
    n = vals.shape[1]
    d = npz.parent
    txt = d / f"{npz.stem}.txt"
    ids = _read_ids(txt) if txt.is_file() else [str(i) for i in range(n)]
    if len(ids) != n:
        raise ValueError(f"{txt.name}: {len(ids)} sensor ids for {n} sensors in {npz.name}")
    check_unique_ids(ids, txt.name)
    csvs = [d / f"{npz.stem}.csv"] if (d / f"{npz.stem}.csv").is_file() else sorted(d.glob("*.csv"))
    if len(csvs) != 1:
        raise ValueError(f"{d}: expected one distance list {npz.stem}.csv, found {len(csvs)}")
    ei, dist = _read_distances(csvs[0], ids)
    vals = vals.astype(np.float32)
    if not np.isfinite(vals).all():
        raise ValueError(f"{npz.name}: data contains NaN or inf")
    return GraphDataset(
        name=npz.stem,
        values=np.ascontiguousarray(vals),
        adjacency=distance_kernel(ei, dist, n, options.distance_sigma, options.distance_threshold),
        sensor_ids=ids,
        coords=None,
        units="",
        steps_per_day=288,  # the PEMS sets are 5-minute data
    )
