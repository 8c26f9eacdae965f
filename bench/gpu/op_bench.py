"""Op benchmarks, each checked against its composition before it is timed:

* compact, expand, patchify_compact against the plain PyTorch compositions of
  ``dynst_fast.ops.reference``, in GB/s (bytes read + written) and as a percentage of the
  device-to-device copy bandwidth measured at the same size;
* select_swap and prune_lowest against ``torch.topk`` and a full ``torch.sort`` of the
  masked scores;
* gated_spmm against ``torch.sparse.mm`` of the CSR matrix with the gated input (cuSPARSE
  on a GPU), on Los-loop and random geometric graphs.

The timed call is ``torch.ops.dynst_fast.<op>`` (what the public op runs after its checks);
``gated_spmm`` is timed through the public op, as models call it.
"""

from __future__ import annotations

import warnings

import torch
from bench_gated_spmm import los_loop_graph, random_geometric_graph

from dynst_fast import ops
from dynst_fast.graph import CSRGraph
from dynst_fast.ops import reference

from .results import Suite
from .timer import copy_gbps, measure

SIZES = {
    False: {
        "compact": [(8, 2**20, 16), (64, 16384, 64)],  # (B, N, F)
        "patchify": [(16, 12, 1, 512, 512, 8), (64, 12, 1, 33, 49, 4)],  # (B, T, C, H, W, p)
        "select": [2**16, 2**20, 2**24],
        "graphs": ["los_loop", 100_000, 1_000_000],
        "features": [16, 64, 128],
    },
    True: {
        "compact": [(2, 1024, 8)],
        "patchify": [(2, 4, 1, 16, 18, 4)],
        "select": [2**10, 2**12],
        "graphs": ["los_loop", 1000],
        "features": [8],
    },
}
SPARSITY = 0.5
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _active(n: int, s: float, device: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    k = max(1, round((1 - s) * n))
    return torch.randperm(n, generator=g)[:k].sort().values.to(device)


def _gbps(nbytes: int, ms: float) -> float:
    return nbytes / (ms * 1e-3) / 1e9


def bench_compact(suite: Suite) -> None:
    for b, n, f in SIZES[suite.quick]["compact"]:
        what = f"compact/expand B={b} N={n} F={f}"
        if not suite.out_of_time("ops", what, 5):
            with suite.guard("ops", what):
                _compact_case(suite, b, n, f)


def _compact_case(suite: Suite, b: int, n: int, f: int) -> None:
    dev, lib = suite.device, torch.ops.dynst_fast
    idx = _active(n, SPARSITY, dev, n + f)
    k = idx.numel()
    x, theta = torch.randn(b, n, f, device=dev), torch.randn(n, device=dev)
    y = torch.randn(b, k, f, device=dev)
    assert torch.equal(lib.compact(x, theta, idx), reference.compact(x, theta, idx))
    assert torch.equal(lib.expand(y, idx, n, 0.0), reference.expand(y, idx, n, 0.0))
    t = measure(
        {
            "compact": lambda: lib.compact(x, theta, idx),
            "compact_torch": lambda: reference.compact(x, theta, idx),
            "expand": lambda: lib.expand(y, idx, n, 0.0),
            "expand_torch": lambda: reference.expand(y, idx, n, 0.0),
        },
        dev,
        quick=suite.quick,
    )
    common = {"B": b, "N": n, "F": f, "s": SPARSITY, "K": k}
    moves = {"compact": 2 * b * k * f * 4, "expand": (b * k * f + b * n * f) * 4}
    for op, moved in moves.items():
        bw = _gbps(moved, t[op])
        copy = copy_gbps(moved // 2, dev, suite.quick)
        suite.add(
            "ops",
            op,
            {
                **common,
                "op_ms": t[op],
                "torch_ms": t[f"{op}_torch"],
                "vs_torch": t[f"{op}_torch"] / t[op],
                "op_GBps": bw,
                "copy_GBps": copy,
                "pct_of_copy": 100 * bw / copy,
            },
        )


def bench_patchify(suite: Suite) -> None:
    for shape in SIZES[suite.quick]["patchify"]:
        what = "patchify_compact {}x{}x{}x{}x{} p={}".format(*shape)
        if not suite.out_of_time("ops", what, 5):
            with suite.guard("ops", what):
                _patchify_case(suite, *shape)


def _patchify_case(suite: Suite, b: int, t_: int, c: int, h: int, w: int, p: int) -> None:
    dev, lib = suite.device, torch.ops.dynst_fast
    n = -(-h // p) * -(-w // p)
    idx = _active(n, SPARSITY, dev, h * w)
    k = idx.numel()
    frames, theta = torch.randn(b, t_, c, h, w, device=dev), torch.randn(n, device=dev)
    want = reference.patchify_compact(frames, theta, idx, p)
    assert torch.equal(lib.patchify_compact(frames, theta, idx, p), want)
    tm = measure(
        {
            "op": lambda: lib.patchify_compact(frames, theta, idx, p),
            "torch": lambda: reference.patchify_compact(frames, theta, idx, p),
        },
        dev,
        quick=suite.quick,
    )
    moved = 2 * want.numel() * 4
    bw, copy = _gbps(moved, tm["op"]), copy_gbps(moved // 2, dev, suite.quick)
    suite.add(
        "ops",
        "patchify_compact",
        {
            "frames": f"{b}x{t_}x{c}x{h}x{w}",
            "p": p,
            "N": n,
            "s": SPARSITY,
            "K": k,
            "op_ms": tm["op"],
            "torch_ms": tm["torch"],
            "vs_torch": tm["torch"] / tm["op"],
            "op_GBps": bw,
            "pct_of_copy": 100 * bw / copy,
        },
    )


def bench_select(suite: Suite) -> None:
    for n in SIZES[suite.quick]["select"]:
        what = f"select N={n}"
        if not suite.out_of_time("ops", what, 5):
            with suite.guard("ops", what):
                _select_case(suite, n)


def _select_case(suite: Suite, n: int) -> None:
    dev, lib, inf = suite.device, torch.ops.dynst_fast, float("inf")
    g = torch.Generator().manual_seed(n)
    score = torch.rand(n, generator=g).to(dev)
    active = torch.zeros(n, dtype=torch.bool)
    active[torch.randperm(n, generator=g)[: round((1 - SPARSITY) * n)]] = True
    active = active.to(dev)
    k = max(1, n // 100)

    def topk_swap():
        drop = torch.topk(score.masked_fill(~active, inf), k, largest=False).indices
        return drop, torch.topk(score.masked_fill(active, -inf), k).indices

    def sort_swap():
        drop = torch.sort(score.masked_fill(~active, inf)).indices[:k]
        grow = torch.sort(score.masked_fill(active, -inf), descending=True).indices
        return drop, grow[:k]

    def topk_prune():
        return torch.topk(score.abs().masked_fill(~active, inf), k, largest=False)

    def sort_prune():
        return torch.sort(score.abs().masked_fill(~active, inf)).indices[:k]

    drop, grow = lib.select_swap(score, active, k)
    want_drop, want_grow = topk_swap()
    assert set(drop.tolist()) == set(want_drop.tolist())
    assert set(grow.tolist()) == set(want_grow.tolist())
    pruned = lib.prune_lowest(score, active, k)
    assert int((active & ~pruned).sum()) == k
    t = measure(
        {
            "swap": lambda: lib.select_swap(score, active, k),
            "swap_topk": topk_swap,
            "swap_sort": sort_swap,
            "prune": lambda: lib.prune_lowest(score, active, k),
            "prune_topk": topk_prune,
            "prune_sort": sort_prune,
        },
        dev,
        quick=suite.quick,
    )
    for op, key in (("select_swap", "swap"), ("prune_lowest", "prune")):
        suite.add(
            "ops",
            op,
            {
                "N": n,
                "s": SPARSITY,
                "k": k,
                "op_ms": t[key],
                "topk_ms": t[f"{key}_topk"],
                "sort_ms": t[f"{key}_sort"],
                "vs_topk": t[f"{key}_topk"] / t[key],
                "vs_sort": t[f"{key}_sort"] / t[key],
            },
        )


def _graph(spec: str | int) -> tuple[str, CSRGraph | None]:
    if spec == "los_loop":
        return "Los-loop", los_loop_graph(None)
    return f"RGG {spec:.0e}", random_geometric_graph(int(spec))


def bench_gated_spmm(suite: Suite) -> None:
    dev = suite.device
    for spec in SIZES[suite.quick]["graphs"]:
        if suite.out_of_time("ops", f"gated_spmm {spec}", 10):
            continue
        name, graph = "?", None
        with suite.guard("ops", f"gated_spmm graph {spec}"):
            name, graph = _graph(spec)
            if graph is None:
                suite.error("ops", "gated_spmm Los-loop", "no Los-loop data ($DYNST_DATA_DIR)")
        if graph is None:
            continue
        for dname, dtype in DTYPES.items():
            g = graph.to(dev, dtype=dtype)
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore")
                a = torch.sparse_csr_tensor(g.rowptr, g.col, g.weight, size=g.shape)
            for f in SIZES[suite.quick]["features"]:
                what = f"gated_spmm {name} F={f} {dname}"
                if not suite.out_of_time("ops", what, 5):
                    with suite.guard("ops", what):
                        _spmm_case(suite, name, g, a, f, dname)


def _spmm_case(suite: Suite, name: str, g: CSRGraph, a: torch.Tensor, f: int, dname: str) -> None:
    dev, n, dtype = suite.device, g.num_nodes, DTYPES[dname]
    x = torch.randn(1, n, f, device=dev, dtype=dtype)
    gate = torch.ones(n, device=dev, dtype=dtype)
    gate[::7] = 0
    got = ops.gated_spmm(g, x, gate)[0].float()
    row = {"graph": name, "nodes": n, "edges": g.num_edges, "F": f, "dtype": dname}
    fns = {"op": lambda: ops.gated_spmm(g, x, gate)}
    try:
        want = torch.sparse.mm(a, gate[:, None] * x[0]).float()
        fns["cusparse"] = lambda: torch.sparse.mm(a, gate[:, None] * x[0])
        scale = float(want.abs().max()) or 1.0
        row["max_rel_err"] = float((got - want).abs().max()) / scale
    except (RuntimeError, NotImplementedError) as exc:
        row["sparse.mm"] = f"unsupported ({str(exc).splitlines()[0][:60]})"
    t = measure(fns, dev, quick=suite.quick)
    row["op_ms"] = t["op"]
    if "cusparse" in t:
        row["cusparse_ms"] = t["cusparse"]
        row["op_vs_cusparse"] = t["op"] / t["cusparse"]
    per_edge = g.col.element_size() + g.weight.element_size() + f * x.element_size()
    row["op_GBps"] = _gbps(g.num_edges * per_edge + n * f * x.element_size(), t["op"])
    suite.add("ops", "gated_spmm", row)


def run_ops(suite: Suite) -> None:
    suite.section(
        "ops",
        f"Sparsity {SPARSITY} (a seeded random sorted active set), float32 unless said. "
        + (
            "`triton.testing.do_bench` medians (CUDA events, L2 flushed), interleaved rounds"
            if suite.device == "cuda"
            else "CPU: `dynst_fast.timing.side_by_side` medians of interleaved rounds"
        )
        + ". vs_torch / vs_topk / vs_sort: the composition's time over the op's (> 1: the op "
        "is faster); op_vs_cusparse: the op's time over cuSPARSE's (< 1: the op is faster). "
        "GB/s counts bytes read + written once; pct_of_copy is that over a device copy of "
        "the same size, measured in the same run. gated_spmm's GB/s counts per edge its "
        "column index, weight and source row, plus the output rows once.",
    )
    for part in (bench_compact, bench_patchify, bench_select, bench_gated_spmm):
        part(suite)
