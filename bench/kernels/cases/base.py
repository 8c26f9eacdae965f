"""What every case shares: the case record and the seeded active sets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

SPARSITY = 0.5
Fn = Callable[[], object]


@dataclass
class Case:
    """One benchmark case of ``op``: its methods (the op first) and facts for the tables."""

    op: str
    name: str
    fns: dict[str, Fn]
    info: dict[str, object] = field(default_factory=dict)


def active_index(n: int, s: float, device: str, seed: int) -> torch.Tensor:
    """A seeded random sorted set of ``round((1 - s) n)`` (at least 1) of ``n`` sensors."""
    g = torch.Generator().manual_seed(seed)
    k = max(1, round((1 - s) * n))
    return torch.randperm(n, generator=g)[:k].sort().values.to(device)
