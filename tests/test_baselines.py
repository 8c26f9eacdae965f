"""Tests for dynst_fast.baselines, including the Los-loop figures the project quotes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dynst_fast.baselines import (
    LinearAR,
    last_value_forecast,
    linear_ar_baseline,
    persistence_baseline,
    run_baselines,
)
from dynst_fast.data import (
    GraphDataset,
    load_graph_dataset,
    make_windows,
    synthetic_sensor_network,
)
from dynst_fast.graph import CSRGraph


@pytest.mark.data
def test_los_loop_quoted_figures(los_loop_dir: Path):
    """12 steps in, 3 out, 8:1:1: linear AR 3.22 mph and last value 3.27 mph test MAE."""
    splits = make_windows(load_graph_dataset(los_loop_dir), t_in=12, t_out=3)
    res = run_baselines(splits, load_graph_dataset(los_loop_dir).sensor_space())
    assert res["linear_ar"]["mae"] == pytest.approx(3.22, abs=0.01)
    assert res["last_value"]["mae"] == pytest.approx(3.27, abs=0.01)
    assert res["linear_ar"]["count"] == 188 * 3 * 207
    assert len(res["linear_ar"]["mae_per_horizon"]) == 3


def _toy(values: np.ndarray) -> GraphDataset:
    v = values.astype(np.float32)[:, :, None] if values.ndim == 2 else values.astype(np.float32)
    n = v.shape[1]
    return GraphDataset(
        "toy", v, CSRGraph.from_dense(np.eye(n)), [str(i) for i in range(n)], None, ""
    )


def test_last_value_forecast():
    x = torch.arange(24.0).reshape(1, 4, 3, 2)
    y = last_value_forecast(x, 3)
    assert y.shape == (1, 3, 3, 2) and torch.equal(y[0, 2], x[0, 3])
    with pytest.raises(ValueError, match="B, t_in, N, C"):
        last_value_forecast(x[0], 3)


def test_persistence_is_exact_on_a_constant_series():
    v = np.tile(np.array([3.0, 7.0]), (60, 1))
    res = persistence_baseline(make_windows(_toy(v), 4, 2), _toy(v).sensor_space())
    assert res["mae"] == pytest.approx(0.0, abs=1e-6)


def test_linear_ar_recovers_a_noiseless_ar_process():
    """x_t = 0.6 x_{t-1} - 0.3 x_{t-2} + 2 + noise (std 0.1): the fit matches the true model."""
    rng = np.random.default_rng(0)
    t, n = 2000, 3
    v = np.zeros((t, n))
    v[:2] = rng.normal(size=(2, n))
    for k in range(2, t):
        v[k] = 0.6 * v[k - 1] - 0.3 * v[k - 2] + 2.0 + rng.normal(scale=0.1, size=n)
    splits = make_windows(_toy(v), 5, 2)
    x, y = splits.test.tensors()
    model = LinearAR(ridge=1e-8).fit(*splits.train.tensors())
    pred = model.predict(x)
    # a one-step forecast from the true coefficients, for comparison
    xo = splits.denormalize(x)[:, :, :, 0].double()
    true1 = 0.6 * xo[:, -1] - 0.3 * xo[:, -2] + 2.0
    fit1 = splits.denormalize(pred)[:, 0, :, 0].double()
    assert (fit1 - true1).abs().max() < 0.03  # estimation error << noise std 0.1
    space = _toy(v).sensor_space()
    ar = linear_ar_baseline(splits, space)
    last = persistence_baseline(splits, space)
    assert ar["mae"] < 0.85 * last["mae"]
    assert pred.shape == y.shape and pred.dtype == torch.float32


def test_linear_ar_skips_nan_targets_and_handles_channels():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(200, 4, 2)).cumsum(0)
    v[50:60, 1, 0] = np.nan
    splits = make_windows(_toy(v), 6, 3)
    model = LinearAR().fit(*splits.train.tensors())
    assert model.weight.shape == (4, 6 * 2 + 1, 3 * 2) and torch.isfinite(model.weight).all()
    res = run_baselines(splits, _toy(v).sensor_space())
    assert set(res) == {"last_value", "linear_ar"} and np.isfinite(res["linear_ar"]["mae"])
    with pytest.raises(RuntimeError, match="fit"):
        LinearAR().predict(torch.zeros(1, 6, 4, 2))


def test_synthetic_baselines_leave_room_for_graph_models():
    """On the planted network a per-sensor AR beats persistence, but is far from perfect."""
    ds = synthetic_sensor_network()
    res = run_baselines(make_windows(ds, 12, 12), ds.sensor_space())
    assert res["linear_ar"]["mae"] < res["last_value"]["mae"]
    mh = res["linear_ar"]["mae_per_horizon"]
    assert mh[0] < mh[-1]
