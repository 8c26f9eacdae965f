"""``dynst_fast.fast_path``: the compiled inference path gives the eager model's forecasts
(compacted with failed sensors through AOTInductor, dense through torch.compile), and
refuses inputs it was not compiled for and bad arguments with one clear error."""

from __future__ import annotations

import pytest
import torch
from conftest import random_graph

from dynst_fast.fast_path import FastPath
from dynst_fast.models import build_backbone
from dynst_fast.sensors import GraphSensors

N, T_IN, T_OUT, C = 14, 8, 3, 1


def _model():
    torch.manual_seed(0)
    space = GraphSensors(random_graph(N, seed=0))
    return build_backbone("stgcn", space, T_IN, T_OUT, C, {"hidden": 8, "readout": 8}).eval()


def test_aoti_compacted_model_with_failed_sensors_matches_eager():
    model = _model()
    idx = torch.tensor([0, 2, 3, 7, 8, 11, 13])
    theta = torch.rand(N) + 0.5
    compact = model.compact(idx, theta).eval()
    x = torch.randn(1, T_IN, idx.numel(), C)
    alive = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    fast = FastPath(compact, (x, alive), backend="aoti")
    with torch.no_grad():
        for _ in range(2):  # new values through the same compiled shapes
            want = compact(x, alive)
            torch.testing.assert_close(fast(x, alive), want, rtol=1e-5, atol=1e-5)
            x = torch.randn_like(x)
            alive = alive.flip(0)


def test_torch_compile_dense_model_matches_eager():
    model = _model()
    x = torch.randn(2, T_IN, N, C)
    fast = FastPath(model, (x,), backend="compile")
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-5, atol=1e-5)


def test_other_shapes_and_bad_arguments_are_refused():
    model = _model()
    x = torch.randn(1, T_IN, N, C)
    fast = FastPath(model, (x,), backend="eager")
    with torch.no_grad():
        assert torch.equal(fast(x), model(x))
    with pytest.raises(ValueError, match=r"compiled for inputs \[1, 8, 14, 1\] float32 on cpu, "
                       r"called with \[2, 8, 14, 1\]"):  # fmt: skip
        fast(torch.randn(2, T_IN, N, C))
    with pytest.raises(ValueError, match="called with .* float64"):
        fast(x.double())
    with pytest.raises(ValueError, match="backend must be one of aoti, compile, eager"):
        FastPath(model, (x,), backend="tensorrt")
    with pytest.raises(TypeError, match="example must be a tuple of tensors"):
        FastPath(model, x)
    with pytest.raises(ValueError, match="x must have shape|sensors"):  # the model's own check
        FastPath(model, (torch.randn(1, T_IN, N + 1, C),), backend="eager")
