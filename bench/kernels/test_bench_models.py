"""pytest-benchmark tests of the compacted models against dense inference (random
weights and a seeded random active set: speed depends on neither)."""

from __future__ import annotations

import pytest

from bench.kernels.cases import model_case, model_setup


def _dataset(data: str):
    from dynst_fast.data import load_dataset, shared_data_dir, synthetic_sensor_network

    if data == "planted":
        return synthetic_sensor_network(num_sensors=64, num_planted=12, num_steps=300)
    folder = {"Los-loop": "los_loop", "ERA5": "era5_uk_t2m"}[data]
    try:
        path = shared_data_dir() / folder
    except FileNotFoundError:
        pytest.skip("no real data ($DYNST_DATA_DIR)")
    return load_dataset(str(path), kind="graph" if data == "Los-loop" else "grid")


@pytest.mark.parametrize("method", ["compact", "dense", "gated"])
def test_model_inference(benchmark, bench, model_spec, method):
    name, data, s, batch = model_spec

    def build():
        model, splits = model_setup(name, _dataset(data), bench.device)
        return model_case(model, splits, f"{name} {data}", s, batch, bench.device)

    case = bench.cases(("model", model_spec), build)
    assert case.info["max_abs_diff"] < 1e-4  # the compacted model is the gated one
    bench.run(benchmark, case, method)
