"""PyTorch Geometric Temporal's data: its JSON files, and its signal objects.

JSON layouts (``--data FILE.json``):

- ``edges`` / ``node_ids`` / ``FX`` (chickenpox): ``edges`` ``[[source, target], ...]``
  node indices, ``node_ids`` name -> index, ``FX`` one list of N values per step.
  Weights 1, no coordinates.
- networkx node-link (montevideo_bus): ``nodes`` with an id (``id``, or ``bus_stop``),
  a series ``y`` and optional ``lat`` / ``lon``; ``links`` with ``source`` / ``target``
  ids and an optional ``weight``, read as a distance and turned into an affinity with
  the Gaussian kernel of :func:`~dynst_fast.graph.distance_kernel` (``sigma`` as for
  the PEMS distance lists), since a GNN weighs near neighbours more. Every link is kept
  (no threshold): the links are the road graph itself, not all pairs of stops.

Edges are directed as given: ``source`` -> ``target`` (``CSRGraph`` row = target).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..graph import CSRGraph, distance_kernel
from .graph_formats import GraphDataset, check_weights
from .options import ReadOptions

LAYOUT = (
    "a PyTorch Geometric Temporal JSON file: {edges, node_ids, FX} (chickenpox layout) or "
    "a networkx node-link document {nodes: [{id, y, ...}], links: [{source, target}]}"
)


def is_pyg_temporal_json(path: Path) -> bool:
    return path.is_file() and path.suffix == ".json"


def _fail(path: Path, what: str) -> ValueError:
    return ValueError(f"{path.name}: {what}; expected {LAYOUT}")


def _index_layout(doc: dict, path: Path) -> tuple[np.ndarray, list[str], np.ndarray, None]:
    names = doc["node_ids"]
    if not isinstance(names, dict) or not names:
        raise _fail(path, "node_ids must be a non-empty {name: index} object")
    n = len(names)
    if sorted(names.values()) != list(range(n)):
        raise _fail(path, f"node_ids must map the names to the indices 0..{n - 1}")
    ids = [""] * n
    for name, i in names.items():
        ids[i] = str(name)
    try:
        vals = np.asarray(doc["FX"], dtype=np.float64)
        edges = np.asarray(doc["edges"], dtype=np.int64).reshape(-1, 2)
    except (TypeError, ValueError) as exc:
        raise _fail(
            path, f"FX must be [T][N] numbers and edges [[source, target]] ({exc})"
        ) from None
    if vals.ndim != 2 or vals.shape[1] != n:
        raise _fail(path, f"FX is {vals.shape}, expected [T, {n}]")
    if edges.size and (edges.min() < 0 or edges.max() >= n):
        raise _fail(path, f"an edge names a node index outside 0..{n - 1}")
    return vals, ids, edges.T, None


def _node_link_layout(
    doc: dict, path: Path, sigma: float | None
) -> tuple[np.ndarray, list[str], CSRGraph, np.ndarray | None]:
    nodes, links = doc["nodes"], doc["links"]
    if not isinstance(nodes, list) or not nodes or not isinstance(links, list):
        raise _fail(path, "nodes must be a non-empty list and links a list")
    try:
        ids = [str(nd["id"] if "id" in nd else nd["bus_stop"]) for nd in nodes]
        vals = np.asarray([nd["y"] for nd in nodes], dtype=np.float64).T
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(
            path, f"every node needs an id and a series y of equal length ({exc!r})"
        ) from None
    if len(set(ids)) != len(ids):
        raise _fail(path, f"node id {next(s for s in ids if ids.count(s) > 1)!r} is there twice")
    pos = {s: i for i, s in enumerate(ids)}
    try:
        src = [pos[str(lk["source"])] for lk in links]
        dst = [pos[str(lk["target"])] for lk in links]
    except KeyError as exc:
        raise _fail(path, f"a link names an unknown node {exc}") from None
    ei = np.array([src, dst], dtype=np.int64).reshape(2, -1)
    if all("weight" in lk for lk in links) and links:
        dist = np.asarray([lk["weight"] for lk in links], dtype=np.float64)
        check_weights(dist, path)
        graph = distance_kernel(ei, dist, len(ids), sigma, threshold=0.0)
    else:
        graph = CSRGraph.from_edge_index(torch.from_numpy(ei), len(ids))
    coords = None
    if all("lat" in nd and "lon" in nd for nd in nodes):
        coords = np.asarray([[nd["lon"], nd["lat"]] for nd in nodes], dtype=np.float32)
    return vals, ids, graph, coords


def load_pyg_temporal_json(path: Path, options: ReadOptions | None = None) -> GraphDataset:
    options = options or ReadOptions()
    try:
        doc: Any = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"{path.name} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise _fail(path, f"the document is a {type(doc).__name__}")
    coords, geographic = None, True
    if {"edges", "node_ids", "FX"} <= doc.keys():
        vals, ids, ei, _ = _index_layout(doc, path)
        graph = CSRGraph.from_edge_index(torch.from_numpy(ei), len(ids))
    elif {"nodes", "links"} <= doc.keys():
        vals, ids, graph, coords = _node_link_layout(doc, path, options.distance_sigma)
        geographic = False  # montevideo_bus: projected metres (x = lon, y = lat)
    else:
        raise _fail(path, f"it has the keys {sorted(doc)}")
    if vals.shape[0] < 2:
        raise _fail(path, f"the series have {vals.shape[0]} steps")
    if not np.isfinite(vals).all():
        raise ValueError(f"{path.name}: values contain NaN or inf")
    return GraphDataset(
        name=path.stem,
        values=np.ascontiguousarray(vals[:, :, None], dtype=np.float32),
        adjacency=graph,
        sensor_ids=ids,
        coords=coords,
        units="",
        geographic=geographic,
    )


def from_pyg_temporal(signal: Any, name: str = "pyg_temporal") -> GraphDataset:
    """A data set from a PyG-Temporal ``StaticGraphTemporalSignal``: its static
    ``edge_index`` / ``edge_weight`` and, as values, its ``targets`` (one ``[N]`` or
    ``[N, C]`` array per step)."""
    targets = [np.asarray(t, dtype=np.float64) for t in signal.targets]
    if not targets:
        raise ValueError("from_pyg_temporal: the signal has no targets")
    vals = np.stack(targets)
    if vals.ndim == 2:
        vals = vals[:, :, None]
    if vals.ndim != 3:
        raise ValueError(f"from_pyg_temporal: targets stack to {vals.shape}, not [T, N(, C)]")
    n = vals.shape[1]
    ei = torch.as_tensor(np.asarray(signal.edge_index), dtype=torch.int64)
    w = getattr(signal, "edge_weight", None)
    w = None if w is None else torch.as_tensor(np.asarray(w), dtype=torch.float32)
    if w is not None:
        check_weights(w.numpy(), Path("edge_weight"))
    return GraphDataset(
        name=name,
        values=np.ascontiguousarray(vals, dtype=np.float32),
        adjacency=CSRGraph.from_edge_index(ei, n, w),
        sensor_ids=[str(i) for i in range(n)],
        coords=None,
        units="",
    )
