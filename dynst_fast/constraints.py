"""Deployment constraints on the active set: sensors that must stay on, sensors that cannot
be used, and what running them costs.

* ``keep``: never pruned or dropped (legal or safety reasons);
* ``forbid``: never active (broken, decommissioned, not ours);
* ``cost`` and ``budget``: a per-sensor running cost and a cap on the active set's total,
  in place of a target sparsity.

The sparsifier enforces keep / forbid through the selection ops' ``movable`` mask (the
kernels never pick an unmovable sensor) and the budget by pruning the lowest ``|theta|``
per unit cost until the round's cost target is met. :func:`from_ids` builds constraints
from sensor ids as users write them; :func:`read_ids` and :func:`read_costs` read the
``--keep-file`` / ``--forbid-file`` lists and the ``--cost`` CSV.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True, eq=False)
class Constraints:
    """What the active set must respect. keep, forbid: ``[N]`` bool; cost: ``[N]``
    float64 > 0 or None (one unit per sensor); budget: the cap on the active set's total
    cost, or None (the target sparsity decides the count)."""

    keep: Tensor
    forbid: Tensor
    cost: Tensor | None = None
    budget: float | None = None

    def __post_init__(self) -> None:
        n = self.keep.numel()
        for name in ("keep", "forbid"):
            t = getattr(self, name)
            if t.dtype != torch.bool or t.shape != (n,):
                raise ValueError(f"Constraints: {name} must be a [{n}] bool tensor")
        if self.cost is not None:
            c = self.cost
            if c.shape != (n,) or not c.is_floating_point():
                raise ValueError(f"Constraints: cost must be a [{n}] float tensor")
            if not bool(torch.isfinite(c).all()) or bool((c <= 0).any()):
                raise ValueError("Constraints: every cost must be a positive finite number")
        if self.budget is not None and not (math.isfinite(self.budget) and self.budget > 0):
            raise ValueError(f"--budget must be a positive number, got {self.budget}")
        if self.cost is not None and self.budget is None:
            raise ValueError("--cost needs --budget (the cap on the active sensors' total cost)")

    @classmethod
    def none(cls, n: int) -> Constraints:
        z = torch.zeros(n, dtype=torch.bool)
        return cls(z, z.clone())

    @property
    def num_sensors(self) -> int:
        return self.keep.numel()

    @property
    def movable(self) -> Tensor:
        """``[N]`` bool: the sensors the sparsifier may switch on or off."""
        return ~(self.keep | self.forbid)

    @property
    def restricts(self) -> bool:
        """Whether keep or forbid names any sensor."""
        return bool(self.keep.any() or self.forbid.any())

    @property
    def costs(self) -> Tensor:
        """``[N]`` float64: the cost of every sensor (1 each without a cost file)."""
        if self.cost is None:
            return torch.ones(self.num_sensors, dtype=torch.float64)
        return self.cost.to(torch.float64)

    def cost_of(self, active: Tensor) -> float:
        """Total cost of the sensors of the ``[N]`` bool mask ``active``."""
        return float(self.costs[active.cpu()].sum())

    def check(self, target_active: int | None, ids: Sequence[str] | None = None) -> None:
        """One clear ``ValueError`` for contradictory constraints: keep and forbid
        overlapping, more kept sensors than ``target_active`` (count mode), fewer allowed
        sensors than it, kept sensors that cost more than the budget, or a budget that no
        sensor fits in."""
        name = (lambda i: ids[i]) if ids is not None else str
        both = torch.nonzero(self.keep & self.forbid).flatten().tolist()
        if both:
            raise ValueError(
                f"--keep and --forbid both name sensor(s) {_listed(map(name, both))}: a "
                "sensor cannot be kept on and forbidden"
            )
        n_keep = int(self.keep.sum())
        allowed = self.num_sensors - int(self.forbid.sum())
        if allowed < 1:
            raise ValueError("--forbid names every sensor: none is left to forecast from")
        if self.budget is None:
            if target_active is not None and n_keep > target_active:
                raise ValueError(
                    f"--keep names {n_keep} sensors but the sparsity leaves K = "
                    f"{target_active} active: keep fewer or lower --sparsity"
                )
            if target_active is not None and allowed < target_active:
                raise ValueError(
                    f"--forbid leaves {allowed} usable sensors but the sparsity keeps K = "
                    f"{target_active} active: raise --sparsity to at least "
                    f"{1 - allowed / self.num_sensors:.3f} or forbid fewer"
                )
            return
        keep_cost = self.cost_of(self.keep)
        if keep_cost > self.budget:
            raise ValueError(
                f"the {n_keep} kept sensors cost {keep_cost:g}, over --budget {self.budget:g}"
            )
        usable = self.costs[~self.forbid]
        if n_keep == 0 and float(usable.min()) > self.budget:
            raise ValueError(
                f"--budget {self.budget:g} is below the cheapest usable sensor's cost "
                f"{float(usable.min()):g}: no sensor fits"
            )

    def sizing_sparsity(self) -> float:
        """With a budget, the sparsity that sizes the schedule's swaps and checks: the
        share of sensors left off if the active ones cost the usable sensors' mean."""
        usable = self.costs[~self.forbid]
        k = min(max(round(self.budget / float(usable.mean())), 1), usable.numel())
        return 1.0 - k / self.num_sensors

    # ---------------------------------------------------------------- state
    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (a sparsifier state dict and ``mask.json`` hold it)."""
        return {
            "keep": torch.nonzero(self.keep).flatten().tolist(),
            "forbid": torch.nonzero(self.forbid).flatten().tolist(),
            "cost": None if self.cost is None else self.cost.tolist(),
            "budget": self.budget,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], n: int) -> Constraints:
        keep = torch.zeros(n, dtype=torch.bool)
        forbid = torch.zeros(n, dtype=torch.bool)
        keep[list(d["keep"])] = True
        forbid[list(d["forbid"])] = True
        cost = None if d["cost"] is None else torch.tensor(d["cost"], dtype=torch.float64)
        return cls(keep, forbid, cost, d["budget"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Constraints) and self.to_dict() == other.to_dict()


def within(total: float, cap: float) -> bool:
    """``total <= cap`` up to float rounding of sums (a relative 1e-9)."""
    return total <= cap + 1e-9 * abs(cap)


def _listed(items, limit: int = 8) -> str:
    items = list(items)
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(map(str, items[:limit])) + more


def from_ids(
    ids: Sequence[str],
    *,
    keep: Sequence[str] = (),
    forbid: Sequence[str] = (),
    cost: dict[str, float] | None = None,
    budget: float | None = None,
) -> Constraints:
    """Constraints over the sensors ``ids`` (input order) from ids as users write them;
    an unknown id, or a cost table that misses sensors, is one clear ``ValueError``."""
    where = {s: i for i, s in enumerate(ids)}

    def mask(names: Sequence[str], flag: str) -> Tensor:
        unknown = [s for s in names if s not in where]
        if unknown:
            raise ValueError(
                f"{flag}: unknown sensor id(s) {_listed(unknown)}; ids look like "
                f"{_listed(ids[:5], 5)}"
            )
        m = torch.zeros(len(ids), dtype=torch.bool)
        m[[where[s] for s in names]] = True
        return m

    c = None
    if cost is not None:
        unknown = [s for s in cost if s not in where]
        if unknown:
            raise ValueError(
                f"--cost: unknown sensor id(s) {_listed(unknown)}; ids look like "
                f"{_listed(ids[:5], 5)}"
            )
        missing = [s for s in ids if s not in cost]
        if missing:
            raise ValueError(
                f"--cost gives no cost for {len(missing)} sensor(s): {_listed(missing)}"
            )
        c = torch.tensor([float(cost[s]) for s in ids], dtype=torch.float64)
    return Constraints(mask(keep, "--keep"), mask(forbid, "--forbid"), c, budget)


def from_config(cfg: Any, ids: Sequence[str]) -> Constraints | None:
    """The constraints of a ``ConstraintsConfig`` over the sensors ``ids``, files read;
    None when it sets none."""
    if not cfg.given:
        return None
    keep = list(cfg.keep) + (read_ids(cfg.keep_file, "--keep-file") if cfg.keep_file else [])
    forbid = list(cfg.forbid) + (
        read_ids(cfg.forbid_file, "--forbid-file") if cfg.forbid_file else []
    )
    cost = read_costs(cfg.cost) if cfg.cost is not None else None
    return from_ids(ids, keep=keep, forbid=forbid, cost=cost, budget=cfg.budget)


def read_ids(path: str | Path, flag: str) -> list[str]:
    """Sensor ids from a text file: one per line or comma-separated; ``#`` starts a comment."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{flag}: no file at {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{flag}: {path} is not UTF-8 text") from None
    out = []
    for line in text.splitlines():
        out += [s.strip() for s in line.split("#", 1)[0].split(",") if s.strip()]
    return out


def read_costs(path: str | Path) -> dict[str, float]:
    """``sensor_id,cost`` rows of a CSV (a header row is allowed); each cost positive."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--cost: no file at {path}")
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except UnicodeDecodeError:
        raise ValueError(f"--cost: {path} is not UTF-8 text") from None
    out: dict[str, float] = {}
    for line, row in enumerate(rows, 1):
        row = [c.strip() for c in row]
        if not any(row):
            continue
        if len(row) != 2:
            raise ValueError(f"--cost: {path} line {line}: expected sensor_id,cost, got {row}")
        sid, value = row
        try:
            v = float(value)
        except ValueError:
            if line == 1:  # the header
                continue
            raise ValueError(
                f"--cost: {path} line {line}: cost {value!r} is not a number"
            ) from None
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"--cost: {path} line {line}: cost must be positive, got {value}")
        if sid in out:
            raise ValueError(f"--cost: {path} line {line}: sensor {sid!r} is listed twice")
        out[sid] = v
    if not out:
        raise ValueError(f"--cost: {path} has no sensor_id,cost rows")
    return out
