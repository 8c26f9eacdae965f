"""The DynST sparsifier: theta, the active set, and the schedule, in a few lines of a loop.

Usage (modelled on ``torch.ao.pruning`` and rigl-torch: an object with ``step()``
and a ``state_dict``)::

    sparsifier = Sparsifier(Schedule("dynst", num_sensors=N, sparsity=0.5, ...))
    opt = torch.optim.Adam(model.parameters())        # theta is NOT in here
    for x, y in loader:
        gate = sparsifier.gate()                      # [N] = theta * active
        loss = loss_fn(model(x, gate), y)
        opt.zero_grad()
        loss.backward()
        if sparsifier.trains_network:
            opt.step()
        sparsifier.step()   # theta step in mask phases, prune / swap at round ends

``step()`` reads ``dL/dg`` for every sensor (active or not; the backbone is in gated
form, so an inactive sensor's gradient is the first-order gain of switching it on),
keeps the running mean of ``|dL/dg|`` since the last swap (Eqs. 5-6), trains theta
in mask phases (Eq. 3), prunes the lowest ``|theta|`` at round ends (Eq. 4) and swaps
(Eq. 7).

``Constraints`` (``dynst_fast.constraints``) restrict all of it: kept sensors are never
pruned or dropped, forbidden ones never active (the selection ops' ``movable`` mask), and
with a budget each round prunes the lowest ``|theta|`` per unit cost until its cost target
(the budget reached in equal steps) is met, and a swap regrows only what fits.

Under ``torch.distributed`` (an initialised process group of several ranks) ``step()``
averages the gate gradient over the ranks before it uses it (unless ``average_ranks`` is
False), as the ranks' network
gradients are averaged, so that theta, every prune and every swap agree on every rank.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

from . import distributed, ops
from .config import ScheduleConfig
from .constraints import Constraints, within
from .schedule import Schedule


class Sparsifier:
    """Learns which of N sensors to keep. Runs on CPU tensors of size N; cheap per step.

    Args:
        schedule: the :class:`Schedule` (scheme, N, target sparsity, step counts).
        theta_lr: Adam learning rate of theta in mask phases.
        l1: L1 pull on theta in mask phases, so that unneeded sensors' scores shrink.
        seed: seeds the random initial set of ``fixed`` / ``random``.
        device: where theta and the gate live (the model's device).
        constraints: keep / forbid / cost + budget (:class:`Constraints`), or None. With a
            budget, the schedule's sparsity only sizes the swaps; the cost decides the rest.
        average_ranks: under ``torch.distributed`` (a default process group of several
            ranks), average the gate gradient over the ranks; False for sparsifiers that
            train independently on each rank.
        order: the fixed-set schemes' order of the sensors (``[N']`` int64, the scheme's
            ``Scheme.order``): after the kept sensors, movable ones are taken in this
            order. Default: a permutation seeded by ``seed``; a scheme whose set comes
            from the data (``Scheme.needs_order``: qr, greedy, mask) refuses to start
            without it, rather than train a random set under its name.
        prune_by: ``"theta"`` prunes the lowest ``|theta|`` (Eq. 4); ``"taylor"`` the lowest
            ``|theta| * mean |dL/dg|`` since the last swap, the first-order change of the
            loss when a sensor's gate goes to 0.
    """

    def __init__(
        self,
        schedule: Schedule,
        *,
        theta_lr: float = ScheduleConfig.theta_lr,
        l1: float = ScheduleConfig.l1,
        seed: int = 0,
        device: torch.device | str = "cpu",
        constraints: Constraints | None = None,
        average_ranks: bool = True,
        order: Tensor | None = None,
        prune_by: str = "theta",
    ) -> None:
        if prune_by not in ("theta", "taylor"):
            raise ValueError(f"Sparsifier: prune_by must be theta or taylor, got {prune_by!r}")
        self.prune_by = prune_by
        self.schedule = schedule
        self.average_ranks = average_ranks
        self.theta_lr, self.l1, self.seed = theta_lr, l1, seed
        n = schedule.num_sensors
        c = Constraints.none(n) if constraints is None else constraints
        if c.num_sensors != n:
            raise ValueError(f"Sparsifier: constraints for {c.num_sensors} sensors, not {n}")
        c.check(None if c.budget is not None else schedule.target_active())
        self.constraints = c
        self.theta = torch.ones(n, device=device, requires_grad=True)
        self.active = self._initial_set(order).to(device)
        self._start_count, self._start_cost = self.num_active, c.cost_of(self.active)
        self.grad_sum = torch.zeros(n, dtype=torch.float64, device=device)
        self.grad_steps = 0
        # mean |dL/dg| over the latest mask phase: the switch-on gain of inactive sensors
        self.mask_grad_sum = torch.zeros(n, dtype=torch.float64, device=device)
        self.mask_grad_signed = torch.zeros(n, dtype=torch.float64, device=device)
        self.mask_grad_steps = 0
        self.mask_round = 0
        self.step_count = 0
        self.history: list[dict[str, Any]] = []
        self._optimizer = torch.optim.Adam([self.theta], lr=theta_lr)
        self._gate: Tensor | None = None

    def _initial_set(self, order: Tensor | None) -> Tensor:
        """``[N]`` bool at step 0: every allowed sensor for pruning schemes; for the
        fixed-set ones the kept ones and then movable ones in ``order`` (default: seeded
        random), up to K* (or, with a budget, each that still fits)."""
        s, c, n = self.schedule, self.constraints, self.schedule.num_sensors
        if not s.scheme.fixed_set:
            if order is not None:
                raise ValueError(f"Sparsifier: the {s.scheme.name} scheme learns its set; no order")
            return ~c.forbid
        if order is None:
            if s.scheme.needs_order:
                raise ValueError(
                    f"Sparsifier: the {s.scheme.name} scheme starts from an order chosen from "
                    "the data: pass order=scheme.order(...) (a run plan's stage does)"
                )
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        order = torch.as_tensor(order, dtype=torch.int64).cpu().reshape(-1)
        if order.numel() and (int(order.min()) < 0 or int(order.max()) >= n):
            raise ValueError(f"Sparsifier: order holds indices outside [0, {n})")
        if order.unique().numel() != order.numel():
            raise ValueError("Sparsifier: order names a sensor twice")
        active = c.keep.clone()
        pool = order[c.movable[order]]
        if c.budget is None:
            want = s.initial_active() - int(c.keep.sum())
            if pool.numel() < want:
                raise ValueError(
                    f"Sparsifier: the order gives {pool.numel()} movable sensors; {want} needed"
                )
            active[pool[:want]] = True
            return active
        costs, total = c.costs, c.cost_of(c.keep)
        for i in pool.tolist():
            if within(total + float(costs[i]), c.budget):
                active[i] = True
                total += float(costs[i])
        return active

    # ------------------------------------------------------------------ queries
    @property
    def num_sensors(self) -> int:
        return self.schedule.num_sensors

    @property
    def phase(self) -> str:
        return self.schedule.phase(self.step_count)[0]

    @property
    def round(self) -> int:
        return self.schedule.phase(self.step_count)[1]

    @property
    def trains_network(self) -> bool:
        """False only in mask phases, where the network is frozen (Eq. 3)."""
        return self.phase != "mask"

    @property
    def num_active(self) -> int:
        return int(self.active.sum())

    @property
    def sparsity(self) -> float:
        return 1.0 - self.num_active / self.num_sensors

    @property
    def cost(self) -> float:
        """Total cost of the active set (its count without a cost table)."""
        return self.constraints.cost_of(self.active)

    def round_target(self, r: int) -> float:
        """The active count (or, with a budget, the cost) round r prunes to: from the
        start's down to K* (or the budget) in equal steps; r = 0 is the start."""
        s, c = self.schedule, self.constraints
        p = max(s.num_rounds, 1)
        frac = min(max(r, 0), p) / p
        if c.budget is not None:
            return (
                c.budget if frac == 1 else self._start_cost - (self._start_cost - c.budget) * frac
            )
        if not s.prunes:
            return self._start_count
        return self._start_count - int(round((self._start_count - s.target_active()) * frac))

    @property
    def done_pruning(self) -> bool:
        """True once the active set is final (fine-tuning, or a scheme without rounds)."""
        return self.phase == "finetune" or self.schedule.scheme.dense

    def active_index(self) -> Tensor:
        """Sorted int64 indices of the active sensors, ``[K]``."""
        return torch.nonzero(self.active).reshape(-1)

    def gate(self) -> Tensor:
        """``theta * active`` ([N]), tracked so that ``step()`` can read ``dL/dg``.

        For ``dense`` and ``random`` theta is not learned and the gate is the plain
        0/1 indicator.
        """
        a = self.active.to(self.theta.dtype)
        if not self.schedule.trains_theta:
            g = a.clone().requires_grad_(True)
        else:
            g = self.theta * a
            if g.requires_grad:  # not under torch.no_grad()
                g.retain_grad()
        self._gate = g
        return g

    # ------------------------------------------------------------------ updates
    def step(self) -> None:
        """Advance one optimizer step: accumulate gate gradients, train theta, prune, swap."""
        g = self._gate
        if self.done_pruning and (g is None or g.grad is None):
            # The active set is final: a loop may train the compacted model without a gate.
            self._gate = None
            self.step_count += 1
            return
        if g is None:
            raise RuntimeError("Sparsifier.step(): call gate() and backward() before step()")
        if g.grad is None:
            raise RuntimeError(
                "Sparsifier.step(): the gate has no gradient; pass the tensor returned by "
                "gate() to the model and call loss.backward() before step()"
            )
        grad = g.grad.detach()
        if self.average_ranks:  # the same decisions on every rank
            grad = distributed.all_reduce_mean(grad)
        if not bool(torch.isfinite(grad).all()):
            raise FloatingPointError("Sparsifier.step(): the gate gradient is not finite")
        self.grad_sum += grad.abs().to(torch.float64)
        self.grad_steps += 1
        if self.phase == "mask":
            if self.round != self.mask_round:  # a new mask phase: forget the last one
                self.mask_grad_sum.zero_()
                self.mask_grad_signed.zero_()
                self.mask_grad_steps, self.mask_round = 0, self.round
            self.mask_grad_sum += grad.abs().to(torch.float64)
            self.mask_grad_signed += grad.to(torch.float64)
            self.mask_grad_steps += 1
            with torch.no_grad():
                self.theta.grad = grad * self.active + self.l1 * torch.sign(self.theta)
            self._optimizer.step()
        self.theta.grad = None
        self._gate = None
        self.step_count += 1
        r = self.schedule.round_ending_at(self.step_count)
        if r:
            self._end_round(r)

    def _end_round(self, r: int) -> None:
        """Prune to the round's target (Eq. 4), then swap (Eqs. 5-7), within the constraints."""
        record: dict[str, Any] = {"step": self.step_count, "round": r}
        c, movable = self.constraints, self._movable()
        if self.schedule.prunes:
            before = self.num_active
            if c.budget is not None:
                self._prune_to_cost(self.round_target(r))
            else:
                k_prune = self.num_active - int(self.round_target(r))
                if k_prune > 0:
                    self.active = ops.prune_lowest(
                        self.prune_score(), self.active, k_prune, movable
                    )
            if self.num_active < before:
                record["pruned"] = before - self.num_active
        k_swap = self.schedule.swap_count(self.num_active)
        if movable is not None:
            free = self.active & movable
            k_swap = min(k_swap, int(free.sum()), int((~self.active & movable).sum()))
        if k_swap > 0:
            drop, grow = self.swap(k_swap, cap=self.round_target(r))
            record["dropped"], record["regrown"] = drop.tolist(), grow.tolist()
        record["active"] = self.num_active
        if c.budget is not None:
            record["cost"] = self.cost
        self.history.append(record)

    def _movable(self) -> Tensor | None:
        """The selection ops' movable mask, or None when keep / forbid name no sensor."""
        return (
            self.constraints.movable.to(self.active.device) if self.constraints.restricts else None
        )

    def _prune_to_cost(self, target: float) -> None:
        """Prune the fewest sensors, lowest ``|theta|`` per unit cost first, that bring the
        active set's cost to ``target`` or below (a binary search over k: the op's picks
        for k are a prefix of its picks for k + 1)."""
        c = self.constraints
        if within(self.cost, target):
            return
        costs = c.costs.to(self.active.device)
        score = self.prune_score().abs().to(torch.float64) / costs
        movable = c.movable.to(self.active.device)
        lo, hi = 1, int((self.active & movable).sum())
        while lo < hi:
            mid = (lo + hi) // 2
            if within(c.cost_of(ops.prune_lowest(score, self.active, mid, movable)), target):
                hi = mid
            else:
                lo = mid + 1
        self.active = ops.prune_lowest(score, self.active, lo, movable)

    def prune_score(self) -> Tensor:
        """``[N]``: what a round end prunes the lowest of (``prune_by``)."""
        theta = self.theta.detach()
        if self.prune_by == "theta":
            return theta
        return theta.abs() * self.mean_gate_grad().to(theta.dtype)

    def switch_on_gain(self, signed: bool = False) -> Tensor | None:
        """Mean ``|dL/dg|`` per sensor over the latest mask phase, ``[N]`` float64: for a
        switched-off sensor, the first-order gain in the loss per unit of gate of
        switching it back on (the paper's drop/regrow signal). ``signed``: the mean of
        ``-dL/dg`` instead (positive where a larger gate lowers the loss; batch noise
        cancels in it). None before any mask phase (and for schemes without one)."""
        if self.mask_grad_steps == 0:
            return None
        total = -self.mask_grad_signed if signed else self.mask_grad_sum
        return total / self.mask_grad_steps

    def mean_gate_grad(self) -> Tensor:
        """Mean ``|dL/dg|`` per sensor since the last swap, ``[N]`` float64."""
        return self.grad_sum / max(self.grad_steps, 1)

    def swap(self, k: int, cap: float | None = None) -> tuple[Tensor, Tensor]:
        """Drop the k active sensors of lowest mean ``|dL/dg|``, regrow the k inactive of highest
        (movable ones only). With a budget, a regrown sensor must fit under ``cap`` (default
        the budget): the candidates are taken in order, each if it fits.

        Regrown sensors start at the mean ``|theta|`` of the active ones. Resets the
        gradient average. Returns ``(dropped, regrown)`` indices.
        """
        score = self.mean_gate_grad()
        drop, grow = ops.select_swap(score, self.active, k, self._movable())
        c = self.constraints
        if c.budget is not None:
            cap = c.budget if cap is None else cap
            costs = c.costs
            total = self.cost - float(costs[drop.cpu()].sum())
            fits = []
            for i in grow.tolist():
                if within(total + float(costs[i]), cap):
                    fits.append(i)
                    total += float(costs[i])
            grow = torch.tensor(fits, dtype=torch.int64, device=grow.device)
            if self.num_active - drop.numel() + grow.numel() < 1:  # nothing fits: keep one
                drop = drop[: self.num_active - 1]
        with torch.no_grad():
            keep_theta = self.theta[self.active].abs().mean()
            self.active[drop] = False
            self.active[grow] = True
            self.theta[grow] = keep_theta
        self.grad_sum.zero_()
        self.grad_steps = 0
        return drop, grow

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """A snapshot: nothing in it changes when training goes on (theta's Adam moments
        included), so ``load_state_dict`` of it later restores exactly this step."""
        return copy.deepcopy(
            {
                "schedule": self.schedule.to_dict(),
                "theta": self.theta.detach().clone(),
                "active": self.active.clone(),
                "grad_sum": self.grad_sum.clone(),
                "grad_steps": self.grad_steps,
                "mask_grad_sum": self.mask_grad_sum,
                "mask_grad_signed": self.mask_grad_signed,
                "mask_grad_steps": self.mask_grad_steps,
                "mask_round": self.mask_round,
                "step_count": self.step_count,
                "history": list(self.history),
                "optimizer": self._optimizer.state_dict(),
                "hparams": {
                    "theta_lr": self.theta_lr,
                    "l1": self.l1,
                    "seed": self.seed,
                    "prune_by": self.prune_by,
                },
                "constraints": self.constraints.to_dict(),
                "start": [self._start_count, self._start_cost],
            }
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["schedule"] != self.schedule.to_dict():
            raise ValueError(
                "Sparsifier.load_state_dict: the saved schedule differs from this one: "
                f"{state['schedule']} vs {self.schedule.to_dict()}"
            )
        saved = state.get("constraints")
        if saved is not None and Constraints.from_dict(saved, self.num_sensors) != self.constraints:
            raise ValueError(
                "Sparsifier.load_state_dict: the saved constraints (keep / forbid / cost / "
                "budget) differ from this sparsifier's"
            )
        with torch.no_grad():
            self.theta.copy_(state["theta"])
        self.active = state["active"].to(self.active.device).clone()
        state = copy.deepcopy(state)  # the optimizer keeps references to what it loads
        self.grad_sum = state["grad_sum"].to(self.grad_sum.device).clone()
        self.grad_steps = int(state["grad_steps"])
        if "mask_grad_sum" in state:  # absent in states written before switch-on gains
            self.mask_grad_sum = state["mask_grad_sum"].to(self.grad_sum.device).clone()
            self.mask_grad_signed = state["mask_grad_signed"].to(self.grad_sum.device).clone()
            self.mask_grad_steps = int(state["mask_grad_steps"])
            self.mask_round = int(state["mask_round"])
        self.step_count = int(state["step_count"])
        self.history = list(state["history"])
        self._optimizer.load_state_dict(state["optimizer"])
        hp = state.get("hparams", {})
        self.theta_lr = hp.get("theta_lr", self.theta_lr)
        self.l1, self.seed = hp.get("l1", self.l1), hp.get("seed", self.seed)
        self.prune_by = hp.get("prune_by", self.prune_by)
        if "start" in state:
            self._start_count, self._start_cost = int(state["start"][0]), float(state["start"][1])
        self._gate = None

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: str = "cpu") -> Sparsifier:
        hp = state.get("hparams", {})
        sched = Schedule(**state["schedule"])
        saved = state.get("constraints")
        c = None if saved is None else Constraints.from_dict(saved, sched.num_sensors)
        order = None
        if sched.scheme.needs_order:  # the saved set replaces the starting one below
            active = torch.as_tensor(state["active"], dtype=torch.bool).cpu()
            order = torch.cat([torch.nonzero(active), torch.nonzero(~active)]).reshape(-1)
        sp = cls(sched, device=device, constraints=c, order=order, **hp)
        sp.load_state_dict(state)
        return sp

    def __repr__(self) -> str:
        s = self.schedule
        return (
            f"Sparsifier(scheme={s.scheme.name!r}, N={s.num_sensors}, target={s.sparsity}, "
            f"step={self.step_count}, phase={self.phase!r}, active={self.num_active})"
        )
