"""pytest-benchmark tests of the ops against their compositions (cases: ``cases.py``)."""

from __future__ import annotations

import pytest
import torch

from bench.kernels.cases import (
    compact_cases,
    graph,
    nearest_active_case,
    neighbour_attention_cases,
    patchify_cases,
    pruned_spmm_case,
    select_cases,
    spmm_case,
)

SPMM_METHODS = ("op", "sparse.mm", "pyg_spmm", "pyg_mp", "index_add")


@pytest.mark.parametrize("method", ["op", "torch", "nz+isel"])
@pytest.mark.parametrize("which", [0, 1, 2], ids=["compact", "expand", "fwd+bwd"])
def test_compact_expand(benchmark, bench, compact_spec, which, method):
    b, n, f, s = compact_spec
    if b * n * f * 4 > bench.budget_gb * 1e9:
        pytest.skip(f"x of {b * n * f * 4 / 1e9:.1f} GB is over --bench-budget-gb")
    cases = bench.cases(("compact", compact_spec), lambda: compact_cases(b, n, f, bench.device, s))
    bench.run(benchmark, cases[which], method)


@pytest.mark.parametrize("method", ["op", "torch"])
@pytest.mark.parametrize("which", [0, 1], ids=["fwd", "fwd+bwd"])
def test_patchify_compact(benchmark, bench, patchify_spec, which, method):
    *shape, s = patchify_spec
    cases = bench.cases(
        ("patchify", patchify_spec), lambda: patchify_cases(*shape, bench.device, s)
    )
    bench.run(benchmark, cases[which], method)


@pytest.mark.parametrize("method", ["op", "public", "topk", "sort"])
@pytest.mark.parametrize("which", [0, 1], ids=["select_swap", "prune_lowest"])
def test_select(benchmark, bench, select_spec, which, method):
    n, s, kf = select_spec
    cases = bench.cases(("select", select_spec), lambda: select_cases(n, bench.device, s, kf))
    bench.run(benchmark, cases[which], method)


@pytest.mark.parametrize("method", ["op", "torch"])
def test_nearest_active(benchmark, bench, nearest_spec, method):
    n, length, m, s = nearest_spec
    case = bench.cases(
        ("nearest", nearest_spec), lambda: nearest_active_case(n, length, m, bench.device, s)
    )
    bench.run(benchmark, case, method)


@pytest.mark.parametrize("method", ["op", "torch"])
@pytest.mark.parametrize("which", [0, 1], ids=["fwd", "fwd+bwd"])
def test_neighbour_attention(benchmark, bench, attention_spec, which, method):
    b, n, m, d, s = attention_spec
    cases = bench.cases(
        ("attention", attention_spec),
        lambda: neighbour_attention_cases(b, n, m, d, bench.device, s),
    )
    bench.run(benchmark, cases[which], method)


def _graph(spec):
    name, g = graph(spec)
    if g is None:
        pytest.skip("no Los-loop data ($DYNST_DATA_DIR)")
    return name, g


@pytest.mark.parametrize("method", SPMM_METHODS)
@pytest.mark.parametrize("which", [0, 1], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_gated_spmm(benchmark, bench, spmm_spec, dtype, which, method):
    spec, b, f = spmm_spec
    if dtype != torch.float32 and method not in ("op", "sparse.mm"):
        pytest.skip("bf16: the op against torch.sparse.mm only")

    def build():
        name, g = _graph(spec)
        return spmm_case(name, g, f, dtype, bench.device, b=b, methods=SPMM_METHODS)

    cases = bench.cases(("spmm", spmm_spec, dtype), build)
    if method == "sparse.mm" and bench.device == "cuda":
        method = "cusparse"
    bench.run(benchmark, cases[which], method)


@pytest.mark.parametrize("method", ["op", "s0.3", "s0.5", "s0.7"])
def test_gated_spmm_pruned(benchmark, bench, pruned_spec, method):
    spec, f = pruned_spec

    def build():
        name, g = _graph(spec)
        return pruned_spmm_case(name, g, f, bench.device)

    bench.run(benchmark, bench.cases(("pruned", pruned_spec), build), method)
