"""Every benchmark case, built once for both harnesses: the pytest-benchmark suite
(``python -m pytest bench/kernels``) and the GPU suite (``python -m bench.gpu.suite``).

Each maker builds the inputs of one case on a device, checks every method against the
plain PyTorch composition, and returns the methods as zero-argument callables. The first
method is the op (``"op"``; for models ``"compact"``); the others are what it is compared
with. ``info`` holds the facts the tables print.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dynst_fast import ops
from dynst_fast.graph import CSRGraph
from dynst_fast.ops import reference

SPARSITY = 0.5
Fn = Callable[[], object]


@dataclass
class Case:
    """One benchmark case of ``op``: its methods (the op first) and facts for the tables."""

    op: str
    name: str
    fns: dict[str, Fn]
    info: dict[str, object] = field(default_factory=dict)


def active_index(n: int, s: float, device: str, seed: int) -> torch.Tensor:
    """A seeded random sorted set of ``round((1 - s) n)`` (at least 1) of ``n`` sensors."""
    g = torch.Generator().manual_seed(seed)
    k = max(1, round((1 - s) * n))
    return torch.randperm(n, generator=g)[:k].sort().values.to(device)


# ---------------------------------------------------------------- compact, expand
def compact_cases(
    b: int, n: int, f: int, device: str, s: float = SPARSITY
) -> tuple[Case, Case, Case]:
    """``compact`` against ``x[:, idx] * theta[idx, None]`` (``torch``) and a composition
    that starts from the mask (``nz+isel``: nonzero, index_select, in-place mul);
    ``expand`` against ``new_full`` + ``index_copy``; and ``compact`` forward + backward
    (x and theta requiring grad) against ``torch`` under autograd."""
    lib = torch.ops.dynst_fast
    idx = active_index(n, s, device, n + f + b)
    k = idx.numel()
    x, theta = torch.randn(b, n, f, device=device), torch.randn(n, device=device)
    y = torch.randn(b, k, f, device=device)
    mask = torch.zeros(n, dtype=torch.bool, device=device)
    mask[idx] = True
    assert torch.equal(lib.compact(x, theta, idx), reference.compact(x, theta, idx))
    assert torch.equal(lib.expand(y, idx, n, 0.0), reference.expand(y, idx, n, 0.0))

    def nz_isel():
        i = mask.nonzero().squeeze(1)
        return x.index_select(1, i).mul_(theta.index_select(0, i)[None, :, None])

    assert torch.equal(nz_isel(), reference.compact(x, theta, idx))
    xg, tg = x.clone().requires_grad_(), theta.clone().requires_grad_()

    def backward(fn: Callable) -> Fn:
        def step():
            xg.grad = tg.grad = None
            fn(xg, tg, idx).backward(y)

        return step

    info = {"B": b, "N": n, "F": f, "s": s, "K": k, "x_MB": round(b * n * f * 4 / 1e6, 1)}
    return (
        Case(
            "compact",
            f"compact B={b} N={n} F={f} s={s}",
            {
                "op": lambda: lib.compact(x, theta, idx),
                "torch": lambda: reference.compact(x, theta, idx),
                "nz+isel": nz_isel,
            },
            {**info, "bytes": 2 * b * k * f * 4},
        ),
        Case(
            "expand",
            f"expand B={b} N={n} F={f} s={s}",
            {
                "op": lambda: lib.expand(y, idx, n, 0.0),
                "torch": lambda: reference.expand(y, idx, n, 0.0),
            },
            {**info, "bytes": (b * k * f + b * n * f) * 4},
        ),
        Case(
            "compact_backward",
            f"compact fwd+bwd B={b} N={n} F={f} s={s}",
            {"op": backward(ops.compact), "torch": backward(reference.compact)},
            info,
        ),
    )


# ---------------------------------------------------------------- patchify_compact
def patchify_cases(
    b: int, t: int, c: int, h: int, w: int, p: int, device: str, s: float = SPARSITY
) -> tuple[Case, Case]:
    """``patchify_compact`` of frames ``[B, T, C, H, W]`` against patchify (pad, reshape,
    permute) then gather, forward and forward + backward (frames and theta requiring
    grad)."""
    lib = torch.ops.dynst_fast
    n = -(-h // p) * -(-w // p)
    idx = active_index(n, s, device, h * w)
    frames, theta = torch.randn(b, t, c, h, w, device=device), torch.randn(n, device=device)
    want = reference.patchify_compact(frames, theta, idx, p)
    assert torch.equal(lib.patchify_compact(frames, theta, idx, p), want)
    fg, tg = frames.clone().requires_grad_(), theta.clone().requires_grad_()
    dy = torch.randn_like(want)

    def backward(fn: Callable) -> Fn:
        def step():
            fg.grad = tg.grad = None
            fn(fg, tg, idx, p).backward(dy)

        return step

    info = {"frames": f"{b}x{t}x{c}x{h}x{w}", "p": p, "N": n, "s": s, "K": idx.numel()}
    name = f"patchify_compact {b}x{t}x{c}x{h}x{w} p={p} s={s}"
    return (
        Case(
            "patchify_compact",
            name,
            {
                "op": lambda: lib.patchify_compact(frames, theta, idx, p),
                "torch": lambda: reference.patchify_compact(frames, theta, idx, p),
            },
            {**info, "bytes": 2 * want.numel() * 4},
        ),
        Case(
            "patchify_backward",
            name.replace("patchify_compact", "patchify_compact fwd+bwd"),
            {"op": backward(ops.patchify_compact), "torch": backward(reference.patchify_compact)},
            info,
        ),
    )


# ---------------------------------------------------------------- selection
def select_cases(
    n: int, device: str, s: float = SPARSITY, k_fraction: float = 0.01
) -> tuple[Case, Case]:
    """``select_swap`` and ``prune_lowest`` at k = ``k_fraction`` of N (capped by the
    smaller set), against ``masked_fill`` + ``torch.topk`` and a full ``torch.sort`` (as
    RigL implementations do); ``public`` is the checked ``dynst_fast.ops`` call."""
    lib, inf = torch.ops.dynst_fast, float("inf")
    g = torch.Generator().manual_seed(n)
    score = torch.rand(n, generator=g).to(device)
    active = torch.zeros(n, dtype=torch.bool)
    active[torch.randperm(n, generator=g)[: round((1 - s) * n)]] = True
    active = active.to(device)
    n_act = int(active.sum())
    k = max(1, min(round(k_fraction * n), n_act, n - n_act))

    def topk_swap():
        drop = torch.topk(score.masked_fill(~active, inf), k, largest=False).indices
        return drop, torch.topk(score.masked_fill(active, -inf), k).indices

    def sort_swap():
        drop = torch.sort(score.masked_fill(~active, inf)).indices[:k]
        return drop, torch.sort(score.masked_fill(active, -inf), descending=True).indices[:k]

    drop, grow = lib.select_swap(score, active, k)
    want_drop, want_grow = topk_swap()
    assert set(drop.tolist()) == set(want_drop.tolist())
    assert set(grow.tolist()) == set(want_grow.tolist())
    assert int((active & ~lib.prune_lowest(score, active, k)).sum()) == k
    mag = score.abs()
    info = {"N": n, "s": s, "k": k}
    return (
        Case(
            "select_swap",
            f"select_swap N={n} s={s} k={k}",
            {
                "op": lambda: lib.select_swap(score, active, k),
                "public": lambda: ops.select_swap(score, active, k),
                "topk": topk_swap,
                "sort": sort_swap,
            },
            info,
        ),
        Case(
            "prune_lowest",
            f"prune_lowest N={n} s={s} k={k}",
            {
                "op": lambda: lib.prune_lowest(score, active, k),
                "topk": lambda: torch.topk(mag.masked_fill(~active, inf), k, largest=False),
                "sort": lambda: torch.sort(mag.masked_fill(~active, inf)).indices[:k],
            },
            info,
        ),
    )


# ---------------------------------------------------------------- graphs
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


# ---------------------------------------------------------------- models
# The model cases' backbones: (name, data, backbone options) as `dynst run` builds them.
MODELS = {
    "stgcn": {},
    "vit": {},
    "vit-encoder-heavy": {"dim": 128, "depth": 6, "heads": 4, "decoder_dim": 32,
                          "decoder_depth": 1},
}  # fmt: skip


def model_setup(model: str, dataset, device: str):
    """The backbone ``model`` of :data:`MODELS` built for ``dataset`` as ``dynst run``
    builds it (the run plan: resolved options, seeded weights) and the plan's windows."""
    from dynst_fast.config import RunConfig
    from dynst_fast.plan import resolve

    name = model.split("-")[0]
    cfg = RunConfig.from_flags(model=name, option=MODELS[model], quiet=True)
    plan = resolve(cfg, dataset=dataset)
    return plan.build_model().to(device).eval(), plan.splits


def model_case(model, splits, label: str, s: float, batch: int, device: str) -> Case:
    """A gated backbone at sparsity ``s`` on the first ``batch`` test windows: ``dense``
    ``model(x)``, ``gated`` ``model(x, gate)`` and the compacted ``c(c.gather_input(x))``
    (reading the active sensors from the full input included). ``info["max_abs_diff"]``:
    compacted against gated forecast (the equivalence rule)."""
    from dynst_fast.train import first_windows

    n = model.num_sensors
    idx = active_index(n, s, device, n)
    gate = torch.zeros(n, device=device)
    gate[idx] = 1.0
    comp = model.compact(idx).eval()
    xb = first_windows(splits.test, batch)[0].to(device)
    with torch.inference_mode():
        diff = float((comp(comp.gather_input(xb)) - model(xb, gate)).abs().max())
    info = {"model": label, "N": n, "s": s, "K": idx.numel(), "batch": int(xb.shape[0])}
    return Case(
        "model",
        f"{label} s={s} batch {int(xb.shape[0])}",
        {
            "compact": lambda: comp(comp.gather_input(xb)),
            "dense": lambda: model(xb),
            "gated": lambda: model(xb, gate),
        },
        {**info, "max_abs_diff": diff},
    )
