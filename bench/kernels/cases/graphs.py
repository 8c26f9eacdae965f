"""The graph ops' cases: gated_spmm against torch.sparse.mm and PyG, on Los-loop and on
random geometric graphs, and on pruned graphs."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dynst_fast import ops
from dynst_fast.graph import CSRGraph

from .base import Case, Fn


def random_geometric_graph(n: int, degree: float = 12.0, seed: int = 0) -> CSRGraph:
    """Seeded random geometric graph: n uniform points in the unit square, an edge both
    ways between points closer than r = sqrt(degree / (pi n)) (expected degree
    ``degree``, a little less at the border), weights uniform in (0, 1]; nodes in
    generation order (no locality)."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    pts = rng.random((n, 2))
    r = float(np.sqrt(degree / (np.pi * n)))
    pairs = cKDTree(pts).query_pairs(r, output_type="ndarray")  # [P, 2], i < j
    src = np.concatenate([pairs[:, 0], pairs[:, 1]])
    dst = np.concatenate([pairs[:, 1], pairs[:, 0]])
    w = 1.0 - rng.random(src.size, dtype=np.float32)
    ei = torch.from_numpy(np.stack([src, dst]).astype(np.int64))
    return CSRGraph.from_edge_index(ei, n, torch.from_numpy(w))


def los_loop_graph() -> CSRGraph | None:
    """Los-loop's road graph (``$DYNST_DATA_DIR`` or ``../shared/data``), or None."""
    from dynst_fast.data import load_graph_dataset, shared_data_dir

    try:
        d = Path(shared_data_dir()) / "los_loop"
    except FileNotFoundError:
        return None
    if not d.is_dir():
        return None
    return load_graph_dataset(d).adjacency.to(dtype=torch.float32)


def graph(spec: str | int) -> tuple[str, CSRGraph | None]:
    """``"los_loop"`` or a node count (a random geometric graph): its name and graph."""
    if spec == "los_loop":
        return "Los-loop", los_loop_graph()
    return f"RGG {int(spec):.0e}", random_geometric_graph(int(spec))


def _csr_tensor(g: CSRGraph) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(g.rowptr, g.col, g.weight, size=g.shape)


def _as_matrix(x: torch.Tensor) -> torch.Tensor:
    """[B, N, F] -> [N, B * F] (a view for B = 1)."""
    b, n, f = x.shape
    return x[0] if b == 1 else x.permute(1, 0, 2).reshape(n, b * f)


def _from_matrix(y: torch.Tensor, b: int) -> torch.Tensor:
    return y[None] if b == 1 else y.reshape(y.shape[0], b, -1).permute(1, 0, 2)


def spmm_methods(g: CSRGraph, b: int) -> dict[str, Callable | None]:
    """``out = A (gate * x)`` as ``fn(x [B, N, F], gate [N])``: the op, ``torch.sparse.mm``,
    PyG's ``spmm`` and ``MessagePassing`` (None without ``torch_geometric``), and the
    ``index_select`` + ``index_add_`` composition."""
    a = _csr_tensor(g)
    rows, col, w = g.row_index(), g.col, g.weight
    out: dict[str, Callable | None] = {
        "op": lambda x, gt: ops.gated_spmm(g, x, gt),
        "sparse.mm": lambda x, gt: _from_matrix(
            torch.sparse.mm(a, _as_matrix(x * gt[None, :, None])), b
        ),
        "pyg_spmm": None,
        "pyg_mp": None,
        "index_add": lambda x, gt: x.new_zeros(x.shape[0], g.num_rows, x.shape[2]).index_add_(
            1, rows, (x * gt[None, :, None]).index_select(1, col) * w[None, :, None]
        ),
    }
    try:
        from torch_geometric.nn import MessagePassing
        from torch_geometric.utils import spmm as pyg_spmm
    except ImportError:  # PyG is optional
        return out

    class WeightedSum(MessagePassing):
        """out_i = sum_j w_ij x_j over edge_index (PyG's gather / scatter path)."""

        def __init__(self) -> None:
            super().__init__(aggr="add", node_dim=-2)

        def forward(self, x, edge_index, edge_weight):
            return self.propagate(edge_index, x=x, edge_weight=edge_weight)

        def message(self, x_j, edge_weight):
            return edge_weight.view(-1, 1) * x_j

    layer, edge_index = WeightedSum(), torch.stack([col, rows])
    out["pyg_spmm"] = lambda x, gt: _from_matrix(
        pyg_spmm(a, _as_matrix(x * gt[None, :, None]), reduce="sum"), b
    )
    out["pyg_mp"] = lambda x, gt: layer(x * gt[None, :, None], edge_index, w)
    return out


def spmm_case(
    name: str,
    g: CSRGraph,
    f: int,
    dtype: torch.dtype,
    device: str,
    b: int = 1,
    methods: tuple[str, ...] = ("op", "sparse.mm"),
    max_message_gb: float = 1.0,
) -> tuple[Case, Case]:
    """``gated_spmm`` (the public op, as models call it) against other ways to compute
    ``A (gate * x)`` (``methods`` of :func:`spmm_methods`; ``sparse.mm`` is cuSPARSE on a
    GPU), every 7th gate 0, forward and forward + backward (x and gate requiring grad,
    the transpose cached as in training). A method that does not run here (no PyG, no
    ``sparse.mm`` for the dtype, or gather / scatter messages over ``max_message_gb``) is
    left out and ``info`` says why."""
    gr = g.to(device, dtype=dtype)
    gr.transpose()
    n = gr.num_nodes
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(b, gr.num_cols, f, generator=gen).to(device, dtype)
    gate = torch.ones(gr.num_cols, device=device, dtype=dtype)
    gate[::7] = 0
    gout = torch.randn(b, gr.num_rows, f, generator=gen).to(device, dtype)
    want = ops.gated_spmm(gr, x, gate).float()
    dname = str(dtype).removeprefix("torch.")
    info: dict[str, object] = {"graph": name, "nodes": n, "edges": gr.num_edges, "B": b,
                               "F": f, "dtype": dname}  # fmt: skip
    message_gb = gr.num_edges * b * f * x.element_size() / 1e9
    fwd: dict[str, Fn] = {}
    both: dict[str, Fn] = {}
    for method, fn in spmm_methods(gr, b).items():
        if method not in methods:
            continue
        label = "cusparse" if method == "sparse.mm" and device == "cuda" else method
        if fn is None:
            info[label] = "torch_geometric not installed"
            continue
        if method in ("pyg_mp", "index_add") and message_gb > max_message_gb:
            info[label] = f"E*B*F messages would take {message_gb:.1f} GB"
            continue
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = fn(x, gate).float()
        except (RuntimeError, NotImplementedError) as exc:
            info[label] = f"unsupported ({str(exc).splitlines()[0][:60]})"
            continue
        if method != "op":
            err = float((got - want).abs().max()) / (float(want.abs().max()) or 1)
            info.setdefault("max_rel_err", err)
        xg, gg = x.clone().requires_grad_(), gate.clone().requires_grad_()

        def step(fn=fn, xg=xg, gg=gg):
            xg.grad = gg.grad = None
            fn(xg, gg).backward(gout)

        fwd[label] = lambda fn=fn: fn(x, gate)
        both[label] = step
    per_edge = gr.col.element_size() + gr.weight.element_size() + f * x.element_size()
    info["bytes"] = gr.num_edges * per_edge + n * f * x.element_size()
    title = f"gated_spmm {name} B={b} F={f} {dname}"
    return (
        Case("gated_spmm", title, fwd, info),
        Case("gated_spmm_backward", title.replace("gated_spmm", "gated_spmm fwd+bwd"), both,
             {k: v for k, v in info.items() if k != "bytes"}),
    )  # fmt: skip


def pruned_spmm_case(name: str, g: CSRGraph, f: int, device: str) -> Case:
    """``gated_spmm`` on the unpruned graph (``op``) against the same op on the induced
    subgraph of seeded random active sets at sparsity 0.3, 0.5 and 0.7 (``s0.3`` ...),
    with x restricted to the active nodes, B = 1: how its time falls with K."""
    gen = torch.Generator().manual_seed(2)
    n = g.num_nodes
    x = torch.randn(1, n, f, generator=gen).to(device)
    gate = (torch.rand(n, generator=gen) + 0.5).to(device)
    gd = g.to(device)
    fns: dict[str, Fn] = {"op": lambda: ops.gated_spmm(gd, x, gate)}
    info: dict[str, object] = {"graph": name, "nodes": n, "edges": g.num_edges, "F": f}
    for s in (0.3, 0.5, 0.7):
        k = round((1 - s) * n)
        index = torch.randperm(n, generator=gen)[:k].to(device)
        sub, xs, gs = ops.induce_subgraph(gd, index), x[:, index].contiguous(), gate[index]
        fns[f"s{s}"] = lambda sub=sub, xs=xs, gs=gs: ops.gated_spmm(sub, xs, gs)
        info[f"edges_left_s{s}"] = round(sub.num_edges / g.num_edges, 3)
    return Case("gated_spmm_pruned", f"gated_spmm pruned {name} F={f}", fns, info)
