"""The registry of data formats: how ``--data PATH`` becomes a data set.

A format is one :class:`DataFormat` entry: a name, the layout it expects (for errors and
help), a test whether a path is in it, and its loader. ``load_dataset`` tries the
registered formats in order; a path none of them claims is read as the graph layout
(whose loader names what it looked for). ``--data`` left out is the synthetic data set
with planted sensors of the kind the model asks for.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import dcrnn, pems, pyg_temporal
from .graph_formats import GraphDataset, load_graph_dataset
from .grid import GridDataset, is_grid_data, load_grid_dataset, synthetic_grid
from .meta import read_meta
from .missing import apply_missing_value
from .options import ReadOptions
from .synthetic import synthetic_sensor_network

Dataset = GraphDataset | GridDataset


@dataclass(frozen=True)
class DataFormat:
    """One file layout: ``matches(path)`` says whether ``path`` is in it, ``load(path,
    options)`` reads it (``options``: the :class:`ReadOptions` some readers take, e.g. the
    distance kernel), raising one ``ValueError`` / ``FileNotFoundError`` that names the
    problem."""

    name: str
    layout: str
    matches: Callable[[Path], bool]
    load: Callable[[Path, ReadOptions], Dataset]
    missing_value: float | None = None  # what ``--missing-value auto`` means for it


GRID = DataFormat(
    "grid",
    "a .npy array [T, H, W] or [T, C, H, W] (the file, or a directory holding exactly one, "
    "with an optional meta.json)",
    is_grid_data,
    lambda path, options: load_grid_dataset(path),
)
# METR-LA / PEMS-BAY and the PEMS sets store "no reading" as 0, and the field scores them
# with 0 masked (DCRNN, Graph WaveNet, BasicTS: null_val = 0)
DCRNN = DataFormat(
    "metr-la (DCRNN)", dcrnn.LAYOUT, dcrnn.is_dcrnn_data, dcrnn.load_dcrnn_dataset, 0.0
)
PYG_TEMPORAL = DataFormat(
    "pyg-temporal json",
    pyg_temporal.LAYOUT,
    pyg_temporal.is_pyg_temporal_json,
    pyg_temporal.load_pyg_temporal_json,
)
PEMS = DataFormat("pems (ASTGCN)", pems.LAYOUT, pems.is_pems_data, pems.load_pems_dataset, 0.0)
GRAPH = DataFormat(
    "graph",
    "a directory (or its values file) with values speed.csv / values.csv / values.npy / "
    "values.npz and an adjacency adj.csv / adj.npy / adj.npz / edges.csv",
    lambda path: True,
    lambda path, options: load_graph_dataset(path),
)
FORMATS: list[DataFormat] = [GRID, DCRNN, PYG_TEMPORAL, PEMS]  # tried in order; then GRAPH

SYNTHETIC: dict[str, Callable[[int, int], Dataset]] = {
    "graph": lambda seed, patch: synthetic_sensor_network(seed=seed),
    "grid": lambda seed, patch: synthetic_grid(patch=patch, seed=seed),
}


SYNTHETIC_SPEC = re.compile(r"synthetic(?::(\d+))?(?::(\d+))?")
MAX_SYNTHETIC = 100_000
PLANTED_SHARE = 0.2  # planted sensors per sensor of ``synthetic:N`` (16 of the default 80)


def synthetic_from_spec(spec: str, kind: str, seed: int) -> Dataset:
    """``--data synthetic[:N[:T]]``: the planted sensor network with N sensors (a fifth
    of them planted) over T steps (default 3000)."""
    m = SYNTHETIC_SPEC.fullmatch(spec)
    if m is None:
        raise ValueError(
            f"data set path {spec!r} does not exist (for generated data write synthetic, "
            "synthetic:N or synthetic:N:T, e.g. synthetic:16384)"
        )
    if kind != "graph":
        raise ValueError(f"--data {spec}: the planted sensor network is graph data, not {kind}")
    n = int(m.group(1)) if m.group(1) else 80
    t = int(m.group(2)) if m.group(2) else 3000
    if not 2 <= n <= MAX_SYNTHETIC:
        raise ValueError(f"--data {spec}: N must be in [2, {MAX_SYNTHETIC}], got {n}")
    return synthetic_sensor_network(
        num_sensors=n, num_planted=max(1, round(PLANTED_SHARE * n)), num_steps=t, seed=seed
    )


def register_format(fmt: DataFormat) -> DataFormat:
    """Add a format (tried after the ones registered before it, before the graph layout)."""
    FORMATS.append(fmt)
    return fmt


def format_of(path: str | os.PathLike) -> DataFormat:
    """The format that claims ``path`` (the graph layout if none does)."""
    p = Path(path)
    return next((f for f in FORMATS if f.matches(p)), GRAPH)


def load_dataset(
    path: str | os.PathLike | None,
    *,
    kind: str = "graph",
    seed: int = 0,
    patch: int = 4,
    options: ReadOptions | None = None,
) -> Dataset:
    """The data set at ``path``; with ``path`` None, the synthetic planted one of ``kind``
    (``"graph"``: 80 sensors; ``"grid"``: a 22 x 22 field, planted at patch size ``patch``),
    generated from ``seed``. ``options``: the settings readers take (the distance kernel
    of distance lists, the missing-value sentinel: readings equal to it become NaN, and
    ``ds.missing`` says how many)."""
    options = options or ReadOptions()
    if kind not in SYNTHETIC:
        raise ValueError(f"kind must be one of {', '.join(SYNTHETIC)}, got {kind!r}")
    given = None if options.missing_value == "auto" else options.missing_value
    if path is None:
        return apply_missing_value(SYNTHETIC[kind](seed, patch), given)
    p = Path(path)
    if not p.exists() and str(path).startswith("synthetic"):
        return apply_missing_value(synthetic_from_spec(str(path), kind, seed), given)
    if not p.exists():
        raise FileNotFoundError(f"data set path {str(p)!r} does not exist")
    fmt = format_of(p)
    ds = fmt.load(p, options)
    if options.missing_value == "auto":
        meta = read_meta(p if p.is_dir() else p.parent)
        given = meta.get("missing_value", fmt.missing_value)
    return apply_missing_value(ds, given)
