"""The step schedule of DynST (DESIGN.md section 4, Algorithm 1).

Time is counted in optimizer steps. The timeline is

``warm-up (W steps) | round 1: R network + M mask | ... | round P | fine-tune``

and at the end of each round the sparsifier prunes and/or swaps. Which of these a
scheme uses, and how many sensors are active after each round, is decided here,
so that "sparsity follows the schedule" is a property one can test.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .config import ScheduleConfig
from .schemes import Scheme, scheme_names
from .schemes import scheme as lookup_scheme

PHASES = ("warmup", "network", "mask", "finetune")
SCHEMES = scheme_names()  # every scheme's name, dense included


def active_count(num_sensors: int, sparsity: float) -> int:
    """K = N - round(s N): the sensors left on at sparsity s (the one place it is counted)."""
    return num_sensors - int(round(sparsity * num_sensors))


@dataclass(frozen=True)
class Schedule:
    """When to train what, and how many sensors stay on.

    Args:
        scheme: a :class:`~dynst_fast.schemes.Scheme` or its registered name (stored
            as the object).
        num_sensors: N. sparsity: the target s* in [0, 1).
        warmup_steps: W dense steps before the first round.
        rounds: P pruning rounds (``one-shot`` uses 1; ``fixed`` swaps in each).
        network_steps: R network steps per round. mask_steps: M theta steps per round.
        swap_fraction: q, the fraction of the K active sensors swapped per round.
    """

    scheme: Scheme
    num_sensors: int
    sparsity: float
    warmup_steps: int = 0
    rounds: int = ScheduleConfig.rounds
    network_steps: int = 50
    mask_steps: int = 20
    swap_fraction: float = ScheduleConfig.swap_fraction

    def __post_init__(self) -> None:
        object.__setattr__(self, "scheme", lookup_scheme(self.scheme))
        for name in ("num_sensors", "warmup_steps", "rounds", "network_steps", "mask_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"Schedule: {name} must be an int, got {v!r}")
        if isinstance(self.sparsity, bool) or not isinstance(self.sparsity, (int, float)):
            raise TypeError(f"Schedule: sparsity must be a number, got {self.sparsity!r}")
        if not (0.0 <= self.sparsity < 1.0):
            raise ValueError(f"sparsity must be in [0, 1), got {self.sparsity}")
        if self.num_sensors < 1:
            raise ValueError(f"num_sensors must be >= 1, got {self.num_sensors}")
        if self.target_active() < 1:
            raise ValueError(
                f"sparsity {self.sparsity} leaves no sensor active out of {self.num_sensors}"
            )
        for name in ("warmup_steps", "rounds", "network_steps", "mask_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.uses_rounds and self.rounds < 1:
            raise ValueError(f"scheme {self.scheme.name!r} needs rounds >= 1")
        if self.uses_rounds and self.round_steps < 1:
            raise ValueError("a round needs at least one network or mask step")
        if not (0.0 <= self.swap_fraction < 1.0):
            raise ValueError(f"swap_fraction must be in [0, 1), got {self.swap_fraction}")

    # ------------------------------------------------------------ scheme facts
    @property
    def uses_rounds(self) -> bool:
        return self.scheme.uses_rounds

    @property
    def prunes(self) -> bool:
        return self.scheme.prunes

    @property
    def swaps(self) -> bool:
        return self.scheme.swaps

    @property
    def trains_theta(self) -> bool:
        return self.scheme.trains_theta

    @property
    def num_rounds(self) -> int:
        return self.scheme.num_rounds(self.rounds)

    @property
    def round_steps(self) -> int:
        return self.network_steps + self.mask_steps

    @property
    def rounds_end(self) -> int:
        """First step after the last round (fine-tuning starts here)."""
        return self.warmup_steps + self.num_rounds * self.round_steps

    def target_active(self) -> int:
        """K* = N - round(s* N), the active count once the target is reached."""
        return active_count(self.num_sensors, self.sparsity)

    def initial_active(self) -> int:
        """Active count at step 0: N for pruning schemes, K* for the fixed-set ones
        (``fixed``, ``random``, ``qr``, ``greedy``, ``mask``)."""
        return self.target_active() if self.scheme.fixed_set else self.num_sensors

    # ------------------------------------------------------------ timeline
    def phase(self, step: int) -> tuple[str, int]:
        """``(phase, round)`` of a step; round is 0 outside the rounds, else 1..P."""
        if not self.uses_rounds:
            return ("network" if self.scheme.dense else "finetune", 0)
        if step < self.warmup_steps:
            return ("warmup", 0)
        if step >= self.rounds_end:
            return ("finetune", 0)
        r, offset = divmod(step - self.warmup_steps, self.round_steps)
        return ("network" if offset < self.network_steps else "mask", r + 1)

    def round_ending_at(self, step: int) -> int:
        """The round whose last step is ``step - 1`` (so its update happens at ``step``), else 0."""
        if not self.uses_rounds or step <= self.warmup_steps or step > self.rounds_end:
            return 0
        r, offset = divmod(step - self.warmup_steps, self.round_steps)
        return r if offset == 0 else 0

    def active_after_round(self, r: int) -> int:
        """Active count after round r's prune (r = 0: before any round)."""
        n, k_star = self.num_sensors, self.target_active()
        if r <= 0 or not self.prunes:
            return self.initial_active()
        r = min(r, self.num_rounds)
        return n - int(round((n - k_star) * r / self.num_rounds))

    def active_count(self, step: int) -> int:
        """How many sensors are active while step ``step`` runs."""
        if not self.uses_rounds:
            return self.initial_active()
        done = 0 if step < self.warmup_steps else (step - self.warmup_steps) // self.round_steps
        return self.active_after_round(min(done, self.num_rounds))

    def swap_count(self, active: int) -> int:
        """Sensors swapped at a round end with ``active`` sensors on (0 if none can be)."""
        if not self.swaps or self.swap_fraction <= 0:
            return 0
        k = max(1, int(round(self.swap_fraction * active)))
        return min(k, active, self.num_sensors - active)

    @classmethod
    def from_config(
        cls,
        sched: ScheduleConfig,
        num_sensors: int,
        total_steps: int,
        *,
        scheme: str | Scheme | None = None,
        sparsity: float | None = None,
    ) -> Schedule:
        """The step schedule of ``sched``'s fractions over ``total_steps`` optimizer steps
        (``scheme`` / ``sparsity`` default to ``sched``'s)."""
        scheme = lookup_scheme(scheme or sched.scheme)
        sparsity = sched.sparsity if sparsity is None else sparsity
        if sparsity is None and not scheme.dense:
            raise ValueError("Schedule.from_config: give a sparsity (the config has none)")
        warmup = int(sched.warmup_frac * total_steps)
        rounds = 1 if scheme.one_round else sched.rounds
        per_round = max(2, int(sched.prune_frac * total_steps) // max(rounds, 1))
        mask = max(1, int(round(sched.mask_frac * per_round)))
        return cls(
            scheme=scheme,
            num_sensors=num_sensors,
            sparsity=0.0 if scheme.dense else float(sparsity),
            warmup_steps=warmup,
            rounds=rounds,
            network_steps=per_round - mask,
            mask_steps=mask,
            swap_fraction=sched.swap_fraction,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain values (the scheme by its name), as ``Schedule(**d)`` takes them."""
        return {**asdict(self), "scheme": self.scheme.name}
