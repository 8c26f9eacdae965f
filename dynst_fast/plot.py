"""``sensors.png``: the map of kept and dropped sensors (the paper's Fig. 4): graph
sensors as dots, image patches as squares over a frame of the field."""

from __future__ import annotations

import os

import numpy as np

from .graph import CSRGraph
from .morph import PatchGrid


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


DENSE_LAYOUT_MAX = 2000  # sensors up to which the spectral layout solves densely


def _spectral(graph: CSRGraph) -> np.ndarray:
    """The Laplacian eigenmap (eigenvectors 2 and 3) of the symmetrised ``|A|``: dense
    up to ``DENSE_LAYOUT_MAX`` sensors, else sparse (shift-invert Lanczos, O(E) memory)."""
    n = graph.num_rows
    if n < 4:
        angle = np.linspace(0, 2 * np.pi, n, endpoint=False)
        return np.stack([np.cos(angle), np.sin(angle)], 1)
    if n > DENSE_LAYOUT_MAX:
        return _sparse_spectral(graph)
    a = graph.to_dense().double().abs().numpy()
    a = (a + a.T) / 2
    np.fill_diagonal(a, 0)
    lap = np.diag(a.sum(1)) - a
    _, vecs = np.linalg.eigh(lap)
    return vecs[:, 1:3]


def _sparse_spectral(graph: CSRGraph) -> np.ndarray:
    import scipy.sparse as sp
    from scipy.sparse.linalg import eigsh

    n = graph.num_rows
    rows, cols = graph.row_index().numpy(), graph.col.numpy()
    w = np.abs(graph.weight.double().numpy())
    off = rows != cols
    a = sp.coo_matrix((w[off], (rows[off], cols[off])), shape=(n, n)).tocsr()
    a = (a + a.T) / 2
    lap = sp.diags(np.asarray(a.sum(axis=1)).ravel()) - a
    vals, vecs = eigsh(lap.tocsc(), k=3, sigma=-1e-3, which="LM")  # the 3 smallest
    return vecs[:, np.argsort(vals)[1:3]]


def draw_sensors(
    path: str | os.PathLike,
    graph: CSRGraph,
    active: np.ndarray,
    coords: np.ndarray | None = None,
    planted: np.ndarray | None = None,
    theta: np.ndarray | None = None,
    title: str = "",
    geographic: bool = True,
    gain: np.ndarray | None = None,
    gain_label: str = "switch-on gain, est. MAE decrease",
) -> None:
    """Write a PNG: edges in light grey, kept sensors as circles (colour = theta), dropped
    ones as squares (hollow, or shaded by ``gain``: their switch-on gain, the paper's
    Fig. 4, or what ``gain_label`` says), planted sensors (if known) ringed."""
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
    dropped = ax.scatter(
        pos[~active, 0],
        pos[~active, 1],
        s=26,
        marker="s",
        c=gain[~active] if gain is not None else "white",
        cmap="Oranges" if gain is not None else None,
        edgecolors="#666666",
        linewidths=0.8,
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
    if gain is not None and (~active).any():
        fig.colorbar(dropped, ax=ax, shrink=0.8, label=gain_label)
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


def draw_patches(
    path: str | os.PathLike,
    frame: np.ndarray,
    grid: PatchGrid,
    active: np.ndarray,
    planted: np.ndarray | None = None,
    theta: np.ndarray | None = None,
    latitude: np.ndarray | None = None,
    longitude: np.ndarray | None = None,
    units: str = "",
    title: str = "",
    gain: np.ndarray | None = None,
    gain_label: str = "switch-on gain",
) -> None:
    """Write a PNG: the field ``frame [H, W]`` with the patch grid over it; dropped
    patches hatched and greyed out (or shaded by ``gain``, their switch-on gain or what
    ``gain_label`` says: darker orange = more), kept ones outlined (line width grows with
    |theta|),
    planted patches (if known) outlined in red. Axes are cell indices, labelled with
    latitude/longitude when given; padding cells (bottom/right) are drawn blank."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    frame = np.asarray(frame, dtype=np.float64)
    if frame.shape != (grid.height, grid.width):
        raise ValueError(f"frame must be [{grid.height}, {grid.width}], got {frame.shape}")
    active = np.asarray(active, dtype=bool)
    p = grid.patch
    fig, ax = plt.subplots(figsize=(8, 6.5 * grid.rows / max(grid.cols, 1) + 1.2), dpi=120)
    im = ax.imshow(frame, cmap="coolwarm", origin="upper", interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8, label=units or "value")
    mag = np.abs(theta) if theta is not None else np.ones(grid.num_patches)
    if gain is not None:
        g = np.nan_to_num(np.asarray(gain, dtype=np.float64), nan=0.0)
        shade = g / max(float(g[~active].max()) if (~active).any() else 0.0, 1e-12)
    top = float(mag[active].max()) if active.any() else 1.0
    for j in range(grid.num_patches):
        r, c = divmod(j, grid.cols)
        xy = (c * p - 0.5, r * p - 0.5)
        if active[j]:
            lw = 0.8 + 1.6 * float(mag[j]) / max(top, 1e-12)
            ax.add_patch(Rectangle(xy, p, p, fill=False, edgecolor="black", linewidth=lw))
        else:
            face = "#bbbbbb" if gain is None else plt.get_cmap("Oranges")(0.15 + 0.85 * shade[j])
            ax.add_patch(
                Rectangle(xy, p, p, facecolor=face, alpha=0.75, hatch="//", edgecolor="#777777")
            )
    if planted is not None:
        for j in np.asarray(planted):
            r, c = divmod(int(j), grid.cols)
            ax.add_patch(
                Rectangle(
                    (c * p - 0.2, r * p - 0.2),
                    p - 0.6,
                    p - 0.6,
                    fill=False,
                    edgecolor="#d62728",
                    linewidth=1.6,
                    linestyle="--",
                )
            )
    ax.set_xlim(-0.5, grid.cols * p - 0.5)
    ax.set_ylim(grid.rows * p - 0.5, -0.5)
    if latitude is not None and longitude is not None:
        xt = np.arange(0, grid.width, max(1, grid.width // 6))
        yt = np.arange(0, grid.height, max(1, grid.height // 6))
        ax.set_xticks(xt, [f"{longitude[i]:g}" for i in xt])
        ax.set_yticks(yt, [f"{latitude[i]:g}" for i in yt])
        ax.set_xlabel("longitude")
        ax.set_ylabel("latitude")
    else:
        ax.set_xlabel("column")
        ax.set_ylabel("row")
    n_kept = int(active.sum())
    handles = [
        Rectangle((0, 0), 1, 1, fill=False, edgecolor="black", label=f"kept ({n_kept})"),
        Rectangle(
            (0, 0),
            1,
            1,
            facecolor="#bbbbbb",
            hatch="//",
            edgecolor="#777777",
            label=f"dropped ({grid.num_patches - n_kept})",
        ),
    ]
    if planted is not None:
        handles.append(
            Rectangle(
                (0, 0),
                1,
                1,
                fill=False,
                edgecolor="#d62728",
                linestyle="--",
                label=f"planted ({len(planted)})",
            )
        )
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.25, 1.0), fontsize=8)
    ax.set_title(f"{title}\npatch {p}x{p}, padding {grid.pad_h} bottom / {grid.pad_w} right")
    fig.tight_layout()
    tmp = f"{os.fspath(path)}.tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
