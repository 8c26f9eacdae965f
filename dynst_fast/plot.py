"""``sensors.png``: the map of kept and dropped sensors (the paper's Fig. 4)."""

from __future__ import annotations

import os

import numpy as np

from .graph import CSRGraph


def layout(
    graph: CSRGraph, coords: np.ndarray | None, geographic: bool = True
) -> tuple[np.ndarray, str, str]:
    """2-D positions ``[N, 2]`` as (x, y) plus axis labels.

    Geographic ``(lat, lon)`` coordinates are drawn as x = lon, y = lat. Without
    coordinates, a spectral layout of the graph is used.
    """
    n = graph.num_rows
    if coords is not None and np.shape(coords) == (n, 2):
        c = np.asarray(coords, dtype=np.float64)
        if geographic:
            return c[:, ::-1], "longitude", "latitude"
        return c, "x", "y"
    return _spectral(graph), "", ""


def _spectral(graph: CSRGraph) -> np.ndarray:
    n = graph.num_rows
    if n < 4:
        angle = np.linspace(0, 2 * np.pi, n, endpoint=False)
        return np.stack([np.cos(angle), np.sin(angle)], 1)
    a = graph.to_dense().double().abs().numpy()
    a = (a + a.T) / 2
    np.fill_diagonal(a, 0)
    lap = np.diag(a.sum(1)) - a
    _, vecs = np.linalg.eigh(lap)
    return vecs[:, 1:3]


def draw_sensors(
    path: str | os.PathLike,
    graph: CSRGraph,
    active: np.ndarray,
    coords: np.ndarray | None = None,
    planted: np.ndarray | None = None,
    theta: np.ndarray | None = None,
    title: str = "",
    geographic: bool = True,
) -> None:
    """Write a PNG: edges in light grey, kept sensors filled (colour = theta), dropped
    ones hollow, planted sensors (if known) ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pos, xlabel, ylabel = layout(graph, coords, geographic)
    active = np.asarray(active, dtype=bool)
    fig, ax = plt.subplots(figsize=(8, 6.5), dpi=120)
    rows = graph.row_index().numpy()
    cols = graph.col.numpy()
    off = rows != cols
    if off.sum() <= 20000:
        segs = np.stack([pos[rows[off]], pos[cols[off]]], axis=1)
        from matplotlib.collections import LineCollection

        ax.add_collection(LineCollection(segs, colors="#d0d0d0", linewidths=0.5, zorder=1))
    ax.scatter(
        pos[~active, 0],
        pos[~active, 1],
        s=28,
        facecolors="white",
        edgecolors="#888888",
        linewidths=0.9,
        zorder=2,
        label=f"dropped ({int((~active).sum())})",
    )
    colour = theta[active] if theta is not None else "#1f77b4"
    sc = ax.scatter(
        pos[active, 0],
        pos[active, 1],
        s=34,
        c=colour,
        cmap="viridis",
        edgecolors="black",
        linewidths=0.4,
        zorder=3,
        label=f"kept ({int(active.sum())})",
    )
    if theta is not None:
        fig.colorbar(sc, ax=ax, shrink=0.8, label="theta (kept sensors)")
    if planted is not None and len(planted):
        p = np.asarray(planted)
        ax.scatter(
            pos[p, 0],
            pos[p, 1],
            s=110,
            facecolors="none",
            edgecolors="#d62728",
            linewidths=1.4,
            zorder=4,
            label=f"planted ({len(p)})",
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8, framealpha=0.9)
    ax.autoscale()
    fig.tight_layout()
    tmp = f"{os.fspath(path)}.tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
