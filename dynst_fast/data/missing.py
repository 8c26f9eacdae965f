"""A number that means "no reading" (``--missing-value``), turned into NaN at load.

METR-LA and PEMS-BAY (DCRNN's layout) store a loop detector that reported nothing as
speed 0, and the models of the field train and score with a mask for it (DCRNN, Graph
WaveNet, BasicTS: ``null_val = 0``). Once such readings are NaN, everything downstream
treats them as missing: the windows fill them in the inputs, the loss and every metric
leave them out. :func:`apply_missing_value` does it on a loaded data set and records what
it did in :class:`MissingValues`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import CHUNK_STEPS


@dataclass(frozen=True)
class MissingValues:
    """What the sentinel did: readings equal to ``value`` (of ``readings`` in all) became
    NaN, ``masked`` of them."""

    value: float
    masked: int
    readings: int

    @property
    def share(self) -> float:
        return self.masked / max(self.readings, 1)

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "masked_readings": self.masked, "readings": self.readings}

    def describe(self) -> str:
        return (
            f"{self.masked:,} of {self.readings:,} readings ({self.share:.2%}) equal "
            f"{self.value:g} and count as missing (--missing-value; none keeps them)"
        )


def apply_missing_value(ds: Any, value: float | None) -> Any:
    """``ds`` with every reading equal to ``value`` made NaN (in place where its values
    are writable, else on a copy) and ``ds.missing`` set; ``ds`` unchanged for None. A
    sensor left without any reading, or (grid data, which must be complete) any reading
    masked at all, is one ``ValueError``."""
    if value is None:
        return ds
    vals = ds.values
    t = vals.shape[0]
    v = np.asarray(value).astype(vals.dtype)  # compared at the data's precision (float32)
    hits = [np.flatnonzero(vals[t0 : t0 + CHUNK_STEPS] == v) for t0 in range(0, t, CHUNK_STEPS)]
    masked = int(sum(h.size for h in hits))
    if masked and ds.kind != "graph":
        raise ValueError(
            f"{ds.name}: {masked} cell(s) equal --missing-value {value:g}, but grid data must "
            "be complete: fill or crop them, or give --missing-value none"
        )
    if masked:
        if not (isinstance(vals, np.ndarray) and vals.flags.writeable) or isinstance(
            vals, np.memmap
        ):
            vals = np.array(vals)  # a read-only memory map: the masked copy lives in memory
        vals = np.ascontiguousarray(vals)
        step = int(np.prod(vals.shape[1:]))
        flat = vals.reshape(-1)
        for i, h in enumerate(hits):
            flat[i * CHUNK_STEPS * step + h] = np.nan
        ds.values = vals
        dead = np.isnan(vals).all(axis=(0, 2))
        if dead.any():
            raise ValueError(
                f"{ds.name}: sensor {ds.sensor_ids[int(np.argmax(dead))]!r} has no reading "
                f"other than the missing value {value:g} (--missing-value)"
            )
    ds.missing = MissingValues(float(value), masked, int(vals.size))
    return ds
