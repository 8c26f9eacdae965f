"""A small CSR graph type for message passing over (pruned) sensor graphs.

Convention: row ``i`` is the *target*, column ``j`` the *source*, and the weight
``A[i, j]`` scales the message that node ``j`` sends to node ``i``, so that
message passing is ``out_i = sum_j A[i, j] * x_j`` (see ``dynst_fast.ops.gated_spmm``).
A square graph has ``num_rows == num_cols == num_nodes``; a bipartite read-out
graph from K active sources to all N targets has shape ``(N, K)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor


class CSRGraph:
    """Compressed sparse row adjacency: ``rowptr[num_rows + 1]``, ``col[E]``, ``weight[E]``.

    Columns inside a row keep the order they were given in (stable), duplicates are
    kept (they add up in message passing). ``rowptr`` and ``col`` are int64,
    ``weight`` is floating point.
    """

    __slots__ = (
        "rowptr",
        "col",
        "weight",
        "num_rows",
        "num_cols",
        "_transpose",
        "_padded",
        "_dense",
        "_copies",
    )

    def __init__(
        self,
        rowptr: Tensor,
        col: Tensor,
        weight: Tensor | None = None,
        num_cols: int | None = None,
        *,
        validate: bool = True,
    ) -> None:
        if not isinstance(rowptr, Tensor) or not isinstance(col, Tensor):
            raise TypeError("CSRGraph: rowptr and col must be torch tensors")
        if rowptr.dim() != 1 or rowptr.numel() < 1:
            raise ValueError(
                f"CSRGraph: rowptr must be 1-D with num_rows + 1 >= 1 entries, "
                f"got shape {tuple(rowptr.shape)}"
            )
        if col.dim() != 1:
            raise ValueError(f"CSRGraph: col must be 1-D, got shape {tuple(col.shape)}")
        self.rowptr = rowptr.to(torch.int64).contiguous()
        self.col = col.to(torch.int64).contiguous()
        if weight is None:
            weight = torch.ones(self.col.numel(), dtype=torch.float32, device=self.col.device)
        if not isinstance(weight, Tensor) or not weight.is_floating_point():
            raise TypeError("CSRGraph: weight must be a floating point tensor")
        self.weight = weight.contiguous()
        self.num_rows = int(self.rowptr.numel() - 1)
        self.num_cols = int(self.num_rows if num_cols is None else num_cols)
        self._transpose: CSRGraph | None = None
        self._padded: tuple[Tensor, Tensor] | None = None
        self._dense: Tensor | None = None
        self._copies: dict[torch.device, CSRGraph] = {}
        if validate:
            self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> CSRGraph:
        """Raise ``ValueError`` naming the problem if the arrays are not a valid CSR."""
        rp, col = self.rowptr, self.col
        if self.num_cols < 0:
            raise ValueError(f"CSRGraph: num_cols must be >= 0, got {self.num_cols}")
        if self.weight.dim() != 1 or self.weight.numel() != col.numel():
            raise ValueError(
                f"CSRGraph: weight has {self.weight.numel()} entries but col has {col.numel()}"
            )
        if rp.device != col.device or self.weight.device != col.device:
            raise ValueError("CSRGraph: rowptr, col and weight must be on the same device")
        if int(rp[0]) != 0:
            raise ValueError(f"CSRGraph: rowptr[0] must be 0, got {int(rp[0])}")
        if int(rp[-1]) != col.numel():
            raise ValueError(
                f"CSRGraph: rowptr[-1] = {int(rp[-1])} but there are {col.numel()} edges"
            )
        if rp.numel() > 1 and bool((rp[1:] < rp[:-1]).any()):
            bad = int(torch.nonzero(rp[1:] < rp[:-1])[0])
            raise ValueError(f"CSRGraph: rowptr is not monotone (it decreases after row {bad})")
        if col.numel() > 0:
            lo, hi = int(col.min()), int(col.max())
            if lo < 0 or hi >= self.num_cols:
                raise ValueError(
                    f"CSRGraph: column index out of range: found {lo if lo < 0 else hi}, "
                    f"valid range is [0, {self.num_cols})"
                )
        if not bool(torch.isfinite(self.weight).all()):
            raise ValueError("CSRGraph: edge weights must be finite")
        return self

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_dense(cls, adj: Tensor | np.ndarray) -> CSRGraph:
        """From a dense ``[num_rows, num_cols]`` adjacency; zero entries are no edge."""
        a = torch.as_tensor(adj)
        if a.dim() != 2:
            raise ValueError(f"from_dense: adjacency must be 2-D, got shape {tuple(a.shape)}")
        if not a.is_floating_point():
            a = a.to(torch.float32)
        if not bool(torch.isfinite(a).all()):
            raise ValueError("from_dense: adjacency contains NaN or inf")
        rows, cols = torch.nonzero(a, as_tuple=True)
        counts = torch.bincount(rows, minlength=a.shape[0])
        rowptr = torch.zeros(a.shape[0] + 1, dtype=torch.int64, device=a.device)
        rowptr[1:] = torch.cumsum(counts, 0)
        return cls(rowptr, cols, a[rows, cols].contiguous(), num_cols=a.shape[1])

    @classmethod
    def from_edge_index(
        cls, edge_index: Tensor, num_nodes: int, weight: Tensor | None = None
    ) -> CSRGraph:
        """From a PyG-style ``edge_index[2, E]`` (row 0 = source, row 1 = target).

        Edges are sorted by target with a stable sort, so edges into the same node
        keep their given order. Duplicates are kept.
        """
        ei = torch.as_tensor(edge_index)
        if ei.dim() != 2 or ei.shape[0] != 2:
            raise ValueError(
                f"from_edge_index: edge_index must have shape [2, E], got {tuple(ei.shape)}"
            )
        if ei.is_floating_point():
            raise TypeError("from_edge_index: edge_index must be an integer tensor")
        num_nodes = int(num_nodes)
        if num_nodes < 0:
            raise ValueError(f"from_edge_index: num_nodes must be >= 0, got {num_nodes}")
        ei = ei.to(torch.int64)
        src, dst = ei[0], ei[1]
        if ei.numel() > 0 and (int(ei.min()) < 0 or int(ei.max()) >= num_nodes):
            raise ValueError(
                f"from_edge_index: node index out of range [0, {num_nodes}): "
                f"found {int(ei.min()) if int(ei.min()) < 0 else int(ei.max())}"
            )
        if weight is not None:
            weight = torch.as_tensor(weight)
            if weight.dim() != 1 or weight.numel() != src.numel():
                raise ValueError(
                    f"from_edge_index: weight must have shape [{src.numel()}], "
                    f"got {tuple(weight.shape)}"
                )
        order = torch.sort(dst, stable=True).indices
        counts = torch.bincount(dst, minlength=num_nodes)
        rowptr = torch.zeros(num_nodes + 1, dtype=torch.int64, device=ei.device)
        rowptr[1:] = torch.cumsum(counts, 0)
        w = None if weight is None else weight[order]
        return cls(rowptr, src[order], w, num_cols=num_nodes)

    @classmethod
    def from_scipy(cls, matrix: Any) -> CSRGraph:
        """From any ``scipy.sparse`` matrix or array (converted to CSR, order kept)."""
        import scipy.sparse as sp

        if not sp.issparse(matrix):
            raise TypeError(f"from_scipy: expected a scipy.sparse matrix, got {type(matrix)}")
        m = sp.csr_matrix(matrix)
        data = m.data if np.issubdtype(m.data.dtype, np.floating) else m.data.astype(np.float32)
        return cls(
            torch.from_numpy(m.indptr.astype(np.int64)),
            torch.from_numpy(m.indices.astype(np.int64)),
            torch.from_numpy(np.ascontiguousarray(data)),
            num_cols=m.shape[1],
        )

    @classmethod
    def from_pyg(cls, data: Any, num_nodes: int | None = None) -> CSRGraph:
        """From a PyTorch Geometric ``Data`` (or anything with ``edge_index`` and
        optionally ``edge_weight``, a 1-D ``edge_attr``, ``num_nodes``): messages flow
        ``edge_index[0]`` (source) -> ``edge_index[1]`` (target), PyG's convention."""
        ei = getattr(data, "edge_index", None)
        if ei is None:
            raise TypeError(f"from_pyg: {type(data).__name__} has no edge_index")
        w = getattr(data, "edge_weight", None)
        if w is None:
            attr = getattr(data, "edge_attr", None)
            if attr is not None and torch.as_tensor(attr).squeeze(-1).dim() == 1:
                w = torch.as_tensor(attr).squeeze(-1)
        n = num_nodes if num_nodes is not None else getattr(data, "num_nodes", None)
        if n is None:
            n = int(torch.as_tensor(ei).max()) + 1 if torch.as_tensor(ei).numel() else 0
        if w is not None:
            w = torch.as_tensor(w)
            w = w if w.is_floating_point() else w.to(torch.float32)
        return cls.from_edge_index(torch.as_tensor(ei), int(n), w)

    # ------------------------------------------------------------------ views
    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_rows, self.num_cols)

    @property
    def num_nodes(self) -> int:
        """Node count of a square graph."""
        if self.num_rows != self.num_cols:
            raise ValueError(f"num_nodes is only defined for square graphs, shape {self.shape}")
        return self.num_rows

    @property
    def num_edges(self) -> int:
        return int(self.col.numel())

    @property
    def device(self) -> torch.device:
        return self.col.device

    def row_index(self) -> Tensor:
        """Target row of every edge, ``[E]`` int64 (the COO row array)."""
        counts = self.rowptr[1:] - self.rowptr[:-1]
        return torch.repeat_interleave(
            torch.arange(self.num_rows, device=self.device), counts, output_size=self.num_edges
        )

    def padded_rows(self) -> tuple[Tensor, Tensor]:
        """The graph as fixed-width rows (ELLPACK), built once and cached.

        Returns ``(nbr, weight)``, both ``[num_rows, D]`` with ``D`` the largest row
        degree: row ``i`` lists its sources in CSR order, padded with source 0 and weight
        0. Message passing over it is a gather, a multiply and a sum over ``D``, with no
        scatter, which is how exported models run it (``dynst_fast.export``). Costs
        ``num_rows * D`` entries, more than ``E`` when degrees are uneven.
        """
        if self._padded is None:
            counts = self.rowptr[1:] - self.rowptr[:-1]
            d = int(counts.max()) if self.num_rows else 0
            slot = torch.arange(d, device=self.device)
            valid = slot[None, :] < counts[:, None]
            pos = (self.rowptr[:-1, None] + slot[None, :]).clamp(max=max(self.num_edges - 1, 0))
            nbr = torch.where(valid, self.col[pos], 0) if self.num_edges else pos * 0
            w = self.weight[pos] if self.num_edges else pos.to(self.weight.dtype)
            self._padded = (nbr.contiguous(), torch.where(valid, w, 0).contiguous())
        return self._padded

    def cached_dense(self) -> Tensor:
        """:meth:`to_dense`, built once and cached (the exported form of small graphs)."""
        if self._dense is None:
            self._dense = self.to_dense()
        return self._dense

    def to_dense(self) -> Tensor:
        """Dense ``[num_rows, num_cols]`` matrix (duplicate edges are summed)."""
        out = torch.zeros(self.shape, dtype=self.weight.dtype, device=self.device)
        out.index_put_((self.row_index(), self.col), self.weight, accumulate=True)
        return out

    def transpose(self) -> CSRGraph:
        """The transposed CSR, built once and cached (used by backward passes)."""
        if self._transpose is None:
            rows = self.row_index()
            order = torch.sort(self.col, stable=True).indices
            counts = torch.bincount(self.col, minlength=self.num_cols)
            rowptr = torch.zeros(self.num_cols + 1, dtype=torch.int64, device=self.device)
            rowptr[1:] = torch.cumsum(counts, 0)
            t = CSRGraph(
                rowptr, rows[order], self.weight[order], num_cols=self.num_rows, validate=False
            )
            t._transpose = self
            self._transpose = t
        return self._transpose

    @property
    def cached_transpose(self) -> CSRGraph | None:
        """The transpose if :meth:`transpose` has built it already, else ``None``."""
        return self._transpose

    def on(self, device: torch.device | str) -> CSRGraph:
        """This graph on ``device``: itself if it is there, else a copy made once and
        cached, so that every module holding the graph shares one copy (and its cached
        transpose) per device."""
        device = torch.device(device)
        if device == self.device or (device.index is None and device.type == self.device.type):
            return self
        if device not in self._copies:
            self._copies[device] = self.to(device)
        return self._copies[device]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        """Move to a device and/or cast the weights; returns a new graph."""
        return CSRGraph(
            self.rowptr.to(device),
            self.col.to(device),
            self.weight.to(device=device, dtype=dtype),
            num_cols=self.num_cols,
            validate=False,
        )

    def with_weight(self, weight: Tensor) -> CSRGraph:
        """Same structure, new edge weights ``[E]``."""
        return CSRGraph(self.rowptr, self.col, weight, num_cols=self.num_cols, validate=False)

    def state_dict(self) -> dict[str, Any]:
        return {
            "rowptr": self.rowptr,
            "col": self.col,
            "weight": self.weight,
            "num_cols": self.num_cols,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> CSRGraph:
        return cls(state["rowptr"], state["col"], state["weight"], num_cols=state["num_cols"])

    def __repr__(self) -> str:
        return (
            f"CSRGraph(shape={self.shape}, num_edges={self.num_edges}, "
            f"dtype={self.weight.dtype}, device={self.device})"
        )


GraphLike = Any
"""What a public API takes as a graph: a ``CSRGraph``, a PyG ``Data``, an
``(edge_index, edge_weight)`` pair (weight may be None), or a scipy sparse matrix."""


def as_graph(graph: GraphLike, num_nodes: int | None = None, who: str = "graph") -> CSRGraph:
    """``graph`` as a ``CSRGraph`` (itself if it is one). An edge list needs
    ``num_nodes`` unless its largest index + 1 is the node count. Converting sorts the
    edges: convert once (``CSRGraph.from_pyg``) where a graph is used many times."""
    if isinstance(graph, CSRGraph):
        return graph
    if hasattr(graph, "edge_index"):
        return CSRGraph.from_pyg(graph, num_nodes)
    if isinstance(graph, (tuple, list)) and len(graph) in (1, 2):
        ei = torch.as_tensor(graph[0])
        w = graph[1] if len(graph) == 2 else None
        if num_nodes is None:
            num_nodes = int(ei.max()) + 1 if ei.numel() else 0
        return CSRGraph.from_edge_index(ei, num_nodes, None if w is None else torch.as_tensor(w))
    try:
        import scipy.sparse as sp

        if sp.issparse(graph):
            return CSRGraph.from_scipy(graph)
    except ImportError:
        pass
    raise TypeError(
        f"{who}: expected a CSRGraph, a torch_geometric Data, an (edge_index, edge_weight) "
        f"pair or a scipy sparse matrix, got {type(graph).__name__}"
    )


def distance_kernel(
    edge_index: np.ndarray,
    dist: np.ndarray,
    n: int,
    sigma: float | None = None,
    threshold: float = 0.1,
) -> CSRGraph:
    """The thresholded Gaussian kernel ``exp(-(d / sigma)^2)`` of distances ``dist[E]`` on
    ``edge_index[2, E]`` (0-based node indices; sigma defaults to the distances' standard
    deviation): weights below ``threshold``, or 0 in float32, are no edge; symmetric (the
    larger weight of a pair), self-loops of weight 1, columns sorted in each row."""
    if sigma is None:
        sigma = float(dist.std()) if dist.size > 1 else 0.0
        if sigma <= 0:  # all distances equal: scale by their size instead
            sigma = float(dist.mean()) if dist.size and dist.mean() > 0 else 1.0
    if not sigma > 0:
        raise ValueError(f"distance sigma must be positive, got {sigma}")
    w = np.exp(-((dist / sigma) ** 2))
    keep = (w >= threshold) & (edge_index[0] != edge_index[1])
    src = np.concatenate([edge_index[0, keep], edge_index[1, keep], np.arange(n)])
    dst = np.concatenate([edge_index[1, keep], edge_index[0, keep], np.arange(n)])
    val = np.concatenate([w[keep], w[keep], np.ones(n)])
    key = dst * n + src  # CSR row = target
    order = np.lexsort((-val, key))  # per pair, the largest weight first
    key, val = key[order], val[order]
    first = np.r_[True, key[1:] != key[:-1]]
    key, val = key[first], val[first].astype(np.float32)
    key, val = key[val != 0], val[val != 0]
    rowptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(key // n, minlength=n), out=rowptr[1:])
    return CSRGraph(
        torch.from_numpy(rowptr),
        torch.from_numpy(key % n),
        torch.from_numpy(val),
    )


def normalize_adjacency(graph: CSRGraph, *, self_loops: bool = False) -> CSRGraph:
    """Symmetric GCN normalisation ``D^-1/2 A D^-1/2`` over the *full* graph.

    Self-loops are removed first unless ``self_loops`` is true; degrees are the
    (absolute) weighted in-degrees. The weights are fixed constants of the full
    graph, so sub-graphs induced from the result keep them unchanged.
    """
    rows, col, w = graph.row_index(), graph.col, graph.weight
    if not self_loops:
        keep = rows != col
        rows, col, w = rows[keep], col[keep], w[keep]
    n = max(graph.num_rows, graph.num_cols)
    deg = torch.zeros(n, dtype=w.dtype, device=w.device).index_add_(0, rows, w.abs())
    inv = torch.where(deg > 0, deg.clamp_min(1e-12).rsqrt(), torch.zeros_like(deg))
    w = w * inv[rows] * inv[col]
    counts = torch.bincount(rows, minlength=graph.num_rows)
    rowptr = torch.zeros(graph.num_rows + 1, dtype=torch.int64, device=w.device)
    rowptr[1:] = torch.cumsum(counts, 0)
    return CSRGraph(rowptr, col, w, num_cols=graph.num_cols, validate=False)
