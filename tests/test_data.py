"""Tests for dynst_fast.data: file readers, windows/splits, the planted synthetic network."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dynst_fast.data import (
    GraphDataset,
    WindowDataset,
    load_graph_dataset,
    make_windows,
    shared_data_dir,
    split_bounds,
    synthetic_sensor_network,
)
from dynst_fast.graph import CSRGraph


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _tiny_dir(tmp_path: Path, t: int = 40, n: int = 3) -> Path:
    """values.csv [t, n] with ids a,b,c.. and a dense adj.csv (chain + self-loops)."""
    rng = np.random.default_rng(0)
    ids = [chr(ord("a") + i) for i in range(n)]
    vals = rng.normal(10, 2, (t, n)).round(3)
    lines = [",".join(ids)] + [",".join(str(v) for v in row) for row in vals]
    _write(tmp_path / "values.csv", "\n".join(lines) + "\n")
    adj = np.eye(n) + np.eye(n, k=1) * 0.5 + np.eye(n, k=-1) * 0.5
    np.savetxt(tmp_path / "adj.csv", adj, delimiter=",")
    return tmp_path


def _dataset(values: np.ndarray) -> GraphDataset:
    v = values.astype(np.float32)
    if v.ndim == 2:
        v = v[:, :, None]
    n = v.shape[1]
    return GraphDataset(
        "toy", v, CSRGraph.from_dense(np.eye(n)), [str(i) for i in range(n)], None, ""
    )


# ------------------------------------------------------------------ real data
@pytest.mark.data
def test_los_loop_loads_from_its_directory(los_loop_dir: Path):
    ds = load_graph_dataset(los_loop_dir)
    assert ds.name == "los_loop" and ds.units == "mph" and ds.steps_per_day == 288
    assert ds.values.shape == (2016, 207, 1) and ds.values.dtype == np.float32
    assert (ds.num_steps, ds.num_sensors, ds.num_channels) == (2016, 207, 1)
    assert ds.sensor_ids[:3] == ["773869", "767541", "767542"] and len(ds.sensor_ids) == 207
    assert not np.isnan(ds.values).any() and ds.values.min() >= 0
    adj = ds.adjacency.to_dense().numpy()
    assert adj.shape == (207, 207) and ds.adjacency.num_edges == 2833
    assert np.allclose(np.diag(adj), 1.0) and np.allclose(adj, adj.T)
    assert ds.coords.shape == (207, 2) and np.allclose(ds.coords[0], [34.15497, -118.31829])
    assert ds.planted is None and ds.planted_sparsity is None


@pytest.mark.data
def test_los_loop_split_and_normalisation(los_loop_dir: Path):
    ds = load_graph_dataset(los_loop_dir)
    sp = make_windows(ds, t_in=12, t_out=3)
    # series cut at int(0.8 T) = 1612 and int(0.9 T) = 1814, each part windowed alone
    assert (len(sp.train), len(sp.val), len(sp.test)) == (1612 - 14, 202 - 14, 202 - 14)
    assert (sp.train.start, sp.val.start, sp.test.start) == (0, 1612, 1814)
    np.testing.assert_allclose(sp.mean[:, 0], ds.values[:1612, :, 0].mean(0), rtol=1e-5)
    np.testing.assert_allclose(sp.std[:, 0], ds.values[:1612, :, 0].std(0), rtol=1e-4)
    x, y = sp.test[0]
    raw = torch.from_numpy(ds.values)
    torch.testing.assert_close(sp.denormalize(x), raw[1814:1826], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(sp.denormalize(y), raw[1826:1829], rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------------ formats
def test_generic_csv_dir_and_meta(tmp_path):
    d = _tiny_dir(tmp_path)
    _write(d / "meta.json", json.dumps({"name": "toy", "units": "m/s", "steps_per_day": 24}))
    _write(d / "locations.csv", "sensor_id,x,y\nc,3,30\na,1,10\nb,2,20\n")
    ds = load_graph_dataset(d)
    assert (ds.name, ds.units, ds.steps_per_day) == ("toy", "m/s", 24)
    assert ds.sensor_ids == ["a", "b", "c"] and ds.values.shape == (40, 3, 1)
    np.testing.assert_allclose(ds.coords, [[1, 10], [2, 20], [3, 30]])  # reordered by id
    np.testing.assert_allclose(ds.adjacency.to_dense()[0].numpy(), [1, 0.5, 0])
    assert load_graph_dataset(d / "values.csv").sensor_ids == ["a", "b", "c"]  # file path


def test_csv_missing_values_and_index_column(tmp_path):
    _write(tmp_path / "values.csv", "time,a,b\nt0,1,\nt1,NA,2\nt2,3,nan\n")
    np.savetxt(tmp_path / "adj.csv", np.eye(2), delimiter=",")
    ds = load_graph_dataset(tmp_path)
    assert ds.sensor_ids == ["a", "b"] and ds.units == "" and ds.steps_per_day is None
    np.testing.assert_array_equal(np.isnan(ds.values[:, :, 0]), [[0, 1], [1, 0], [0, 1]])


def test_npy_three_channels_and_npz_with_edges(tmp_path):
    v = np.random.default_rng(1).random((30, 4, 2)).astype(np.float32)
    np.save(tmp_path / "values.npy", v)
    np.save(tmp_path / "adj.npy", np.ones((4, 4)))
    ds = load_graph_dataset(tmp_path)
    assert ds.values.shape == (30, 4, 2) and ds.sensor_ids == ["0", "1", "2", "3"]
    assert ds.adjacency.num_edges == 16

    d2 = tmp_path / "npz"
    d2.mkdir()
    np.savez(d2 / "values.npz", values=v[:, :, 0], sensor_ids=np.array(["w", "x", "y", "z"]))
    _write(d2 / "edges.csv", "source,target,weight\nw,x,0.5\nz,x,2\ny,y,1\n")
    ds2 = load_graph_dataset(d2)
    dense = ds2.adjacency.to_dense().numpy()
    assert ds2.values.shape == (30, 4, 1) and ds2.sensor_ids == ["w", "x", "y", "z"]
    assert dense[1, 0] == 0.5 and dense[1, 3] == 2 and dense[2, 2] == 1 and dense.sum() == 3.5
    _write(d2 / "edges.csv", "source,target\n0,1\n3,2\n")  # integer indices, weight 1
    dense = load_graph_dataset(d2).adjacency.to_dense().numpy()
    assert dense[1, 0] == 1 and dense[2, 3] == 1 and dense.sum() == 2


@pytest.mark.parametrize(
    "setup, pattern",
    [
        (lambda d: (d / "values.csv").unlink(), r"no values file.*speed\.csv.*values\.npz"),
        (lambda d: (d / "adj.csv").unlink(), r"no adjacency.*adj\.csv.*edges\.csv"),
        (lambda d: np.savetxt(d / "adj.csv", np.eye(4), delimiter=","), r"4 x 4.*3 sensors"),
        (lambda d: np.savetxt(d / "adj.csv", -np.eye(3), delimiter=","), r">= 0"),
        (lambda d: np.savetxt(d / "adj.csv", np.full((3, 3), np.nan), delimiter=","), "NaN"),
        (lambda d: _write(d / "adj.csv", "1,0\n0,1,0\n"), r"line 2 has 3 values"),
        (lambda d: _write(d / "values.csv", "a,b,c\n1,x,3\n1,2,3\n"), r"'x'.*line 2.*'b'"),
        (lambda d: _write(d / "values.csv", "a,b,c\n1,,3\n1,,3\n"), r"sensor 'b'.*all NaN"),
        (lambda d: _write(d / "values.csv", "a,b,c\n1,2\n"), r"header names 3 sensors.*2"),
        (lambda d: _write(d / "values.csv", ""), "empty"),
        (lambda d: _write(d / "values.csv", "a,b,c\n"), "no data rows"),
        (lambda d: _write(d / "meta.json", "{oops"), "meta.json"),
        (
            lambda d: _write(d / "meta.json", '{"steps_per_day": "abc"}'),
            r"meta.json in .*: steps_per_day must be a positive integer, got 'abc'",
        ),
        (
            lambda d: _write(d / "meta.json", '{"steps_per_day": 0}'),
            "steps_per_day must be a positive integer",
        ),
        (lambda d: _write(d / "meta.json", '{"units": 5}'), "meta.json in .*: units must be text"),
        (
            lambda d: _write(d / "meta.json", '{"missing_value": "zero"}'),
            "missing_value must be a finite number",
        ),
    ],
)
def test_clear_load_errors(tmp_path, setup, pattern):
    d = _tiny_dir(tmp_path)
    setup(d)
    with pytest.raises((ValueError, FileNotFoundError), match=pattern):
        load_graph_dataset(d)


def test_array_errors(tmp_path):
    np.save(tmp_path / "adj.npy", np.eye(3))
    np.save(tmp_path / "values.npy", np.zeros((2, 3, 1, 1)))
    with pytest.raises(ValueError, match="4 dimensions"):
        load_graph_dataset(tmp_path)
    np.save(tmp_path / "values.npy", np.array([["a", "b", "c"]]))
    with pytest.raises(ValueError, match="numeric"):
        load_graph_dataset(tmp_path)
    np.save(tmp_path / "values.npy", np.zeros((0, 3)))
    with pytest.raises(ValueError, match="empty"):
        load_graph_dataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_graph_dataset(tmp_path / "nope")


def test_shared_data_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNST_DATA_DIR", str(tmp_path))
    assert shared_data_dir() == tmp_path
    monkeypatch.setenv("DYNST_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="DYNST_DATA_DIR"):
        shared_data_dir()


# ------------------------------------------------------------------ windows
def test_windows_values_nan_and_tensors():
    t, n = 100, 3
    v = np.arange(t * n, dtype=np.float64).reshape(t, n) % 17
    v[85, 1] = np.nan  # in the test part (steps 90.. are test, 80..89 val)
    v[92, 2] = np.nan
    sp = make_windows(_dataset(v), t_in=4, t_out=2)
    assert (len(sp.train), len(sp.val), len(sp.test)) == (75, 5, 5)
    mean, std = v[:80].mean(0), v[:80].std(0)
    np.testing.assert_allclose(sp.mean[:, 0], mean, rtol=1e-6)
    x, y = sp.test[0]  # inputs 90..93, targets 94..95
    assert x.shape == (4, 3, 1) and y.shape == (2, 3, 1) and x.dtype == torch.float32
    assert x[2, 2, 0] == 0 and not torch.isnan(x).any()  # NaN input -> 0 = the train mean
    np.testing.assert_allclose(x[0, 0, 0], (v[90, 0] - mean[0]) / std[0], rtol=1e-5)
    xv, yv = sp.val[2]  # inputs 82..85, targets 86..87
    assert xv[3, 1, 0] == 0
    xs, ys = sp.val.tensors()
    assert torch.isnan(xs).sum() == 0 and torch.isnan(ys).sum() == 2  # 85 is in 2 targets
    _, y_nan = sp.val[0]  # targets 84, 85 -> 85 is NaN and kept
    assert torch.isnan(y_nan[1, 1, 0]) and torch.isnan(y_nan).sum() == 1
    X, Y = sp.train.tensors()
    assert X.shape == (75, 4, 3, 1) and Y.shape == (75, 2, 3, 1)
    for i in (0, 37, 74, -1):
        xi, yi = sp.train[i]
        assert torch.equal(X[i], xi) and torch.equal(Y[i], yi)
    with pytest.raises(IndexError):
        sp.train[75]
    batch = next(iter(torch.utils.data.DataLoader(sp.train, batch_size=8)))
    assert batch[0].shape == (8, 4, 3, 1)
    back = sp.denormalize(sp.normalize(torch.from_numpy(v.astype(np.float32))[:, :, None]))
    torch.testing.assert_close(
        back,
        torch.from_numpy(v.astype(np.float32))[:, :, None],
        equal_nan=True,
        rtol=1e-5,
        atol=1e-4,
    )


def test_streamed_statistics_equal_numpy_on_long_series(monkeypatch):
    """Mean and std fitted over time chunks (NaN ignored) equal numpy's on the whole
    part, and the chunked normalisation equals the whole-array one."""
    from dynst_fast.data import windows

    monkeypatch.setattr(windows, "CHUNK_STEPS", 7)
    v = np.random.default_rng(1).normal(size=(300, 4)) * 5 + 3
    v[np.random.default_rng(2).random(v.shape) < 0.1] = np.nan
    sp = make_windows(_dataset(v), 3, 2)
    train = v[:240]
    np.testing.assert_allclose(sp.mean[:, 0], np.nanmean(train, 0), rtol=1e-6)
    np.testing.assert_allclose(sp.std[:, 0], np.nanstd(train, 0), rtol=1e-6)
    want = ((v - np.nanmean(train, 0)) / np.nanstd(train, 0)).astype(np.float32)
    _, y = sp.test[0]
    np.testing.assert_allclose(y[:, :, 0].numpy(), want[273:275], rtol=1e-6, equal_nan=True)


def test_head_is_the_first_windows():
    v = np.arange(60 * 2, dtype=np.float64).reshape(60, 2)
    sp = make_windows(_dataset(v), 3, 2)
    head = sp.train.head(5)
    assert len(head) == 5 and head.start == sp.train.start
    for i in range(5):
        for a, b in zip(head[i], sp.train[i], strict=True):
            assert torch.equal(a, b)
    assert len(sp.train.head(10**6)) == len(sp.train) and len(sp.train.head(0)) == 0


def test_normalisation_uses_train_part_only():
    v = np.random.default_rng(0).normal(size=(50, 2))
    a = make_windows(_dataset(v), 2, 2)
    v2 = v.copy()
    v2[40:] += 1000.0
    b = make_windows(_dataset(v2), 2, 2)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.std, b.std)
    const = make_windows(_dataset(np.ones((50, 2))), 2, 2)
    assert np.all(const.std == 1) and torch.all(const.train[0][0] == 0)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"t_in": 0}, "t_in must be a positive integer"),
        ({"t_out": -1}, "t_out must be a positive integer"),
        ({"t_in": 2.5}, "t_in must be a positive integer"),
        ({"t_in": 8, "t_out": 3}, r"too long.*validation part has 10 steps"),
        ({"split": (0.8, 0.1, 0.2)}, "sum to 1"),
        ({"split": (0.9, 0.1)}, "3 fractions"),
        ({"split": (1.0, 0.0, 0.0)}, "positive"),
    ],
)
def test_make_windows_errors(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        make_windows(_dataset(np.zeros((100, 2))), **{"t_in": 2, "t_out": 2, **kwargs})


def test_sensor_unseen_in_train_is_named():
    v = np.ones((100, 2))
    v[:80, 1] = np.nan
    with pytest.raises(ValueError, match="sensor '1'.*training part"):
        make_windows(_dataset(v), 2, 2)


@settings(max_examples=40, deadline=None)
@given(t=st.integers(30, 300), t_in=st.integers(1, 6), t_out=st.integers(1, 6))
def test_split_partitions_time_and_windows_stay_inside(t, t_in, t_out):
    a, b = split_bounds(t, (0.8, 0.1, 0.1))
    assert 0 < a < b < t
    if min(a, b - a, t - b) < t_in + t_out:
        return
    sp = make_windows(_dataset(np.arange(t, dtype=np.float64)[:, None]), t_in, t_out)
    parts = ((sp.train, 0, a), (sp.val, a, b), (sp.test, b, t))
    for wd, lo, hi in parts:
        assert isinstance(wd, WindowDataset) and len(wd) == hi - lo - t_in - t_out + 1
        x, y = wd.tensors()
        steps_x = sp.denormalize(x)[..., 0, 0].round()
        steps_y = sp.denormalize(y)[..., 0, 0].round()
        assert steps_x.min() == lo and steps_y.max() == hi - 1


# ------------------------------------------------------------------ synthetic
def test_synthetic_defaults_and_determinism():
    ds = synthetic_sensor_network()
    assert ds.values.shape == (3000, 80, 1) and ds.values.dtype == np.float32
    assert ds.planted.dtype == np.int64 and len(ds.planted) == 16
    assert np.all(np.diff(ds.planted) > 0) and ds.planted_sparsity == pytest.approx(0.8)
    assert ds.steps_per_day == 288 and ds.coords.shape == (80, 2) and len(ds.sensor_ids) == 80
    assert 0 < ds.values.min() and ds.values.max() < 100 and not np.isnan(ds.values).any()
    again = synthetic_sensor_network(seed=0)
    np.testing.assert_array_equal(ds.values, again.values)
    np.testing.assert_array_equal(ds.planted, again.planted)
    assert torch.equal(ds.adjacency.weight, again.adjacency.weight)
    other = synthetic_sensor_network(seed=1)
    assert not np.array_equal(ds.values, other.values)
    small = synthetic_sensor_network(num_sensors=10, num_planted=3, num_steps=100, seed=5)
    assert small.values.shape == (100, 10, 1) and small.planted_sparsity == pytest.approx(0.7)
    with pytest.raises(ValueError, match="num_planted"):
        synthetic_sensor_network(num_sensors=10, num_planted=11)


def test_synthetic_graph_links_every_sensor_to_a_planted_one():
    ds = synthetic_sensor_network(seed=3)
    adj = ds.adjacency.to_dense().numpy()
    assert np.allclose(adj, adj.T) and np.allclose(np.diag(adj), 1.0) and (adj >= 0).all()
    others = np.setdiff1d(np.arange(80), ds.planted)
    assert (adj[np.ix_(others, ds.planted)] > 0).any(axis=1).all()


def test_synthetic_graph_is_the_knn_graph_of_brute_force_distances():
    ds = synthetic_sensor_network(num_sensors=120, num_planted=20, num_steps=50, seed=4, knn=5)
    xy = ds.coords.astype(np.float64)  # stored in float32: weights agree to ~1e-6
    dist = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    nbr = np.argsort(dist, axis=1)[:, 1:6]
    adj = ds.adjacency.to_dense().numpy()
    assert (adj[np.repeat(np.arange(120), 5), nbr.ravel()] > 0).all()
    sigma = dist[np.arange(120)[:, None], nbr].mean()
    rows, cols = np.nonzero(adj - np.eye(120))
    np.testing.assert_allclose(adj[rows, cols], np.exp(-((dist[rows, cols] / sigma) ** 2)), 1e-5)


def test_synthetic_large_network_needs_no_dense_matrix():
    import tracemalloc

    tracemalloc.start()
    ds = synthetic_sensor_network(num_sensors=12_000, num_planted=100, num_steps=40, seed=2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert ds.adjacency.num_nodes == 12_000 and ds.adjacency.num_edges < 12_000 * 20
    # one dense N x N float64 matrix would be 1.15 GB
    assert peak < 100e6, f"peak traced memory {peak / 1e6:.0f} MB"


def _next_step_mse(v: np.ndarray, inputs: np.ndarray, t_in: int = 12) -> float:
    """Least squares from the inputs' last t_in steps to every sensor's next step."""
    t = v.shape[0]
    idx = np.arange(t - t_in)[:, None] + np.arange(t_in)
    x = np.c_[v[idx][:, :, inputs].reshape(len(idx), -1), np.ones(len(idx))]
    y = v[t_in:]
    n = int(0.8 * len(x))
    w = np.linalg.lstsq(x[:n], y[:n], rcond=None)[0]
    return float(((x[n:] @ w - y[n:]) ** 2).mean())


@pytest.mark.parametrize("seed", [0, 1])
def test_synthetic_planted_sensors_predict_the_field(seed):
    ds = synthetic_sensor_network(seed=seed)
    v = ds.values[:, :, 0].astype(np.float64)
    planted = _next_step_mse(v, ds.planted)
    rng = np.random.default_rng(100 + seed)
    rand = [_next_step_mse(v, np.sort(rng.choice(80, 16, replace=False))) for _ in range(3)]
    assert np.mean(rand) > 1.5 * planted, (planted, rand)


def test_ar2_driver_filter_is_scipys_lfilter_bit_for_bit():
    """The planted drivers' all-pole filter, written out to spare importing
    scipy.signal, rounds exactly as ``lfilter`` does (so the data sets are unchanged)."""
    from scipy.signal import lfilter

    from dynst_fast.data.synthetic import _ar2

    e = np.random.default_rng(0).standard_normal((500, 6))
    a1, a2 = 1.9, -0.9409
    np.testing.assert_array_equal(_ar2(e, a1, a2), lfilter([1.0], [1.0, -a1, -a2], e, axis=0))
