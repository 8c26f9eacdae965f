"""The settings data readers take (``--distance-sigma``, ``--distance-threshold``,
``--missing-value``),
as the data layer's own record: readers never import the run's configuration."""

from __future__ import annotations

from dataclasses import dataclass


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
