"""The fixed-set schemes' sensor choices (dynst_fast.selection) and ``--mask``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dynst_fast.config import RunConfig
from dynst_fast.constraints import from_ids
from dynst_fast.data import load_dataset, make_windows
from dynst_fast.run import run
from dynst_fast.schedule import Schedule
from dynst_fast.selection import (
    GREEDY_RIDGES,
    greedy_order,
    lagged,
    qr_order,
    read_mask,
    sensor_series,
)
from dynst_fast.sparsifier import Sparsifier


def _fixed_matrix() -> torch.Tensor:
    """``[200, 30]``: 30 sensors reading mixes of 6 sources with noise (seed 0)."""
    rng = np.random.default_rng(0)
    sources = rng.standard_normal((200, 6))
    mix = rng.standard_normal((6, 30)) * rng.uniform(0.2, 2.0, 30)
    return torch.as_tensor(sources @ mix + 0.05 * rng.standard_normal((200, 30)))


# ---------------------------------------------------------------- qr
@pytest.mark.parametrize("k", [1, 4, 6])
def test_qr_picks_what_pysensors_picks(k: int) -> None:
    ps = pytest.importorskip("pysensors")
    x = _fixed_matrix()
    model = ps.SSPOR(basis=ps.basis.SVD(n_basis_modes=k), n_sensors=k).fit(x.numpy())
    assert qr_order(x, k)[:k].tolist() == model.get_selected_sensors().tolist()


def test_qr_hand_checked_case_and_kept_pivots() -> None:
    """Sensors 0 and 1 carry two independent signals, 2 and 3 weak copies of them: the
    two modes pivot on 0 and 1; with 2 kept, 0's direction is taken, so 1 comes next."""
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(500), rng.standard_normal(500)
    x = torch.as_tensor(np.stack([a, 3 * b, 0.1 * a, 0.1 * b], 1))
    assert sorted(qr_order(x, 2)[:2].tolist()) == [0, 1]
    ids = ["s0", "s1", "s2", "s3"]
    c = from_ids(ids, keep=["s2"], forbid=["s1"])
    order = qr_order(x, 2, c).tolist()
    assert order[0] == 2 and 1 not in order and order[1] == 3


# ---------------------------------------------------------------- greedy
def _brute_force_greedy(train, val, t_in, t_out, k):
    """Forward selection by refitting the ridge for every candidate (float64 numpy)."""
    x, y = (a.numpy() for a in lagged(train, t_in, t_out))
    xv, yv = (a.numpy() for a in lagged(val, t_in, t_out))
    lam = 1e-2 * float(np.diag(x.T @ x).mean()) + 1e-12
    chosen: list[int] = []
    for _ in range(k):
        best, best_err = None, np.inf
        for c in range(train.shape[1]):
            if c in chosen:
                continue
            cols = np.concatenate([np.arange(j * t_in, (j + 1) * t_in) for j in [*chosen, c]])
            xs = x[:, cols]
            w = np.linalg.solve(xs.T @ xs + lam * np.eye(len(cols)), xs.T @ y)
            err = float(((yv - xv[:, cols] @ w) ** 2).sum())
            if err < best_err:
                best, best_err = c, err
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_equals_refitting_the_ridge_for_every_candidate(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    n = 7
    base = torch.randn(160, 3, generator=g, dtype=torch.float64)
    series = base @ torch.randn(3, n, generator=g, dtype=torch.float64)
    series = series + 0.3 * torch.randn(160, n, generator=g, dtype=torch.float64)
    series = series.cumsum(0) * 0.1
    train, val = series[:110], series[110:]
    got = greedy_order(train, val, 3, 2, 5, ridge=1e-2).tolist()
    assert got == _brute_force_greedy(train, val, 3, 2, 5)


def test_greedy_chooses_its_ridge_on_validation() -> None:
    """Few windows and many lagged inputs: the ridge is the one of the grid whose fit on
    every sensor has the lowest validation error (checked by refitting with numpy)."""
    g = torch.Generator().manual_seed(0)
    series = torch.randn(60, 12, generator=g, dtype=torch.float64).cumsum(0) * 0.1
    train, val = series[:40], series[40:]
    x, y = (a.numpy() for a in lagged(train, 4, 1))
    xv, yv = (a.numpy() for a in lagged(val, 4, 1))
    scale = float(np.diag(x.T @ x).mean())

    def error(r: float) -> float:
        w = np.linalg.solve(x.T @ x + (r * scale + 1e-12) * np.eye(x.shape[1]), x.T @ y)
        return float(((yv - xv @ w) ** 2).sum())

    best = min(GREEDY_RIDGES, key=error)
    assert best != GREEDY_RIDGES[0]  # the case is one where the smallest ridge overfits
    auto = greedy_order(train, val, 4, 1, 6).tolist()
    assert auto == greedy_order(train, val, 4, 1, 6, ridge=best).tolist()


def test_greedy_picks_the_planted_drivers_first() -> None:
    ds = load_dataset(None, kind="graph", seed=0)
    splits = make_windows(ds, t_in=12, t_out=12)
    space = ds.sensor_space(4)
    k = len(space.planted)
    order = greedy_order(
        sensor_series(splits.train, space), sensor_series(splits.val, space), 12, 12, k
    )
    assert sorted(order.tolist()) == sorted(space.planted.tolist())


def test_greedy_respects_keep_and_forbid_and_refuses_huge_inputs() -> None:
    x = _fixed_matrix()
    ids = [f"s{i}" for i in range(30)]
    c = from_ids(ids, keep=["s5", "s9"], forbid=["s0", "s1", "s2"])
    order = greedy_order(x[:150], x[150:], 4, 2, 8, c).tolist()
    assert order[:2] == [5, 9] and not {0, 1, 2} & set(order) and len(set(order)) == 8
    with pytest.raises(ValueError, match="use --scheme qr"):
        greedy_order(torch.zeros(40, 2000, dtype=torch.float64), torch.zeros(40, 2000), 12, 3, 4)


# ---------------------------------------------------------------- the sparsifier takes the order
def test_fixed_set_sparsifier_takes_its_order_after_the_kept_sensors() -> None:
    sched = Schedule("qr", num_sensors=10, sparsity=0.6)
    sp = Sparsifier(sched, order=torch.tensor([7, 3, 1, 0, 2, 4, 5, 6, 8, 9]))
    assert sorted(sp.active_index().tolist()) == [0, 1, 3, 7]
    c = from_ids([str(i) for i in range(10)], keep=["9"], forbid=["7"])
    sp = Sparsifier(sched, constraints=c, order=torch.tensor([7, 3, 1, 0, 2]))
    assert sorted(sp.active_index().tolist()) == [0, 1, 3, 9]
    with pytest.raises(ValueError, match="twice"):
        Sparsifier(sched, order=torch.tensor([1, 1, 2, 3]))
    with pytest.raises(ValueError, match="outside"):
        Sparsifier(sched, order=torch.tensor([10]))
    with pytest.raises(ValueError, match="needed"):
        Sparsifier(sched, order=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="learns its set"):
        Sparsifier(Schedule("dynst", num_sensors=10, sparsity=0.6), order=torch.arange(10))


# ---------------------------------------------------------------- --mask
def _tiny(tmp_path, name, **flags):
    settings = dict(epochs=1, batch_size=64, time_repeats=1, time_warmup=0, time_batch=4)
    settings.update(flags)
    return run(RunConfig.from_flags(out=str(tmp_path / name), quiet=True, **settings))


def test_mask_round_trips_a_mask_json(tmp_path) -> None:
    first = _tiny(tmp_path, "first", scheme="random", sparsity=0.7)
    second = _tiny(tmp_path, "second", mask=str(tmp_path / "first" / "mask.json"), also=["qr"])
    a = json.loads((tmp_path / "first" / "mask.json").read_text())
    b = json.loads((tmp_path / "second" / "mask.json").read_text())
    assert b["scheme"] == "mask" and b["active"] == a["active"]
    assert second["active_sensors"] == first["active_sensors"]
    assert second["schemes"]["qr"]["num_active"] == second["num_active"]
    assert (
        second["schemes"]["mask"]["kept"]["count"] + second["schemes"]["mask"]["dropped"]["count"]
        == (second["schemes"]["mask"]["count"])
    )
    ids = tmp_path / "ids.txt"
    ids.write_text("# two sensors\n" + ",".join(first["active_sensors"][:2]) + "\n")
    third = _tiny(tmp_path, "third", mask=str(ids))
    assert third["active_sensors"] == first["active_sensors"][:2]


def test_mask_errors_name_the_problem(tmp_path) -> None:
    ds = load_dataset(None, kind="graph", seed=0)
    ids = ds.sensor_space(4).ids
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([ids[0], "no-such-sensor"]))
    with pytest.raises(ValueError, match="'no-such-sensor'"):
        read_mask(bad, ids)
    bad.write_text(json.dumps([ids[0], ids[0]]))
    with pytest.raises(ValueError, match="twice"):
        read_mask(bad, ids)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_mask(bad, ids)
    with pytest.raises(FileNotFoundError, match="--mask"):
        read_mask(tmp_path / "absent.txt", ids)
    good = tmp_path / "good.txt"
    good.write_text(f"{ids[3]}\n{ids[1]}\n")
    assert read_mask(good, ids) == [ids[3], ids[1]]
    with pytest.raises(ValueError, match="leave --sparsity out"):
        _tiny(tmp_path, "x", mask=str(good), sparsity=0.5)
    with pytest.raises(ValueError, match="leaves out kept"):
        _tiny(tmp_path, "y", mask=str(good), keep=[ids[0]])
