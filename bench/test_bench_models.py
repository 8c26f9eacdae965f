"""pytest-benchmark tests of the compacted models against dense inference (random
weights and a seeded random active set: speed depends on neither)."""

from __future__ import annotations

import pytest
from cases import model_case
from gpu.model_bench import _setup, model_data


@pytest.mark.parametrize("method", ["compact", "dense", "gated"])
def test_model_inference(benchmark, bench, model_spec, method, request):
    name, data, s, batch = model_spec
    quick = request.config.getoption("--bench-size") == "quick"

    def build():
        load = next(ld for m, d, ld in model_data(quick) if m == name and d.startswith(data))
        model, splits = _setup(name, load(), bench.device)
        return model_case(model, splits, f"{name} {data}", s, batch, bench.device)

    case = bench.cases(("model", model_spec), build)
    assert case.info["max_abs_diff"] < 1e-4  # the compacted model is the gated one
    bench.run(benchmark, case, method)
