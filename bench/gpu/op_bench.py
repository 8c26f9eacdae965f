"""Op benchmarks of the GPU suite, on the cases of ``bench/kernels/cases/`` (each checked
against its composition before it is timed):

* compact, expand, patchify_compact against the plain PyTorch compositions of
  ``dynst_fast.ops.reference``, in GB/s (bytes read + written) and as a percentage of the
  device-to-device copy bandwidth measured at the same size;
* select_swap and prune_lowest against ``torch.topk`` and a full ``torch.sort``;
* gated_spmm against ``torch.sparse.mm`` (cuSPARSE on a GPU), Los-loop and random
  geometric graphs, fp32 and bf16;
* nearest_active and neighbour_attention (forward, forward + backward) against their
  reference compositions.
"""

from __future__ import annotations

import torch

from bench.kernels.cases import (
    SPARSITY,
    Case,
    compact_cases,
    graph,
    nearest_active_case,
    neighbour_attention_cases,
    patchify_cases,
    select_cases,
    spmm_case,
)
from bench.timer import copy_gbps, measure

from .results import Suite

SIZES = {
    False: {
        "compact": [(8, 2**20, 16), (64, 16384, 64)],  # (B, N, F)
        "patchify": [(16, 12, 1, 512, 512, 8), (64, 12, 1, 33, 49, 4)],  # (B, T, C, H, W, p)
        "select": [2**16, 2**20, 2**24],
        "graphs": ["los_loop", 100_000, 1_000_000],
        "features": [16, 64, 128],
        "nearest": [(16384, 64, 8), (2**20, 64, 8)],  # (N, L, m)
        "attention": [(256, 207, 8, 8), (4, 16384, 8, 8), (1, 2**20, 8, 8)],  # (B, N, m, D)
    },
    True: {
        "compact": [(2, 1024, 8)],
        "patchify": [(2, 4, 1, 16, 18, 4)],
        "select": [2**10, 2**12],
        "graphs": ["los_loop", 1000],
        "features": [8],
        "nearest": [(1000, 16, 4)],
        "attention": [(2, 500, 4, 8)],
    },
}
DTYPES = (torch.float32, torch.bfloat16)


def _gbps(nbytes: int, ms: float) -> float:
    return nbytes / (ms * 1e-3) / 1e9


def _bandwidth_row(suite: Suite, case: Case) -> dict:
    """op and torch times, the ratio, GB/s and the share of a copy of the same size."""
    t = measure({m: case.fns[m] for m in ("op", "torch")}, suite.device, quick=suite.quick)
    info = {k: v for k, v in case.info.items() if k != "bytes"}
    moved = int(case.info["bytes"])
    bw, copy = _gbps(moved, t["op"]), copy_gbps(moved // 2, suite.device, suite.quick)
    return {
        **info,
        "op_ms": t["op"],
        "torch_ms": t["torch"],
        "vs_torch": t["torch"] / t["op"],
        "op_GBps": bw,
        "copy_GBps": copy,
        "pct_of_copy": 100 * bw / copy,
    }


def bench_compact(suite: Suite) -> None:
    for b, n, f in SIZES[suite.quick]["compact"]:
        what = f"compact/expand B={b} N={n} F={f}"
        if not suite.out_of_time("ops", what, 5):
            with suite.guard("ops", what):
                for case in compact_cases(b, n, f, suite.device)[:2]:  # forward ones
                    suite.add("ops", case.op, _bandwidth_row(suite, case))


def bench_patchify(suite: Suite) -> None:
    for shape in SIZES[suite.quick]["patchify"]:
        what = "patchify_compact {}x{}x{}x{}x{} p={}".format(*shape)
        if not suite.out_of_time("ops", what, 5):
            with suite.guard("ops", what):
                row = _bandwidth_row(suite, patchify_cases(*shape, suite.device)[0])
                suite.add("ops", "patchify_compact", row)


def bench_select(suite: Suite) -> None:
    for n in SIZES[suite.quick]["select"]:
        what = f"select N={n}"
        if not suite.out_of_time("ops", what, 5):
            with suite.guard("ops", what):
                for case in select_cases(n, suite.device):
                    fns = {m: case.fns[m] for m in ("op", "topk", "sort")}
                    t = measure(fns, suite.device, quick=suite.quick)
                    row = {**case.info, "op_ms": t["op"], "topk_ms": t["topk"]}
                    row.update(sort_ms=t["sort"], vs_topk=t["topk"] / t["op"])
                    row["vs_sort"] = t["sort"] / t["op"]
                    suite.add("ops", case.op, row)


def bench_gated_spmm(suite: Suite) -> None:
    for spec in SIZES[suite.quick]["graphs"]:
        if suite.out_of_time("ops", f"gated_spmm {spec}", 10):
            continue
        name, g = "?", None
        with suite.guard("ops", f"gated_spmm graph {spec}"):
            name, g = graph(spec)
            if g is None:
                suite.error("ops", "gated_spmm Los-loop", "no Los-loop data ($DYNST_DATA_DIR)")
        if g is None:
            continue
        for dtype in DTYPES:
            for f in SIZES[suite.quick]["features"]:
                what = f"gated_spmm {name} F={f} {dtype}"
                if not suite.out_of_time("ops", what, 5):
                    with suite.guard("ops", what):
                        suite.add("ops", "gated_spmm", _spmm_row(suite, name, g, f, dtype))


def _spmm_row(suite: Suite, name: str, g, f: int, dtype: torch.dtype) -> dict:
    case = spmm_case(name, g, f, dtype, suite.device)[0]
    t = measure(case.fns, suite.device, quick=suite.quick)
    row = {k: v for k, v in case.info.items() if k not in ("bytes", "B")}
    row["op_ms"] = t["op"]
    other = next((m for m in ("cusparse", "sparse.mm") if m in t), None)
    if other is not None:
        row["cusparse_ms"] = t[other]
        row["op_vs_cusparse"] = t["op"] / t[other]
    row["op_GBps"] = _gbps(int(case.info["bytes"]), t["op"])
    return row


def bench_neighbours(suite: Suite) -> None:
    for n, length, m in SIZES[suite.quick]["nearest"]:
        what = f"nearest_active N={n} L={length} m={m}"
        if not suite.out_of_time("ops", what, 5):
            with suite.guard("ops", what):
                case = nearest_active_case(n, length, m, suite.device)
                suite.add("ops", "nearest_active", _vs_torch(suite, case))
    for b, n, m, d in SIZES[suite.quick]["attention"]:
        what = f"neighbour_attention B={b} N={n} m={m} D={d}"
        if not suite.out_of_time("ops", what, 10):
            with suite.guard("ops", what):
                for case in neighbour_attention_cases(b, n, m, d, suite.device):
                    grad = case.op.endswith("_backward")
                    suite.add("ops", case.op, _vs_torch(suite, case, grad))


def _vs_torch(suite: Suite, case: Case, grad: bool = False) -> dict:
    t = measure({m: case.fns[m] for m in ("op", "torch")}, suite.device, quick=suite.quick,
                grad=grad)  # fmt: skip
    return {**case.info, "op_ms": t["op"], "torch_ms": t["torch"], "vs_torch": t["torch"] / t["op"]}


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
        "is faster); op_vs_cusparse: the op's time over torch.sparse.mm's (cuSPARSE on a "
        "GPU; < 1: the op is faster). GB/s counts bytes read + written once; pct_of_copy is "
        "that over a device copy of the same size, measured in the same run. gated_spmm's "
        "GB/s counts per edge its column index, weight and source row, plus the output rows.",
    )
    for part in (bench_compact, bench_patchify, bench_select, bench_gated_spmm, bench_neighbours):
        part(suite)
