"""The settings data readers take (``--distance-sigma``, ``--distance-threshold``,
``--missing-value``),
as the data layer's own record: readers never import the run's configuration."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..limits import F32_MAX


@dataclass(frozen=True)
class ReadOptions:
    """``distance_sigma``: sigma of the Gaussian kernel ``exp(-(d / sigma)^2)`` of
    distance lists (None: the distances' standard deviation); ``distance_threshold``:
    kernel weights below it are no edge (DCRNN's 0.1); ``missing_value``: readings equal
    to it are missing (NaN), None for no such value, ``"auto"`` for the data's own (its
    ``meta.json``'s, else its format's: 0 for the DCRNN and PEMS layouts)."""

    distance_sigma: float | None = None
    distance_threshold: float = 0.1
    missing_value: float | str | None = "auto"

    def __post_init__(self) -> None:
        v = self.missing_value
        if v is None or v == "auto":
            return
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"missing_value must be a finite number, None or 'auto', got {v!r}")
        if abs(v) > F32_MAX:
            raise ValueError(f"missing_value {v:g} is beyond float32's range: no reading equals it")
