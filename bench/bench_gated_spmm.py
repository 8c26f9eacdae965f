"""Benchmark of gated message passing ``out = A (gate * x)``: ``dynst_fast.ops.gated_spmm``
(the C++ kernels) against ``torch.sparse.mm``, PyG and the ``index_select`` +
``index_add_`` composition, forward and forward + backward, and on pruned graphs.

    nice python bench/bench_gated_spmm.py [--sizes los,1e4,1e5,1e6] [--features 16,64,128]
        [--features-1e6 16,64] [--repeats 7] [--threads T] [--data DIR]

Graphs: Los-loop (207 nodes, from ``$DYNST_DATA_DIR/los_loop`` or ``../shared/data``;
skipped if absent) and random geometric graphs (seeded uniform points in the unit
square, edges between points closer than r, both directions, r set for an expected
degree of 12; built with scipy's cKDTree; nodes in generation order, i.e. no locality).
B = 1 (a pure sparse-times-dense product; Los-loop also with B = 32, the model's window
batch). x is float32 [B, N, F], gate [N] with every 7th entry 0, weights in (0, 1].

Methods (every result is checked against ``cpp`` before it is timed):

* ``cpp``: ``dynst_fast.ops.gated_spmm`` as the model calls it (argument checks
  included; the transpose used by the backward is cached on the graph, as in training).
* ``sparse.mm``: ``torch.sparse.mm`` of the CSR tensor of A with ``gate * x`` ([N, B*F],
  permuted when B > 1), differentiable in x and gate.
* ``pyg_spmm``: ``torch_geometric.utils.spmm`` of the CSR tensor (PyG's fused path of
  ``message_and_aggregate`` for sparse adjacencies).
* ``pyg_mp``: a ``torch_geometric.nn.MessagePassing`` layer with ``aggr='add'`` over
  ``edge_index`` (gather of x_j, weight, scatter-add): PyG's default path.
* ``index_add``: ``(gate * x).index_select(1, col) * w`` then ``index_add_`` over rows.

The gather/scatter methods (``pyg_mp``, ``index_add``) hold E x B x F messages; they are
skipped where that exceeds ``--max-message-gb`` (default 1 GB), and say so. PyG is
skipped with a message when ``torch_geometric`` is not installed (it is not a
dependency of dynst_fast).

Pruned graphs: for each graph, random active sets at sparsity 0.3 / 0.5 / 0.7 (seeded),
``induce_subgraph`` of the active set, and ``cpp`` on it with x restricted to the active
nodes; reported as time ratios to the unpruned graph next to the remaining-edge ratio.

``fwd`` runs under ``torch.no_grad()``; ``fwd+bwd`` runs the forward with x and gate
requiring grad, then ``backward`` of a fixed output gradient. Times are medians in ms
(wall time, or with ``--clock thread --threads 1`` the CPU time of the one thread that
runs everything, which preemption by other processes does not inflate),
with the methods (or the pruned graphs) of one case timed round-robin, one call each in
turn, so that load from other processes falls on all of them alike.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dynst_fast import ops
from dynst_fast.graph import CSRGraph
from dynst_fast.timing import side_by_side

try:
    import torch_geometric
    from torch_geometric.nn import MessagePassing
    from torch_geometric.utils import spmm as pyg_spmm
except ImportError:  # PyG is optional: only this benchmark uses it
    torch_geometric = None

METHODS = ["cpp", "sparse.mm", "pyg_spmm", "pyg_mp", "index_add"]
# Where the tensors live (--device); CUDA timings synchronise after every call.
_DEVICE = torch.device("cpu")
# The clock (--clock): wall time, or the CPU time of this thread (--threads 1 only).
_CLOCK = time.perf_counter
SPARSITIES = (0.3, 0.5, 0.7)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# ---------------------------------------------------------------------------- graphs
def random_geometric_graph(n: int, degree: float = 12.0, seed: int = 0) -> CSRGraph:
    """Seeded random geometric graph: n uniform points in the unit square, an edge both
    ways between points closer than r = sqrt(degree / (pi n)) (expected degree
    ``degree``, a little less at the border), weights uniform in (0, 1]."""
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


def los_loop_graph(data: str | None) -> CSRGraph | None:
    from dynst_fast.data import load_graph_dataset, shared_data_dir

    try:
        base = Path(data) if data else shared_data_dir()
    except FileNotFoundError:
        return None
    d = base / "los_loop" if (base / "los_loop").is_dir() else base
    if not d.is_dir():
        return None
    return load_graph_dataset(d).adjacency.to(dtype=torch.float32)


# -------------------------------------------------------------------------- methods
def _csr_tensor(graph: CSRGraph) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(graph.rowptr, graph.col, graph.weight, size=graph.shape)


def _as_matrix(x: torch.Tensor) -> torch.Tensor:
    """[B, N, F] -> [N, B * F] (a view for B = 1)."""
    b, n, f = x.shape
    return x[0] if b == 1 else x.permute(1, 0, 2).reshape(n, b * f)


def _from_matrix(y: torch.Tensor, b: int) -> torch.Tensor:
    return y[None] if b == 1 else y.reshape(y.shape[0], b, -1).permute(1, 0, 2)


def make_methods(graph: CSRGraph, b: int) -> dict[str, Callable | None]:
    a_csr = _csr_tensor(graph)
    rows = graph.row_index()
    col, w = graph.col, graph.weight
    methods: dict[str, Callable | None] = {
        "cpp": lambda x, g: ops.gated_spmm(graph, x, g),
        "sparse.mm": lambda x, g: _from_matrix(
            torch.sparse.mm(a_csr, _as_matrix(x * g[None, :, None])), b
        ),
        "index_add": lambda x, g: x.new_zeros(x.shape[0], graph.num_rows, x.shape[2]).index_add_(
            1, rows, (x * g[None, :, None]).index_select(1, col) * w[None, :, None]
        ),
        "pyg_spmm": None,
        "pyg_mp": None,
    }
    if torch_geometric is not None:

        class WeightedSum(MessagePassing):
            """out_i = sum_j w_ij x_j over edge_index (PyG's gather / scatter path)."""

            def __init__(self) -> None:
                super().__init__(aggr="add", node_dim=-2)

            def forward(self, x, edge_index, edge_weight):
                return self.propagate(edge_index, x=x, edge_weight=edge_weight)

            def message(self, x_j, edge_weight):
                return edge_weight.view(-1, 1) * x_j

        layer = WeightedSum()
        edge_index = torch.stack([col, rows])  # row 0 = source, row 1 = target
        methods["pyg_spmm"] = lambda x, g: _from_matrix(
            pyg_spmm(a_csr, _as_matrix(x * g[None, :, None]), reduce="sum"), b
        )
        methods["pyg_mp"] = lambda x, g: layer(x * g[None, :, None], edge_index, w)
    return methods


def bench_case(
    graph: CSRGraph, b: int, f: int, repeats: int, max_message_gb: float
) -> dict[str, tuple[float, float] | str]:
    """{method: (fwd ms, fwd+bwd ms)} or {method: reason it was skipped}."""
    g = torch.Generator().manual_seed(1)
    s, r = graph.num_cols, graph.num_rows
    x = torch.randn(b, s, f, generator=g).to(_DEVICE)
    gate = torch.rand(s, generator=g)
    gate[::7] = 0.0
    gate = gate.to(_DEVICE)
    gout = torch.randn(b, r, f, generator=g).to(_DEVICE)
    graph.transpose()  # cached, as in training
    message_gb = graph.num_edges * b * f * 4 / 1e9
    results: dict[str, tuple[float, float] | str] = {}
    fwd_fns: dict[str, Callable[[], object]] = {}
    step_fns: dict[str, Callable[[], object]] = {}
    expect = grads = None
    for name, fn in make_methods(graph, b).items():
        if fn is None:
            results[name] = "torch_geometric not installed"
            continue
        if name in ("pyg_mp", "index_add") and message_gb > max_message_gb:
            results[name] = f"E*B*F messages would take {message_gb:.1f} GB"
            continue
        with torch.no_grad():
            out = fn(x, gate)
        xg = x.clone().requires_grad_()
        gg = gate.clone().requires_grad_()

        def step(fn=fn, xg=xg, gg=gg):
            xg.grad = gg.grad = None
            fn(xg, gg).backward(gout)

        step()
        got = (xg.grad, gg.grad)
        if expect is None:
            expect, grads = out, got
        else:  # every method must agree with the first (cpp)
            torch.testing.assert_close(out, expect, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(got[0], grads[0], rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(got[1], grads[1], rtol=1e-3, atol=1e-2)
        del out, got
        fwd_fns[name] = lambda fn=fn: fn(x, gate)
        step_fns[name] = step
    with torch.no_grad():
        fwd = side_by_side(fwd_fns, repeats, warmup=2, grad=True, clock=_CLOCK)
    both = side_by_side(step_fns, repeats, warmup=2, grad=True, clock=_CLOCK)
    for name in fwd_fns:
        results[name] = (fwd[name], both[name])
    gc.collect()
    return results


def bench_pruned(graph: CSRGraph, f: int, repeats: int) -> list[tuple]:
    """(sparsity, kept nodes, kept-edge ratio, fwd ratio, fwd+bwd ratio, unpruned fwd ms,
    unpruned fwd+bwd ms) of ``cpp`` on induce_subgraph of random active sets against the
    unpruned graph, B = 1, all timed round-robin."""
    g = torch.Generator().manual_seed(2)
    n = graph.num_nodes
    x = torch.randn(1, n, f, generator=g).to(_DEVICE)
    gate = (torch.rand(n, generator=g) + 0.5).to(_DEVICE)

    cases = {"full": (graph, x, gate)}
    kept = {}
    for sparsity in SPARSITIES:
        k = round((1 - sparsity) * n)
        index = torch.randperm(n, generator=g)[:k].to(_DEVICE)
        cases[sparsity] = (ops.induce_subgraph(graph, index), x[:, index].contiguous(), gate[index])
        kept[sparsity] = k
    fwd_fns, step_fns = {}, {}
    for key, (gr, xx, gt) in cases.items():
        gr.transpose()  # cached, as in training
        gout = torch.randn(1, gr.num_rows, f, generator=g).to(_DEVICE)
        xg, gg = xx.clone().requires_grad_(), gt.clone().requires_grad_()

        def step(gr=gr, xg=xg, gg=gg, gout=gout):
            xg.grad = gg.grad = None
            ops.gated_spmm(gr, xg, gg).backward(gout)

        fwd_fns[key] = lambda gr=gr, xx=xx, gt=gt: ops.gated_spmm(gr, xx, gt)
        step_fns[key] = step
    with torch.no_grad():
        fwd = side_by_side(fwd_fns, repeats, warmup=2, grad=True, clock=_CLOCK)
    both = side_by_side(step_fns, repeats, warmup=2, grad=True, clock=_CLOCK)
    return [
        (
            sparsity,
            kept[sparsity],
            cases[sparsity][0].num_edges / graph.num_edges,
            fwd[sparsity] / fwd["full"],
            both[sparsity] / both["full"],
            fwd["full"],
            both["full"],
        )
        for sparsity in SPARSITIES
    ]


# ----------------------------------------------------------------------------- main
def _parse_sizes(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("DYNST_DATA_DIR"), help="data directory")
    ap.add_argument("--sizes", default="los,1e4,1e5,1e6", help="graphs: los and/or 1eK nodes")
    ap.add_argument("--features", default="16,64,128", help="F values")
    ap.add_argument("--features-1e6", default="16,64", help="F values for the 1e6 graph")
    ap.add_argument("--repeats", type=int, default=7, help="timed repeats (median)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    ap.add_argument("--max-message-gb", type=float, default=1.0)
    ap.add_argument("--pruned-features", type=int, default=64, help="F of the pruned runs")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (kernels of csrc/cuda)")
    ap.add_argument(
        "--clock",
        choices=["wall", "thread"],
        default="wall",
        help="wall time, or this thread's CPU time (CPU with --threads 1: not inflated "
        "by other processes preempting this one)",
    )
    args = ap.parse_args()
    global _DEVICE, _CLOCK
    _DEVICE = torch.device(args.device)
    if args.clock == "thread":
        if args.threads != 1 or _DEVICE.type != "cpu":
            ap.error("--clock thread needs --threads 1 and --device cpu")
        _CLOCK = time.thread_time
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    features = [int(v) for v in args.features.split(",")]
    features_1e6 = [int(v) for v in args.features_1e6.split(",")]

    pyg = f"PyG {torch_geometric.__version__}" if torch_geometric else "PyG not installed"
    if _DEVICE.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(_DEVICE)}")
    print(
        f"machine: {_cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads, ATen CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}), {pyg}; float32, times in ms (median, "
        f"{'thread CPU time' if args.clock == 'thread' else 'wall time'})"
    )
    if torch_geometric is None:
        print("torch_geometric is not installed: the pyg_* columns are skipped")

    graphs: list[tuple[str, CSRGraph, list[int]]] = []
    for size in _parse_sizes(args.sizes):
        if size == "los":
            los = los_loop_graph(args.data)
            if los is None:
                print("Los-loop data not found (set DYNST_DATA_DIR): skipped")
            else:
                graphs.append(("los_loop", los.to(_DEVICE), [1, 32]))
        else:
            n = int(float(size))
            t0 = time.perf_counter()
            rgg = random_geometric_graph(n)
            print(
                f"rgg {size}: {n} nodes, {rgg.num_edges} edges "
                f"(mean degree {rgg.num_edges / n:.1f}), built in {time.perf_counter() - t0:.1f} s"
            )
            graphs.append((f"rgg {size}", rgg.to(_DEVICE), [1]))

    head = f"{'graph':<9} {'N':>7} {'E':>8} {'B':>3} {'F':>4} | " + " | ".join(
        f"{m:>17}" for m in METHODS
    )
    print()
    print(head)
    print(
        f"{'':<9} {'':>7} {'':>8} {'':>3} {'':>4} | "
        + " | ".join(f"{'fwd':>8} {'fwd+bwd':>8}" for _ in METHODS)
    )
    print("-" * len(head))
    speedups, notes = [], set()
    for name, graph, batches in graphs:
        fs = features_1e6 if graph.num_nodes >= 1_000_000 else features
        for b in batches:
            for f in fs:
                res = bench_case(graph, b, f, args.repeats, args.max_message_gb)
                cells = []
                for m in METHODS:
                    v = res[m]
                    if isinstance(v, str):
                        cells.append(f"{'-':>8} {'-':>8}")
                        notes.add(f"{m} skipped for {name} B={b} F={f}: {v}")
                    else:
                        cells.append(f"{v[0]:8.3f} {v[1]:8.3f}")
                print(
                    f"{name:<9} {graph.num_nodes:>7} {graph.num_edges:>8} {b:>3} {f:>4} | "
                    + " | ".join(cells),
                    flush=True,
                )
                cpp = res["cpp"]
                # bytes a forward must move at least: the CSR once, gate, x and out once
                e, r_, s_ = graph.num_edges, graph.num_rows, graph.num_cols
                min_bytes = 8 * (r_ + 1) + 12 * e + 4 * s_ + 4 * b * (s_ + r_) * f
                ratios = [f"cpp fwd {min_bytes / cpp[0] / 1e6:6.1f} GB/s;"]
                for m in METHODS[1:]:
                    v = res[m]
                    if not isinstance(v, str):
                        ratios.append(f"{m} {v[0] / cpp[0]:5.2f}x / {v[1] / cpp[1]:5.2f}x")
                speedups.append(f"{name:<9} B={b:<2} F={f:<4} " + "  ".join(ratios))
    for note in sorted(notes):
        print(f"  ({note})")
    print(
        "\nspeed-up of cpp (other method's time / cpp's time, fwd / fwd+bwd); cpp fwd GB/s"
        " counts the least bytes a forward must move (CSR, gate, x and out, once each):"
    )
    print("\n".join(speedups))

    print(
        f"\npruned graphs: cpp on induce_subgraph of a random active set, B = 1, "
        f"F = {args.pruned_features}; ratios to the unpruned graph"
    )
    print(
        f"{'graph':<9} {'sparsity':>8} {'K':>7} {'edges left':>10} "
        f"{'fwd time':>9} {'fwd+bwd':>9}   (unpruned fwd / fwd+bwd ms)"
    )
    for name, graph, _ in graphs:
        for sparsity, k, e_ratio, fwd, both, full_fwd, full_both in bench_pruned(
            graph, args.pruned_features, args.repeats
        ):
            print(
                f"{name:<9} {sparsity:>8.1f} {k:>7} {e_ratio:>10.3f} {fwd:>9.3f} {both:>9.3f}"
                f"   ({full_fwd:.3f} / {full_both:.3f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
