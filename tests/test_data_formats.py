"""The data formats users already have, loaded from the real files in ../shared/data:
METR-LA (DCRNN's .h5 + adj_mx.pkl, or adj.npz), PyTorch Geometric Temporal JSON, and the
PEMS npz + distance list (written here in that layout); each with a wrong-layout case."""

from __future__ import annotations

import builtins
import json
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from dynst_fast.data import (
    ReadOptions,
    format_of,
    from_pyg_temporal,
    load_dataset,
    load_graph_dataset,
)
from dynst_fast.data.safe_pickle import load_plain_pickle
from dynst_fast.graph import distance_kernel

pytestmark = pytest.mark.data


@pytest.fixture
def metr_la(shared_data: Path) -> Path:
    return shared_data / "metr_la_format"


@pytest.fixture
def pyg_dir(shared_data: Path) -> Path:
    return shared_data / "pyg_temporal"


def _beside(tmp: Path, src: Path, names: list[str]) -> Path:
    """A directory holding links to some of ``src``'s files."""
    tmp.mkdir(parents=True, exist_ok=True)
    for name in names:
        os.symlink(src / name, tmp / name)
    return tmp


# ------------------------------------------------------------------ METR-LA (DCRNN)
def test_metr_la_h5_and_pickle_are_los_loop(metr_la, los_loop_dir):
    ds = load_dataset(metr_la)
    assert format_of(metr_la).name.startswith("metr-la")
    ids = load_plain_pickle(metr_la / "adj_mx.pkl")[0]
    assert ds.num_sensors == 207 and ds.sensor_ids == [str(s) for s in ids]
    assert ds.steps_per_day == 288 and ds.coords.shape == (207, 2)
    assert ds.adjacency.num_edges == 1722
    los = load_graph_dataset(los_loop_dir)
    pos = {s: i for i, s in enumerate(los.sensor_ids)}
    np.testing.assert_array_equal(ds.values, los.values[:, [pos[s] for s in ds.sensor_ids]])


def test_metr_la_with_scipy_npz_adjacency(metr_la, tmp_path):
    d = _beside(tmp_path / "npz", metr_la, ["metr-la.h5", "adj.npz"])
    ds = load_dataset(d)
    import scipy.sparse as sp

    m = sp.load_npz(metr_la / "adj.npz")
    assert ds.num_sensors == 207 and ds.adjacency.shape == (207, 207)
    np.testing.assert_allclose(ds.adjacency.to_dense().numpy(), m.toarray(), rtol=1e-6)


def test_metr_la_wrong_layouts_are_clear(metr_la, tmp_path):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "values.h5").write_bytes(b"not an hdf5 file")
    with pytest.raises(ValueError, match="pandas HDF5 store"):
        load_dataset(junk)
    d = _beside(tmp_path / "badpkl", metr_la, ["metr-la.h5"])
    (d / "adj_mx.pkl").write_bytes(pickle.dumps({"not": "a tuple"}))
    with pytest.raises(ValueError, match=r"expected DCRNN's \(sensor_ids"):
        load_dataset(d)
    d = _beside(tmp_path / "noadj", metr_la, ["metr-la.h5"])
    with pytest.raises(FileNotFoundError, match="adj_mx.pkl"):
        load_dataset(d)
    import scipy.sparse as sp

    sp.save_npz(d / "adj.npz", sp.eye(3, format="csr"))
    with pytest.raises(ValueError, match=r"adj.npz: adjacency is \(3, 3\), expected \(207, 207\)"):
        load_dataset(d)
    np.savez(d / "adj.npz", a=np.ones(3))
    with pytest.raises(ValueError, match="not a scipy.sparse.save_npz file"):
        load_dataset(d)


def test_metr_la_without_h5py_names_the_extra(metr_la, monkeypatch):
    real = builtins.__import__

    def no_h5py(name, *args, **kwargs):
        if name == "h5py" or name.startswith("h5py."):
            raise ImportError("No module named 'h5py'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_h5py)
    with pytest.raises(ImportError, match=r"dynst_fast\[h5\]"):
        load_dataset(metr_la)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_does_not_run(metr_la, tmp_path):
    marker = tmp_path / "pwned"
    d = _beside(tmp_path / "evil", metr_la, ["metr-la.h5"])
    (d / "adj_mx.pkl").write_bytes(pickle.dumps((["a"], {"a": 0}, _Evil(marker))))
    with pytest.raises(ValueError, match=r"refused to load (posix|os|nt)\.system"):
        load_dataset(d)
    assert not marker.exists()
    # the same pickle read plainly would have run it: the test can fail
    pickle.loads((d / "adj_mx.pkl").read_bytes())
    assert marker.exists()


def test_malicious_h5_store_does_not_run(metr_la, tmp_path):
    """pandas pickles object columns (and PyTables some attributes) into a store and
    unpickles them on read_hdf; our reader never does."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tables")
    marker = tmp_path / "pwned"
    d = _beside(tmp_path / "evilh5", metr_la, ["adj_mx.pkl"])
    df = pd.read_hdf(metr_la / "metr-la.h5").iloc[:50, :3].copy()
    df[df.columns[1]] = [_Evil(marker)] * len(df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PerformanceWarning: object column pickled
        df.to_hdf(d / "values.h5", key="df")
    with pytest.raises(ValueError, match="holds objects \\(pickles\\)"):
        load_dataset(d)
    assert not marker.exists()
    pd.read_hdf(d / "values.h5")  # pandas itself runs it: the test can fail
    assert marker.exists()


def test_h5_table_format_is_refused(metr_la, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tables")
    d = _beside(tmp_path / "table", metr_la, ["adj_mx.pkl"])
    pd.read_hdf(metr_la / "metr-la.h5").to_hdf(d / "values.h5", key="df", format="table")
    with pytest.raises(ValueError, match="'table'-format store.*fixed format"):
        load_dataset(d)


def test_plain_pickle_refuses_object_arrays(tmp_path):
    p = tmp_path / "obj.pkl"
    p.write_bytes(pickle.dumps(np.array([1, "x"], dtype=object)))
    with pytest.raises(ValueError, match="object dtype"):
        load_plain_pickle(p)


# ------------------------------------------------------------------ PyG Temporal JSON
def test_chickenpox(pyg_dir):
    ds = load_dataset(pyg_dir / "chickenpox.json")
    assert ds.num_sensors == 20 and ds.num_steps == 521 and ds.num_channels == 1
    doc = json.loads((pyg_dir / "chickenpox.json").read_text())
    assert ds.sensor_ids[doc["node_ids"]["BACS"]] == "BACS"
    np.testing.assert_array_equal(ds.values[:, :, 0], np.asarray(doc["FX"], np.float32))
    assert ds.adjacency.num_edges == len(doc["edges"])
    src, dst = doc["edges"][0]
    assert ds.adjacency.to_dense()[dst, src] == 1  # row = target


def test_montevideo_bus(pyg_dir):
    ds = load_dataset(pyg_dir / "montevideo_bus.json")
    assert ds.num_sensors == 675 and ds.num_steps == 744
    doc = json.loads((pyg_dir / "montevideo_bus.json").read_text())
    first = doc["nodes"][0]
    assert ds.sensor_ids[0] == str(first["id"])
    assert tuple(ds.coords[0]) == (first["lon"], first["lat"]) and not ds.geographic
    np.testing.assert_array_equal(ds.values[:, 0, 0], np.asarray(first["y"], np.float32))
    a = ds.adjacency.to_dense().numpy()
    assert np.allclose(a, a.T) and np.all(np.diag(a) == 1)
    pos = {s: i for i, s in enumerate(ds.sensor_ids)}
    link = doc["links"][0]
    assert a[pos[str(link["target"])], pos[str(link["source"])]] > 0  # every link kept


def test_pyg_json_wrong_layout(tmp_path):
    p = tmp_path / "other.json"
    p.write_text(json.dumps({"edges": [[0, 1]], "weights": [1.0]}))
    with pytest.raises(ValueError, match="expected a PyTorch Geometric Temporal JSON"):
        load_dataset(p)
    p.write_text(json.dumps({"edges": [[0, 5]], "node_ids": {"a": 0, "b": 1}, "FX": [[1, 2]] * 9}))
    with pytest.raises(ValueError, match="outside 0..1"):
        load_dataset(p)


# ------------------------------------------------------------------ PEMS (ASTGCN)
def _write_pems(d: Path, t: int = 400, n: int = 6, header: str = "from,to,cost") -> Path:
    d.mkdir()
    rng = np.random.default_rng(0)
    np.savez(d / "PEMS99.npz", data=rng.random((t, n, 3)).astype(np.float32))
    lines = [header] + [f"{i},{i + 1},{100.0 * (i + 1)}" for i in range(n - 1)]
    (d / "PEMS99.csv").write_text("\n".join(lines) + "\n")
    return d


def test_pems_gaussian_kernel_adjacency(tmp_path):
    d = _write_pems(tmp_path / "pems")
    ds = load_dataset(d)
    assert ds.name == "PEMS99" and ds.values.shape == (400, 6, 3)
    dist = 100.0 * np.arange(1, 6)
    w = np.exp(-((dist / dist.std()) ** 2))  # sigma = std of the distances
    a = ds.adjacency.to_dense().numpy()
    for i in range(5):
        want = w[i] if w[i] >= 0.1 else 0.0  # below the 0.1 threshold: no edge
        assert a[i, i + 1] == pytest.approx(want, rel=1e-6) and a[i + 1, i] == a[i, i + 1]
    assert np.all(np.diag(a) == 1)
    wide = load_dataset(d, options=ReadOptions(distance_sigma=1000.0, distance_threshold=0.0))
    b = wide.adjacency.to_dense().numpy()
    assert b[4, 5] == pytest.approx(np.exp(-0.25), rel=1e-6)


def test_pems_wrong_header(tmp_path):
    d = _write_pems(tmp_path / "pems", header="a,b,c")
    with pytest.raises(ValueError, match="from,to,cost"):
        load_dataset(d)


def test_distance_kernel_keeps_the_larger_weight_of_a_pair():
    g = distance_kernel(np.array([[0, 1], [1, 0]]), np.array([1.0, 3.0]), 2, sigma=2.0)
    assert g.to_dense()[0, 1] == pytest.approx(np.exp(-0.25))


# ------------------------------------------------------------------ end to end
@pytest.mark.slow
@pytest.mark.parametrize("name", ["metr_la_format", "pyg_temporal/chickenpox.json"])
def test_dynst_run_end_to_end(shared_data, tmp_path, name):
    from dynst_fast.cli import main

    out = tmp_path / "run"
    argv = ["run", "--data", str(shared_data / name), "--horizon", "3", "--epochs", "2",
            "--hidden", "8", "--time-repeats", "1", "--time-warmup", "0"]  # fmt: skip
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_sensors"] == (207 if "metr" in name else 20)
    assert m["dense"]["mae"] > 0 and np.isfinite(m["schemes"]["dynst"]["mae"])


# ------------------------------------------------------------------ PyG Temporal signals
class _Signal:
    """The attributes of PyG-Temporal's StaticGraphTemporalSignal that the import reads."""

    def __init__(self, t: int = 30, n: int = 4) -> None:
        self.edge_index = np.array([[0, 1, 2, 3], [1, 2, 3, 0]])
        self.edge_weight = np.array([1.0, 0.5, 0.25, 2.0])
        self.features = [np.zeros((n, 4)) for _ in range(t)]
        self.targets = [np.full(n, float(i)) for i in range(t)]


def test_from_pyg_temporal_signal_attributes():
    ds = from_pyg_temporal(_Signal())
    assert ds.values.shape == (30, 4, 1) and ds.values[7, 2, 0] == 7.0
    assert ds.adjacency.to_dense()[1, 0] == 1.0 and ds.adjacency.to_dense()[0, 3] == 2.0


def test_from_pyg_temporal_real_signal():
    tgt = pytest.importorskip(
        "torch_geometric_temporal.signal",
        reason="torch_geometric_temporal needs torch-sparse, which pip builds against "
        "another torch; not installed",
    )
    s = _Signal()
    sig = tgt.StaticGraphTemporalSignal(s.edge_index, s.edge_weight, s.features, s.targets)
    assert from_pyg_temporal(sig).values.shape == (30, 4, 1)


def test_graph_from_pyg_data_and_edge_lists(los_loop_dir):
    Data = pytest.importorskip("torch_geometric.data").Data

    from dynst_fast import ops
    from dynst_fast.graph import CSRGraph

    g = load_graph_dataset(los_loop_dir).adjacency
    ei = torch.stack([g.col, g.row_index()])  # PyG: row 0 = source, row 1 = target
    data = Data(edge_index=ei, edge_weight=g.weight, num_nodes=207)
    for name in ("rowptr", "col", "weight"):
        assert torch.equal(getattr(CSRGraph.from_pyg(data), name), getattr(g, name))
    x, gate = torch.randn(2, 207, 3), torch.rand(207)
    want = ops.gated_spmm(g, x, gate)
    torch.testing.assert_close(ops.gated_spmm(data, x, gate), want)
    torch.testing.assert_close(ops.gated_spmm((ei, g.weight), x, gate), want)
    idx = torch.tensor([0, 4, 9, 100])
    assert torch.equal(ops.induce_subgraph(data, idx).col, ops.induce_subgraph(g, idx).col)
    with pytest.raises(TypeError, match="edge_index, edge_weight"):
        ops.gated_spmm("not a graph", x, gate)
