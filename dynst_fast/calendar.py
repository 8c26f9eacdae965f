"""Calendar inputs: time of day and day of week of every step, where the data can say
them (a DCRNN ``.h5``'s timestamps, or ``steps_per_day`` and ``start`` in ``meta.json``).

A :class:`Calendar` turns step numbers into ``FEATURES``: the sine and cosine of the time
of day and of the day of week (so that 23:55 is near 00:00 and Sunday near Monday). The
windows append them to a model's input as extra channels, the same for every sensor
(``data.make_windows(..., calendar=True)``); a backbone reads them from there (never as
extra sensors), and a served model gets them from ``dynst predict --time``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

FEATURES = ("time_of_day_sin", "time_of_day_cos", "day_of_week_sin", "day_of_week_cos")


@dataclass(frozen=True)
class Calendar:
    """Step ``t`` of the series is at ``start + t * (1 day / steps_per_day)`` (local time;
    ``start`` naive, its weekday Monday = 0)."""

    steps_per_day: int
    start: datetime

    def __post_init__(self) -> None:
        if isinstance(self.steps_per_day, bool) or not isinstance(self.steps_per_day, int):
            raise ValueError(f"steps_per_day must be an int, got {self.steps_per_day!r}")
        if self.steps_per_day < 1:
            raise ValueError(f"steps_per_day must be positive, got {self.steps_per_day}")

    @property
    def step(self) -> timedelta:
        return timedelta(days=1) / self.steps_per_day

    def features(self, steps: np.ndarray) -> np.ndarray:
        """``[len(steps), 4]`` float32 :data:`FEATURES` of the step numbers ``steps``."""
        steps = np.asarray(steps, dtype=np.float64)
        start_day = self.start.hour / 24 + self.start.minute / 1440 + self.start.second / 86400
        days = start_day + steps / self.steps_per_day  # days since the start's midnight
        tod = days % 1.0
        dow = (self.start.weekday() + np.floor(days)) % 7
        two_pi = 2 * math.pi
        return np.stack(
            [np.sin(two_pi * tod), np.cos(two_pi * tod),
             np.sin(two_pi * dow / 7), np.cos(two_pi * dow / 7)], axis=-1,
        ).astype(np.float32)  # fmt: skip

    def features_at(self, when: datetime, count: int, last: bool = True) -> np.ndarray:
        """``[count, 4]``: the features of ``count`` consecutive steps that end (``last``)
        or start at the time ``when``."""
        offset = (when - self.start) / self.step
        first = offset - (count - 1) if last else offset
        return self.features(first + np.arange(count))

    def to_dict(self) -> dict[str, Any]:
        return {"steps_per_day": self.steps_per_day, "start": self.start.isoformat(),
                "features": list(FEATURES)}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "the calendar") -> Calendar:
        try:
            return cls(int(d["steps_per_day"]), parse_time(str(d["start"]), source))
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"{source}: a calendar needs steps_per_day and start ({exc})"
            ) from None


def parse_time(text: str, what: str) -> datetime:
    """An ISO 8601 local time (``2012-03-01T00:00:00``; a UTC offset is dropped)."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{what}: {text!r} is not an ISO 8601 time (e.g. 2012-03-01T00:00)"
        ) from None
    return t.replace(tzinfo=None)


def calendar_from_meta(meta: dict[str, Any], source: str) -> Calendar | None:
    """The calendar a ``meta.json`` gives (``steps_per_day`` and ``start``), or None."""
    spd, start = meta.get("steps_per_day"), meta.get("start")
    if spd is None or start is None:
        return None
    if isinstance(spd, bool) or not isinstance(spd, int) or spd < 1:
        raise ValueError(f"{source}: steps_per_day must be a positive integer, got {spd!r}")
    if not isinstance(start, str):
        raise ValueError(f"{source}: start must be an ISO 8601 time string, got {start!r}")
    return Calendar(spd, parse_time(start, f"{source}: start"))
