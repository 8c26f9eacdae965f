"""Candidate lists: for every sensor, the L sensors nearest to it, nearest first (itself
at distance 0), computed once, in O(N L) memory, never N x N.

* :func:`nearest_by_coords`: Euclidean distance between points (geographic positions in
  km, or patch centres on a grid), by a k-d tree: O(N log N) time.
* :func:`nearest_on_graph`: shortest-path distance on a weighted graph, each edge of
  weight w (the largest weight scaled to 1) of length ``1 - log(w)``: one hop for a 0/1
  graph, longer for a weak edge. A Dijkstra search from every sensor that stops at its
  L-th settled sensor: O(N L log L) time. Sensors beyond reach pad with -1.

Ties go to the lower sensor number, so the lists are deterministic.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from ..graph import CSRGraph

EARTH_RADIUS_KM = 6371.0


def planar_km(lat_lon: np.ndarray) -> np.ndarray:
    """``[N, 2]`` (latitude, longitude) in degrees -> ``[N, 2]`` km on a local plane
    (equirectangular at the mean latitude: exact enough over a city or a country)."""
    lat, lon = np.radians(lat_lon[:, 0]), np.radians(lat_lon[:, 1])
    x = EARTH_RADIUS_KM * lon * math.cos(float(np.mean(lat)))
    y = EARTH_RADIUS_KM * lat
    return np.stack([x, y], axis=1)


def nearest_by_coords(points: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """``(index [N, L] int64, distance [N, L] float32)`` of the ``L = min(length, N)``
    nearest points of every point (itself first), by Euclidean distance."""
    from scipy.spatial import cKDTree

    pts = np.asarray(points, dtype=np.float64)
    n = pts.shape[0]
    k = min(int(length), n)
    dist, idx = cKDTree(pts).query(pts, k=k)
    dist, idx = dist.reshape(n, k), idx.reshape(n, k).astype(np.int64)
    # deterministic order: by distance, then sensor number (the tree's ties are not)
    order = np.lexsort((idx, np.round(dist, 9)), axis=1)
    idx = np.take_along_axis(idx, order, axis=1)
    dist = np.take_along_axis(dist, order, axis=1)
    return idx, dist.astype(np.float32)


def nearest_on_graph(graph: CSRGraph, length: int) -> tuple[np.ndarray, np.ndarray]:
    """``(index [N, L] int64, distance [N, L] float32)``: every sensor's ``L = min(length,
    N)`` nearest sensors by shortest path (itself first); -1 (distance inf) pads the
    sensors a row cannot reach. The graph is read as undirected (an edge either way)."""
    n = graph.num_rows
    k = min(int(length), n)
    rowptr = graph.rowptr.cpu().numpy()
    col = graph.col.cpu().numpy()
    w = np.abs(graph.weight.detach().cpu().double().numpy())
    top = float(w.max()) if w.size else 1.0
    lengths = 1.0 - np.log(np.clip(w / (top or 1.0), 1e-12, 1.0))
    nbrs: list[list[tuple[float, int]]] = [[] for _ in range(n)]
    for r in range(n):
        for p in range(rowptr[r], rowptr[r + 1]):
            c = int(col[p])
            if c != r and w[p] > 0:
                nbrs[r].append((float(lengths[p]), c))
                nbrs[c].append((float(lengths[p]), r))
    index = np.full((n, k), -1, dtype=np.int64)
    dist = np.full((n, k), np.inf, dtype=np.float32)
    for src in range(n):
        tentative = {src: 0.0}
        settled: set[int] = set()
        heap = [(0.0, src)]
        while heap and len(settled) < k:
            d, u = heapq.heappop(heap)  # ties: the lower sensor number first
            if u in settled:
                continue
            index[src, len(settled)], dist[src, len(settled)] = u, d
            settled.add(u)
            for step, v in nbrs[u]:
                nd = d + step
                if v not in settled and nd < tentative.get(v, math.inf):
                    tentative[v] = nd
                    heapq.heappush(heap, (nd, v))
    return index, dist
