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
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

from . import ops
from .config import ScheduleConfig
from .schedule import Schedule


class Sparsifier:
    """Learns which of N sensors to keep. Runs on CPU tensors of size N; cheap per step.

    Args:
        schedule: the :class:`Schedule` (scheme, N, target sparsity, step counts).
        theta_lr: Adam learning rate of theta in mask phases.
        l1: L1 pull on theta in mask phases, so that unneeded sensors' scores shrink.
        seed: seeds the random initial set of ``fixed`` / ``random``.
        device: where theta and the gate live (the model's device).
    """

    def __init__(
        self,
        schedule: Schedule,
        *,
        theta_lr: float = ScheduleConfig.theta_lr,
        l1: float = ScheduleConfig.l1,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.schedule = schedule
        self.theta_lr, self.l1, self.seed = theta_lr, l1, seed
        n = schedule.num_sensors
        self.theta = torch.ones(n, device=device, requires_grad=True)
        self.active = torch.ones(n, dtype=torch.bool, device=device)
        k0 = schedule.initial_active()
        if k0 < n:
            gen = torch.Generator().manual_seed(seed)
            keep = torch.randperm(n, generator=gen)[:k0].to(device)
            self.active.zero_()
            self.active[keep] = True
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
    def done_pruning(self) -> bool:
        """True once the active set is final (fine-tuning, or a scheme without rounds)."""
        return self.phase == "finetune" or self.schedule.scheme == "dense"

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
        """Prune to the round's target (Eq. 4), then swap (Eqs. 5-7)."""
        record: dict[str, Any] = {"step": self.step_count, "round": r}
        target = self.schedule.active_after_round(r)
        k_prune = self.num_active - target
        if self.schedule.prunes and k_prune > 0:
            self.active = ops.prune_lowest(self.theta.detach(), self.active, k_prune)
            record["pruned"] = k_prune
        k_swap = self.schedule.swap_count(self.num_active)
        if k_swap > 0:
            drop, grow = self.swap(k_swap)
            record["dropped"], record["regrown"] = drop.tolist(), grow.tolist()
        record["active"] = self.num_active
        self.history.append(record)

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

    def swap(self, k: int) -> tuple[Tensor, Tensor]:
        """Drop the k active sensors of lowest mean ``|dL/dg|``, regrow the k inactive of highest.

        Regrown sensors start at the mean ``|theta|`` of the active ones. Resets the
        gradient average. Returns ``(dropped, regrown)`` indices.
        """
        score = self.mean_gate_grad()
        drop, grow = ops.select_swap(score, self.active, k)
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
                "hparams": {"theta_lr": self.theta_lr, "l1": self.l1, "seed": self.seed},
            }
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["schedule"] != self.schedule.to_dict():
            raise ValueError(
                "Sparsifier.load_state_dict: the saved schedule differs from this one: "
                f"{state['schedule']} vs {self.schedule.to_dict()}"
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
        self._gate = None

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: str = "cpu") -> Sparsifier:
        hp = state.get("hparams", {})
        sp = cls(Schedule(**state["schedule"]), device=device, **hp)
        sp.load_state_dict(state)
        return sp

    def __repr__(self) -> str:
        s = self.schedule
        return (
            f"Sparsifier(scheme={s.scheme!r}, N={s.num_sensors}, target={s.sparsity}, "
            f"step={self.step_count}, phase={self.phase!r}, active={self.num_active})"
        )
