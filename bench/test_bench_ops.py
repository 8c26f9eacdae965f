"""pytest-benchmark tests of the ops against their compositions (cases: bench/cases.py)."""

from __future__ import annotations

import pytest
import torch
from bench_gated_spmm import los_loop_graph, random_geometric_graph
from cases import compact_cases, patchify_case, select_cases, spmm_case


@pytest.mark.parametrize("method", ["op", "torch"])
@pytest.mark.parametrize("which", [0, 1], ids=["compact", "expand"])
def test_compact_expand(benchmark, bench, compact_spec, which, method):
    cases = bench.cases(
        ("compact", compact_spec), lambda: compact_cases(*compact_spec, bench.device)
    )
    bench.run(benchmark, cases[which], method)


@pytest.mark.parametrize("method", ["op", "torch"])
def test_patchify_compact(benchmark, bench, patchify_spec, method):
    case = bench.cases(
        ("patchify", patchify_spec), lambda: patchify_case(*patchify_spec, bench.device)
    )
    bench.run(benchmark, case, method)


@pytest.mark.parametrize("method", ["op", "topk", "sort"])
@pytest.mark.parametrize("which", [0, 1], ids=["select_swap", "prune_lowest"])
def test_select(benchmark, bench, select_spec, which, method):
    cases = bench.cases(("select", select_spec), lambda: select_cases(select_spec, bench.device))
    bench.run(benchmark, cases[which], method)


@pytest.mark.parametrize("method", ["op", "sparse.mm"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_gated_spmm(benchmark, bench, spmm_spec, dtype, method):
    name, nodes, f = spmm_spec

    def build():
        graph = los_loop_graph(None) if nodes is None else random_geometric_graph(nodes)
        if graph is None:
            pytest.skip("no Los-loop data ($DYNST_DATA_DIR)")
        return spmm_case(name, graph, f, dtype, bench.device)

    case = bench.cases(("spmm", spmm_spec, dtype), build)
    if method == "sparse.mm" and bench.device == "cuda":
        method = "cusparse"
    bench.run(benchmark, case, method)
