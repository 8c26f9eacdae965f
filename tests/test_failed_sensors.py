"""Forecasts that survive failed sensors (issue 14): a compacted model's per-call
``alive[K]`` switches failed sensors off exactly as the gated form does a gate of 0, the
ONNX export carries it as an input, and ``dynst predict --on-missing drop`` uses it for
sensors whose window holds NaN."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_graph

from dynst_fast.artifacts import load_run
from dynst_fast.cli import main
from dynst_fast.deploy import deployable
from dynst_fast.models import build_backbone
from dynst_fast.morph import PatchGrid
from dynst_fast.sensors import GraphSensors, PatchSensors
from dynst_fast.train import random_failures, stuck_failures

N_GRAPH, T_IN, T_OUT, C = 23, 12, 3, 2
OPTIONS = {
    "stgcn": {"hidden": 16},
    "masked-stgcn": {"hidden": 16},
    "vit": {"dim": 16, "depth": 2, "heads": 2, "decoder_dim": 8, "decoder_heads": 2},
    "simvp": {"hidden": 8, "translator": 16},
}


def _model_and_input(name: str, seed: int):
    torch.manual_seed(seed)
    if name in ("stgcn", "masked-stgcn"):
        space = GraphSensors(random_graph(N_GRAPH, seed=seed))
        x = torch.randn(3, T_IN, N_GRAPH, C)
        t_in = T_IN
    else:
        space = PatchSensors(PatchGrid(11, 13, 3))
        x = torch.randn(3, 4, C, 11, 13)
        t_in = 4
    model = build_backbone(name, space, t_in, T_OUT, C, OPTIONS[name]).eval()
    if name == "vit":
        with torch.no_grad():  # a trained-looking mask token, not the zero init
            model.decoder.mask_token.normal_()
    return model, x


def _active_set(n: int, k: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=g)[:k].sort().values
    theta = torch.rand(n, generator=g) * 2 - 0.5  # negative scores too
    alive = (torch.rand(k, generator=g) >= 0.4).float()
    alive[0] = 0.0  # at least one failure
    if k > 1:
        alive[1] = 1.0  # and at least one sensor reporting
    return idx, theta, alive


@pytest.mark.parametrize("name", list(OPTIONS))
@pytest.mark.parametrize("k", [1, 2, 9, 20])
def test_alive_equals_the_gated_model_with_failed_gates_zero(name, k):
    model, x = _model_and_input(name, seed=k)
    n = model.num_sensors
    idx, theta, alive = _active_set(n, k, seed=k + 100)
    gate = torch.zeros(n)
    gate[idx] = theta[idx] * alive  # A minus the failed sensors
    with torch.no_grad():
        want = model(x, gate)
        compact = model.compact(idx, theta)
        got = compact(compact.gather_input(x), alive)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


@pytest.mark.parametrize("name", list(OPTIONS))
def test_alive_all_ones_is_todays_output(name):
    model, x = _model_and_input(name, seed=3)
    idx, theta, _ = _active_set(model.num_sensors, 9, seed=4)
    with torch.no_grad():
        compact = model.compact(idx, theta)
        xa = compact.gather_input(x)
        today = compact(xa)
        ones = compact(xa, torch.ones(9))
    torch.testing.assert_close(ones, today, rtol=1e-6, atol=1e-6 * today.abs().max().item())


@pytest.mark.parametrize("name", list(OPTIONS))
def test_a_failed_sensors_input_is_not_used(name):
    model, x = _model_and_input(name, seed=5)
    idx, theta, alive = _active_set(model.num_sensors, 9, seed=6)
    with torch.no_grad():
        compact = model.compact(idx, theta)
        xa = compact.gather_input(x)
        noisy = xa.clone()
        axis = 2 if noisy.dim() == 4 else 1  # graph [B, T, K, C], patches [B, K, F]
        failed = torch.nonzero(alive == 0).flatten()
        noisy.index_copy_(axis, failed, torch.randn_like(noisy.index_select(axis, failed)) * 100)
        torch.testing.assert_close(compact(noisy, alive), compact(xa, alive))


def test_alive_of_the_wrong_shape_is_refused():
    model, x = _model_and_input("stgcn", seed=0)
    compact = model.compact(torch.tensor([1, 4, 9]))
    with pytest.raises(ValueError, match=r"alive must have shape \[3\]"):
        compact(compact.gather_input(x), torch.ones(4))


def test_random_failures():
    g = torch.Generator().manual_seed(0)
    assert random_failures(5, 0.0, g) is None
    draws = torch.stack([random_failures(7, 0.3, g) for _ in range(400)])
    assert bool((draws.sum(dim=1) >= 1).all())  # never all failed
    assert abs(float(1 - draws.mean()) - 0.3) < 0.05
    assert bool((random_failures(3, 0.99, g) == torch.tensor([0.0, 0.0, 0.0])).sum() == 2)


@pytest.mark.parametrize("name", ["stgcn", "vit"])
def test_stuck_sensors_hold_their_first_reading_and_stay_on(name):
    """``--stuck-share``: of the failures drawn, a share becomes stuck sensors (every
    step of their data equals the window's first, the calendar channels untouched), left
    switched on; the other sensors' inputs do not change."""
    model, x = _model_and_input(name, 0)
    n = model.space.num_sensors
    idx, _, alive = _active_set(n, max(3, n // 2), 1)
    compact = model.compact(idx)
    g = torch.Generator().manual_seed(0)
    held, on = stuck_failures(x, alive, compact, 1.0, g)  # every failure stuck
    assert torch.equal(on, torch.ones_like(alive))
    stuck = idx[alive == 0]
    cells = model.space.cells(held)  # [B, T, M, C]: M sensors or pixels
    which = model.space.cells(model.space.gate_input(torch.ones_like(x[:, :1]), _gate(n, stuck)))
    m = which[0, 0, :, 0] != 0
    assert torch.equal(cells[:, :, m], cells[:, :1, m].expand_as(cells[:, :, m]))
    assert not torch.equal(cells[:, :, m], model.space.cells(x)[:, :, m])
    assert torch.equal(cells[:, :, ~m], model.space.cells(x)[:, :, ~m])
    one = model.space.cells(model.space.hold_first(x, stuck, 1))  # channel 1 as a calendar
    assert torch.equal(one[..., 1:], model.space.cells(x)[..., 1:])
    assert torch.equal(one[..., :1], cells[..., :1])
    same, kept = stuck_failures(x, alive, compact, 0.0, g)
    assert same is x and torch.equal(kept, alive)


def _gate(n: int, on: torch.Tensor) -> torch.Tensor:
    g = torch.zeros(n)
    g[on] = 1.0
    return g


# ---------------------------------------------------------------- a run, exported
@pytest.fixture(scope="module")
def exported(tiny_dynst_run, tmp_path_factory) -> tuple[Path, Path]:
    model = tmp_path_factory.mktemp("alive") / "m.onnx"
    assert main(["export", str(tiny_dynst_run), "--out", str(model)]) == 0
    return tiny_dynst_run, model


def test_onnx_alive_matches_pytorch(exported):
    import onnxruntime as ort

    run_dir, model = exported
    meta = json.loads(Path(f"{model}.json").read_text())
    k = len(meta["sensor_ids"])
    assert meta["alive"] == {"name": "alive", "shape": [k], "dtype": "float32"}
    module = deployable(load_run(run_dir)).module
    rng = np.random.default_rng(0)
    x = (40 + 20 * rng.random((4, meta["t_in"], k, 1))).astype(np.float32)
    alive = (rng.random(k) >= 0.3).astype(np.float32)
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x, "alive": alive})[0]
    with torch.no_grad():
        want = module(torch.from_numpy(x), torch.from_numpy(alive)).numpy()
    assert np.abs(got - want).max() / np.abs(want).max() <= 1e-4
    full = sess.run(None, {"x": x, "alive": np.ones(k, np.float32)})[0]
    assert np.abs(full - got).max() > 1e-3  # the failures change the forecast
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], full)  # default: all on


def test_predict_drops_a_sensor_with_nan(exported, tmp_path, capsys):
    run_dir, model = exported
    meta = json.loads(Path(f"{model}.json").read_text())
    k, ids = len(meta["sensor_ids"]), meta["sensor_ids"]
    rng = np.random.default_rng(1)
    x = (40 + 20 * rng.random((3, meta["t_in"], k, 1))).astype(np.float32)
    x[1, 5, 2, 0] = np.nan  # window 1: sensor 2 has a gap
    np.save(tmp_path / "x.npy", x)
    assert main(["predict", str(model), "--input", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "y.npy")]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert f"sensor(s) {ids[2]!r}" in err and "window(s) [1]" in err
    got = np.load(tmp_path / "y.npy")
    module = deployable(load_run(run_dir)).module
    dead = torch.ones(k)
    dead[2] = 0.0
    filled = torch.from_numpy(np.nan_to_num(x))
    with torch.no_grad():
        want_dead = module(filled[1:2], dead).numpy()
        want_rest = module(filled[[0, 2]]).numpy()
    scale = np.abs(want_rest).max()
    assert np.abs(got[1:2] - want_dead).max() / scale <= 1e-4
    assert np.abs(got[[0, 2]] - want_rest).max() / scale <= 1e-4
    code = main(["predict", str(model), "--input", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "z.npy"), "--on-missing", "fail"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "NaN" in err and ids[2] in err and not (tmp_path / "z.npy").exists()


def test_predict_refuses_a_window_with_every_sensor_missing(exported, tmp_path, capsys):
    _, model = exported
    meta = json.loads(Path(f"{model}.json").read_text())
    x = np.full((1, meta["t_in"], len(meta["sensor_ids"]), 1), np.nan, np.float32)
    np.save(tmp_path / "x.npy", x)
    code = main(["predict", str(model), "--input", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "y.npy")])  # fmt: skip
    assert code == 2 and "every input sensor" in capsys.readouterr().err
