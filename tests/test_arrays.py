"""``dynst_fast.data.arrays``: values files are memory-mapped where the file allows it
(``.npy``, an uncompressed ``.npz``), read otherwise, equal either way, never unpickled."""

from __future__ import annotations

import numpy as np
import pytest

from dynst_fast.data import load_dataset
from dynst_fast.data.arrays import load_npy, load_npz_member


@pytest.fixture
def values() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(50, 7, 2)).astype(np.float32)


def _graph_dir(tmp_path, name: str, save):
    d = tmp_path / name
    d.mkdir()
    save(d)
    np.save(d / "adj.npy", np.eye(7, dtype=np.float32) + np.eye(7, k=1, dtype=np.float32))
    return d


def test_npy_is_mapped(tmp_path, values):
    np.save(tmp_path / "v.npy", values)
    arr = load_npy(tmp_path / "v.npy")
    assert isinstance(arr, np.memmap) and np.array_equal(arr, values)


@pytest.mark.parametrize("fortran", [False, True])
def test_stored_npz_member_is_mapped(tmp_path, values, fortran):
    v = np.asfortranarray(values) if fortran else values
    np.savez(tmp_path / "v.npz", values=v, other=np.arange(3))
    arr = load_npz_member(tmp_path / "v.npz", "values")
    assert isinstance(arr, np.memmap) and np.array_equal(arr, values)
    assert np.array_equal(load_npz_member(tmp_path / "v.npz", "other"), np.arange(3))


def test_compressed_npz_member_is_read(tmp_path, values):
    np.savez_compressed(tmp_path / "v.npz", values=values)
    arr = load_npz_member(tmp_path / "v.npz", "values")
    assert not isinstance(arr, np.memmap) and np.array_equal(arr, values)


def test_object_member_is_refused_unmapped(tmp_path):
    np.savez(tmp_path / "v.npz", values=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="Python objects"):
        load_npz_member(tmp_path / "v.npz", "values")


@pytest.mark.parametrize("how", ["npy", "npz", "npz_compressed"])
def test_graph_data_keeps_a_float32_map(tmp_path, values, how):
    save = {
        "npy": lambda d: np.save(d / "values.npy", values),
        "npz": lambda d: np.savez(d / "values.npz", values=values),
        "npz_compressed": lambda d: np.savez_compressed(d / "values.npz", values=values),
    }[how]
    ds = load_dataset(_graph_dir(tmp_path, how, save))
    assert np.array_equal(ds.values, values)
    assert _mapped(ds.values) == (how != "npz_compressed")  # a view of the map, not a copy


def _mapped(a: np.ndarray) -> bool:
    while a is not None:
        if isinstance(a, np.memmap):
            return True
        a = a.base if isinstance(a, np.ndarray) else None
    return False
