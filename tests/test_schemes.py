"""Schemes as objects (``dynst_fast.schemes``) and the run plan (``dynst_fast.plan``): a
scheme's facts live in one registry entry, a data-chosen set can never be started from a
random draw, and every study trains the set its scheme names (the qr bug of
``bench/_runs.py``, which trained a seeded random set under qr's name)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dynst_fast.config import RunConfig
from dynst_fast.plan import resolve
from dynst_fast.schedule import Schedule, active_count
from dynst_fast.schemes import SCHEMES, OrderMemo, Scheme, register_scheme, scheme
from dynst_fast.selection import qr_order, sensor_series
from dynst_fast.sparsifier import Sparsifier
from dynst_fast.stages import Stages

ROOT = Path(__file__).resolve().parents[1]


def test_every_scheme_states_its_facts_once():
    assert list(SCHEMES)[:2] == ["dynst", "iterative"] and "dense" in SCHEMES
    assert scheme("dynst").prunes and scheme("dynst").swaps
    assert scheme("one-shot").num_rounds(10) == 1 and scheme("iterative").num_rounds(10) == 10
    assert scheme("random").num_rounds(10) == 0 and scheme("random").fixed_set
    assert {n for n, s in SCHEMES.items() if s.needs_order} == {"qr", "greedy", "mask"}
    assert {n for n, s in SCHEMES.items() if not s.takes_budget} == {"qr", "greedy", "mask",
                                                                     "dense"}  # fmt: skip
    s = Schedule("fixed", 10, 0.5, rounds=3)
    assert s.scheme is scheme("fixed") and s.to_dict()["scheme"] == "fixed"
    assert Schedule(**s.to_dict()) == s  # a state dict's schedule rebuilds the same one
    with pytest.raises(ValueError, match="unknown scheme 'rigl'"):
        scheme("rigl")
    with pytest.raises(ValueError, match="exists"):
        register_scheme(Scheme("dynst", "again"))
    with pytest.raises(ValueError, match="only a fixed set has an order"):
        register_scheme(Scheme("odd", "x", prunes=True, needs_order=True))


def test_a_data_chosen_set_never_starts_from_a_random_draw():
    sched = Schedule("qr", num_sensors=10, sparsity=0.6)
    with pytest.raises(ValueError, match="qr scheme starts from an order chosen from the data"):
        Sparsifier(sched)
    sp = Sparsifier(sched, order=torch.arange(9, -1, -1))
    assert sp.active_index().tolist() == [6, 7, 8, 9]
    again = Sparsifier.from_state_dict(sp.state_dict())  # restoring needs no order
    assert torch.equal(again.active, sp.active)


def test_k_is_counted_in_one_place():
    assert active_count(207, 0.5) == 207 - round(0.5 * 207) == 103
    assert Schedule("dynst", 207, 0.5).target_active() == active_count(207, 0.5)


@pytest.fixture(scope="module")
def tiny_plan():
    cfg = RunConfig.from_flags(data="synthetic:30:300", t_in=6, horizon=2, epochs=2,
                               rounds=1, hidden=8, sparsity=0.5, quiet=True)  # fmt: skip
    return resolve(cfg)


def test_the_plan_resolves_everything_once(tiny_plan):
    p = tiny_plan
    assert p.k == 15 and p.sparsity == 0.5 and p.config.model.name == "stgcn"
    assert list(p.stages) == ["dynst"] and p.main.scheme is scheme("dynst")
    assert p.dense.scheme.dense and p.dense.schedule.sparsity == 0.0
    assert p.main.schedule.target_active() == p.k
    with pytest.raises(AttributeError):
        p.k = 3  # frozen


def test_a_plan_stage_trains_the_qr_set(tiny_plan):
    """The run plan hands the qr scheme its order: the trained set is the QR pivots', not
    the seeded random set that ``random`` trains."""
    import dataclasses

    cfg = tiny_plan.config
    both = dataclasses.replace(cfg, schedule=dataclasses.replace(cfg.schedule, scheme="qr",
                                                                  also=["random"]))  # fmt: skip
    p = resolve(both, dataset=tiny_plan.dataset, memo=OrderMemo())
    stages = Stages(p, checkpoint=False)
    dense = stages.dense()
    qr = stages.sparse(p.stages["qr"], dense).fit.sparsifier.active_index()
    rnd = stages.sparse(p.stages["random"], dense).fit.sparsifier.active_index()
    want = qr_order(sensor_series(p.splits.train, p.space), p.k)[: p.k].sort().values
    assert torch.equal(qr, want)
    assert not torch.equal(qr, rnd)


@pytest.mark.slow
def test_accuracy_study_trains_the_qr_set(tmp_path):
    """``bench/studies/accuracy_graph.py --schemes qr random`` records the set it trained
    under each name: qr's is the QR pivots' (before the plan, it was random's)."""
    out = tmp_path / "acc"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "bench.studies.accuracy_graph", "--data", "synthetic:30:300",
         "--t-in", "6", "--horizon", "2", "--sparsities", "0.5", "--schemes", "qr", "random",
         "--seeds", "0", "--epochs", "3", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    qr, rnd = rows["qr 0.5"]["active"][0], rows["random 0.5"]["active"][0]
    cfg = RunConfig.from_flags(data="synthetic:30:300", t_in=6, horizon=2, epochs=3,
                               quiet=True)  # fmt: skip
    p = resolve(cfg)
    want = qr_order(sensor_series(p.splits.train, p.space), len(qr))[: len(qr)]
    assert qr == sorted(want.tolist()) and qr != rnd


def test_the_qr_order_is_seeded(tiny_plan):
    """PySensors' randomized SVD is seeded: numpy's global RNG (which no run seeds) no
    longer decides the qr scheme's set."""
    import numpy as np

    series = sensor_series(tiny_plan.splits.train, tiny_plan.space)
    first = qr_order(series, 10)
    np.random.rand(100)
    assert torch.equal(first, qr_order(series, 10))
