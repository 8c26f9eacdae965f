"""Deployment constraints (``dynst_fast.constraints``): keep, forbid, cost and budget hold
at every step of every scheme on random instances, contradictions are one clear error,
the id lists and the cost CSV are read strictly, and the sparsifier's state carries them."""

from __future__ import annotations

import functools

import pytest
import torch

from dynst_fast.constraints import Constraints, from_ids, read_costs, read_ids, within
from dynst_fast.schedule import Schedule
from dynst_fast.sparsifier import Sparsifier

SCHEMES = ("dynst", "iterative", "one-shot", "fixed", "random")


def _schedule(scheme: str, n: int, s: float) -> Schedule:
    return Schedule(
        scheme, n, s, warmup_steps=2, rounds=4, network_steps=3, mask_steps=2, swap_fraction=0.3
    )


def _random_constraints(n: int, k: int, gen: torch.Generator, budget: bool) -> Constraints:
    perm = torch.randperm(n, generator=gen)
    n_keep = int(torch.randint(0, max(k // 2, 1) + 1, (), generator=gen))
    n_forbid = int(torch.randint(0, (n - k) // 2 + 1, (), generator=gen))
    keep = torch.zeros(n, dtype=torch.bool)
    forbid = torch.zeros(n, dtype=torch.bool)
    keep[perm[:n_keep]] = True
    forbid[perm[n_keep : n_keep + n_forbid]] = True
    if not budget:
        return Constraints(keep, forbid)
    cost = torch.rand(n, generator=gen, dtype=torch.float64) * 9 + 1
    b = float(cost[keep].sum()) + float(cost[~keep & ~forbid].sum()) * 0.4 + 1.0
    return Constraints(keep, forbid, cost, b)


def _drive(sp: Sparsifier, gen: torch.Generator, on_step) -> None:
    """Run the whole schedule with random gate gradients, calling ``on_step`` after each."""
    s = sp.schedule
    total = s.rounds_end + 3
    for _ in range(total):
        g = sp.gate()
        (g * torch.randn(s.num_sensors, generator=gen)).sum().backward()
        sp.step()
        on_step(sp)


def _check_step(sp: Sparsifier, c: Constraints, budget: bool, rounds_seen: list[int]) -> None:
    assert bool(sp.active[c.keep].all()), "a kept sensor was switched off"
    assert not bool(sp.active[c.forbid].any()), "a forbidden sensor is active"
    assert sp.num_active >= 1
    if budget and (sp.done_pruning or not sp.schedule.prunes):
        assert within(sp.cost, c.budget), (sp.cost, c.budget)
    if sp.history and sp.history[-1]["step"] == sp.step_count:
        r = sp.history[-1]["round"]
        rounds_seen.append(r)
        if budget:
            assert within(sp.cost, sp.round_target(r))


@pytest.mark.parametrize("budget", [False, True], ids=["count", "budget"])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_constraints_hold_at_every_step(scheme, budget):
    for seed in range(6):
        gen = torch.Generator().manual_seed(seed)
        n = int(torch.randint(8, 60, (), generator=gen))
        sched = _schedule(scheme, n, 0.5)
        c = _random_constraints(n, sched.target_active(), gen, budget)
        sp = Sparsifier(sched, constraints=c, seed=seed)
        rounds_seen: list[int] = []
        check = functools.partial(_check_step, c=c, budget=budget, rounds_seen=rounds_seen)
        check(sp)
        _drive(sp, gen, check)
        assert rounds_seen == list(range(1, sched.num_rounds + 1))
        if not budget and sched.prunes:
            assert sp.num_active == sched.target_active()
        if budget:
            assert within(sp.cost, c.budget)
            if not sched.swaps:  # pruning stops at the fewest sensors that meet the budget
                assert sp.cost > c.budget - float(c.costs.max())


def test_without_constraints_nothing_changes():
    """Constraints that name nothing give the unconstrained sparsifier step for step."""
    for scheme in SCHEMES:
        sched = _schedule(scheme, 30, 0.5)
        a = Sparsifier(sched, seed=2)
        b = Sparsifier(sched, seed=2, constraints=Constraints.none(30))
        ga, gb = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
        _drive(a, ga, lambda sp: None)
        _drive(b, gb, lambda sp: None)
        assert torch.equal(a.active, b.active) and a.history == b.history


def test_keep_wins_over_low_theta_and_forbid_over_high_gradient():
    """The kept sensor has the lowest |theta| and the forbidden one the largest gradient:
    neither decides the selection."""
    n = 10
    sched = Schedule("dynst", n, 0.5, rounds=1, network_steps=0, mask_steps=1, swap_fraction=0.4)
    keep = torch.zeros(n, dtype=torch.bool)
    keep[0] = True
    forbid = torch.zeros(n, dtype=torch.bool)
    forbid[9] = True
    sp = Sparsifier(sched, constraints=Constraints(keep, forbid), l1=0.0)
    assert not sp.active[9]
    with torch.no_grad():
        sp.theta.copy_(torch.arange(n, dtype=torch.float32) + 1)
        sp.theta[0] = 1e-6
    g = sp.gate()
    (g * torch.tensor([0.0] * 9 + [100.0])).sum().backward()
    sp.step()
    assert sp.active[0] and not sp.active[9] and sp.num_active == 5


def test_budget_prunes_lowest_theta_per_cost():
    """Two sensors of equal theta: the expensive one goes first; a cheap sensor of lower
    theta outlives an expensive one of higher theta when its ratio is higher."""
    n = 4
    sched = Schedule("one-shot", n, 0.5, rounds=1, network_steps=1, mask_steps=0)
    cost = torch.tensor([1.0, 4.0, 1.0, 10.0], dtype=torch.float64)
    z = torch.zeros(n, dtype=torch.bool)
    sp = Sparsifier(sched, constraints=Constraints(z, z.clone(), cost, 6.0))
    with torch.no_grad():
        sp.theta.copy_(torch.tensor([1.0, 1.0, 0.5, 3.0]))  # ratios 1, 0.25, 0.5, 0.3
    g = sp.gate()
    g.sum().backward()
    sp.step()
    # prune by ratio: 1 (0.25, cost 16 -> 12), 3 (0.3, -> 2): the fewest that fit 6
    assert sp.active.tolist() == [True, False, True, False]
    assert sp.cost == 2.0 and sp.history[-1]["cost"] == 2.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"keep": ["a", "b"], "forbid": ["b"]}, "both name sensor.*b"),
        ({"keep": ["a", "b", "c"]}, "--keep names 3 sensors but the sparsity leaves K = 2"),
        ({"forbid": ["a", "b", "c"]}, "--forbid leaves 1 usable sensors but .* K = 2"),
        ({"forbid": ["a", "b", "c", "d"]}, "--forbid names every sensor"),
        ({"keep": ["zz"]}, "--keep: unknown sensor id.*zz"),
        ({"forbid": ["q"]}, "--forbid: unknown sensor id.*q"),
    ],
)
def test_contradictions_are_one_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        c = from_ids(["a", "b", "c", "d"], **kwargs)
        Sparsifier(Schedule("dynst", 4, 0.5, rounds=1), constraints=c)


@pytest.mark.parametrize(
    ("keep", "budget", "match"),
    [
        (["a", "b"], 4.0, "the 2 kept sensors cost 5, over --budget 4"),
        ([], 0.5, "--budget 0.5 is below the cheapest usable sensor's cost 1"),
    ],
)
def test_budget_contradictions(keep, budget, match):
    c = from_ids(["a", "b", "c"], keep=keep, cost={"a": 2, "b": 3, "c": 1}, budget=budget)
    with pytest.raises(ValueError, match=match):
        Sparsifier(Schedule("dynst", 3, 0.3, rounds=1), constraints=c)


def test_bad_costs_and_budgets():
    ids = ["a", "b"]
    with pytest.raises(ValueError, match="no cost for 1 sensor"):
        from_ids(ids, cost={"a": 1.0}, budget=2.0)
    with pytest.raises(ValueError, match="--cost: unknown sensor"):
        from_ids(ids, cost={"a": 1.0, "b": 1.0, "x": 1.0}, budget=2.0)
    with pytest.raises(ValueError, match="positive finite"):
        from_ids(ids, cost={"a": 1.0, "b": -1.0}, budget=2.0)
    with pytest.raises(ValueError, match="--budget must be a positive"):
        from_ids(ids, budget=float("nan"))
    with pytest.raises(ValueError, match="--cost needs --budget"):
        from_ids(ids, cost={"a": 1.0, "b": 1.0})


def test_read_ids_and_costs(tmp_path):
    f = tmp_path / "keep.txt"
    f.write_text("\ufeff# kept for safety\n773869, 767541\n\n717447  # the bridge\n")
    assert read_ids(f, "--keep-file") == ["773869", "767541", "717447"]
    with pytest.raises(FileNotFoundError, match="--keep-file: no file"):
        read_ids(tmp_path / "nope.txt", "--keep-file")
    csv = tmp_path / "cost.csv"
    csv.write_text("sensor_id,cost\na,1.5\nb,2\n\n")
    assert read_costs(csv) == {"a": 1.5, "b": 2.0}
    for text, match in [
        ("a,1\na,2\n", "listed twice"),
        ("a,1\nb,x\n", "line 2: cost 'x' is not a number"),
        ("a,0\n", "cost must be positive"),
        ("a,1,2\n", "expected sensor_id,cost"),
        ("sensor_id,cost\n", "no sensor_id,cost rows"),
    ]:
        csv.write_text(text)
        with pytest.raises(ValueError, match=match):
            read_costs(csv)


def test_state_dict_round_trip_keeps_constraints():
    n = 12
    sched = _schedule("dynst", n, 0.5)
    gen = torch.Generator().manual_seed(1)
    c = _random_constraints(n, sched.target_active(), gen, budget=True)
    sp = Sparsifier(sched, constraints=c)
    _drive(sp, gen, lambda s: None)
    again = Sparsifier.from_state_dict(sp.state_dict())
    assert again.constraints == c and torch.equal(again.active, sp.active)
    with pytest.raises(ValueError, match="saved constraints"):
        Sparsifier(sched).load_state_dict(sp.state_dict())


# --------------------------------------------------------------------------- dynst run
def _tiny(out, **flags):
    from dynst_fast.config import RunConfig

    return RunConfig.from_flags(
        epochs=2, horizon=3, batch_size=64, hidden=8, time_batch=4, time_repeats=1,
        time_warmup=0, quiet=True, out=str(out), also=["random"], **flags,
    )  # fmt: skip


def test_run_with_keep_forbid_and_budget(tmp_path):
    """``dynst run --keep --forbid --cost --budget``: every scheme's active set respects
    them, mask.json and metrics.json record them, and the forbidden sensor is no switch-on
    candidate."""
    import json

    from dynst_fast.artifacts import load_run
    from dynst_fast.run import run

    costs = tmp_path / "cost.csv"
    costs.write_text("sensor_id,cost\n" + "".join(f"s{i:03d},{1 + i % 3}\n" for i in range(80)))
    keep = tmp_path / "keep.txt"
    keep.write_text("# must stay\ns003\n")
    out = tmp_path / "run"
    m = run(_tiny(out, keep=["s000"], keep_file=str(keep), forbid=["s001", "s002"],
                  cost=str(costs), budget=40.0))  # fmt: skip
    mask = json.loads((out / "mask.json").read_text())
    active = dict(zip(mask["sensor_ids"], mask["active"], strict=True))
    assert active["s000"] and active["s003"] and not active["s001"] and not active["s002"]
    c = mask["constraints"]
    assert c["keep"] == ["s000", "s003"] and c["forbid"] == ["s001", "s002"]
    cost = sum(1 + int(s[1:]) % 3 for s, a in active.items() if a)
    assert cost <= 40 and c["cost"] == cost and m["constraints"]["cost"] == cost
    assert c["budget"] == 40.0 and cost > 40 - 3  # pruned to the budget, not far below
    ranked = {mask["sensor_ids"][i] for i in mask["switch_on_ranking"]}
    assert ranked and not {"s001", "s002"} & ranked
    assert (
        "Constraints: sensors kept on 2 (s000, s003); forbidden 2 (s001, s002); budget 40"
        in (out / "report.md").read_text()
    )
    saved = Sparsifier.from_state_dict(load_run(out).checkpoint["sparsifier"])
    assert saved.constraints.budget == 40.0 and bool(saved.constraints.keep[[0, 3]].all())
    rnd = m["schemes"]["random"]
    assert rnd["num_active"] >= 2


def test_run_contradiction_is_refused_before_training(tmp_path):
    from dynst_fast.run import run

    with pytest.raises(ValueError, match="--keep and --forbid both name sensor.*s005"):
        run(_tiny(tmp_path / "r", sparsity=0.5, keep=["s005"], forbid=["s005"]))
    with pytest.raises(ValueError, match="--budget replaces --sparsity"):
        run(_tiny(tmp_path / "r", sparsity=0.5, budget=3.0))
    assert not (tmp_path / "r").exists()


def test_a_budget_swap_never_empties_the_active_set():
    """One sensor left and no candidate that fits the budget: the swap keeps it."""
    sched = Schedule("fixed", 3, 0.6, rounds=2, network_steps=1, mask_steps=1, swap_fraction=0.5)
    cost = torch.tensor([1.0, 5.0, 5.0], dtype=torch.float64)
    z = torch.zeros(3, dtype=torch.bool)
    sp = Sparsifier(sched, constraints=Constraints(z, z.clone(), cost, 1.5), seed=0)
    assert sp.active.tolist() == [True, False, False]
    _drive(sp, torch.Generator().manual_seed(0), lambda s: None)
    assert sp.active.tolist() == [True, False, False]
    assert all(h["dropped"] == [] and h["regrown"] == [] for h in sp.history)
