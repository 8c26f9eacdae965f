"""Benchmark of ``gated_spmm`` on CPU: the C++ op against the PyTorch reference and
``torch.sparse.mm``, forward and forward + backward, median of repeats.

    python bench/bench_gated_spmm.py [--data DIR] [--repeats N] [--threads T]

Graphs: Los-loop (``$DYNST_DATA_DIR/los_loop`` or ``../shared/data/los_loop``; skipped
if absent) with B = 32, and a random graph of 10^4 nodes and ~10 in-edges per node
with B = 1; F in {64, 160}. float32.

Columns: ``fwd`` runs under ``torch.no_grad()``; ``fwd+bwd`` runs the forward with x and
gate requiring grad, then ``backward`` of a fixed output gradient (grads of x and
gate). Methods:

* ``cpp``: ``dynst_fast.ops.gated_spmm`` (the C++ kernels, as the model calls them,
  argument checks included; the transpose for the backward is cached on the graph).
* ``reference``: ``dynst_fast.ops.reference.gated_spmm`` (gather + index_add).
* ``sparse.mm``: ``torch.sparse.mm`` of the CSR tensor of A with ``x * gate`` permuted to
  ``[S, B*F]`` (and the result permuted back), differentiable in x and gate.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from dynst_fast import ops
from dynst_fast.graph import CSRGraph


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def random_graph(n: int, degree: int, seed: int = 0) -> CSRGraph:
    g = torch.Generator().manual_seed(seed)
    e = n * degree
    src = torch.randint(0, n, (e,), generator=g)
    dst = torch.randint(0, n, (e,), generator=g)
    w = torch.rand(e, generator=g)
    return CSRGraph.from_edge_index(torch.stack([src, dst]), n, w)


def los_loop_graph(data: str | None) -> CSRGraph | None:
    from dynst_fast.data import load_graph_dataset, shared_data_dir

    try:
        base = Path(data) if data else shared_data_dir()
    except FileNotFoundError:
        return None
    d = base / "los_loop" if (base / "los_loop").is_dir() else base
    if not d.is_dir():
        return None
    return load_graph_dataset(d).adjacency


def median_ms(fn: Callable[[], object], repeats: int, budget_s: float = 1.0) -> float:
    for _ in range(3):  # warm-up
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or (len(times) < 5 * repeats and time.perf_counter() - start < 0.2):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 5 and time.perf_counter() - start > budget_s:
            break
    return 1e3 * statistics.median(times)


def sparse_mm(a_csr: torch.Tensor, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    b, s, f = x.shape
    xs = (x * gate[None, :, None]).permute(1, 0, 2).reshape(s, b * f)
    return torch.sparse.mm(a_csr, xs).reshape(a_csr.shape[0], b, f).permute(1, 0, 2)


def bench_case(graph: CSRGraph, b: int, f: int, repeats: int) -> dict[str, tuple[float, float]]:
    g = torch.Generator().manual_seed(1)
    s, r = graph.num_cols, graph.num_rows
    graph = graph.to(dtype=torch.float32)
    x = torch.randn(b, s, f, generator=g)
    gate = torch.rand(s, generator=g)
    gate[::7] = 0.0
    gout = torch.randn(b, r, f, generator=g)
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore")
        a_csr = torch.sparse_csr_tensor(graph.rowptr, graph.col, graph.weight, size=graph.shape)
    methods = {
        "cpp": lambda x_, g_: ops.gated_spmm(graph, x_, g_),
        "reference": lambda x_, g_: ops.reference.gated_spmm(graph, x_, g_),
        "sparse.mm": lambda x_, g_: sparse_mm(a_csr, x_, g_),
    }
    graph.transpose()  # cached, as in training
    results: dict[str, tuple[float, float]] = {}
    expect = grads = None
    for name, fn in methods.items():
        with torch.no_grad():
            out = fn(x, gate)
            fwd = median_ms(lambda fn=fn: fn(x, gate), repeats)
        xg = x.clone().requires_grad_()
        gg = gate.clone().requires_grad_()

        def step(fn=fn, xg=xg, gg=gg):
            xg.grad = gg.grad = None
            fn(xg, gg).backward(gout)

        step()
        got = (xg.grad.clone(), gg.grad.clone())
        if expect is None:
            expect, grads = out, got
        else:  # every method must agree with the first (cpp)
            torch.testing.assert_close(out, expect, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(got[0], grads[0], rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(got[1], grads[1], rtol=1e-3, atol=1e-3)
        results[name] = (fwd, median_ms(step, repeats))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("DYNST_DATA_DIR"), help="data directory")
    ap.add_argument("--repeats", type=int, default=20, help="minimum timed repeats")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    print(
        f"machine: {_cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads, ATen CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}), float32, times in ms (median)"
    )
    cases = []
    los = los_loop_graph(args.data)
    if los is None:
        print("Los-loop data not found (set DYNST_DATA_DIR): skipped")
    else:
        cases += [("los_loop", los, 32, f) for f in (64, 160)]
    rnd = random_graph(10_000, 10)
    cases += [("random 1e4", rnd, 1, f) for f in (64, 160)]

    methods = ["cpp", "reference", "sparse.mm"]
    head = f"{'graph':<11} {'N':>6} {'E':>7} {'B':>3} {'F':>4} | " + " | ".join(
        f"{m:>18}" for m in methods
    )
    sub = f"{'':<11} {'':>6} {'':>7} {'':>3} {'':>4} | " + " | ".join(
        f"{'fwd':>8} {'fwd+bwd':>9}" for _ in methods
    )
    print(head)
    print(sub)
    print("-" * len(head))
    speedups = []
    for name, graph, b, f in cases:
        res = bench_case(graph, b, f, args.repeats)
        cells = " | ".join(f"{res[m][0]:8.3f} {res[m][1]:9.3f}" for m in methods)
        print(f"{name:<11} {graph.num_rows:>6} {graph.num_edges:>7} {b:>3} {f:>4} | {cells}")
        speedups.append(
            f"{name:<11} F={f:<4} "
            + "  ".join(
                f"vs {m}: {res[m][0] / res['cpp'][0]:5.1f}x fwd, "
                f"{res[m][1] / res['cpp'][1]:5.1f}x fwd+bwd"
                for m in methods[1:]
            )
        )
    print("\nspeed-up of cpp:")
    print("\n".join(speedups))


if __name__ == "__main__":
    main()
