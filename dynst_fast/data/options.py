"""The settings some data readers take (``--distance-sigma``, ``--distance-threshold``),
as the data layer's own record: readers never import the run's configuration."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReadOptions:
    """``distance_sigma``: sigma of the Gaussian kernel ``exp(-(d / sigma)^2)`` of
    distance lists (None: the distances' standard deviation); ``distance_threshold``:
    kernel weights below it are no edge (DCRNN's 0.1)."""

    distance_sigma: float | None = None
    distance_threshold: float = 0.1
