"""``mask.json``: the main sparse model's active set, theta and switch-on ranking
(:class:`MaskRecord`)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .fields import RecordError, need

GAIN_METHOD = (
    "estimated whole-field MAE decrease of switching the sensor back on: mean |dL/dg| over "
    "the last mask phase x mean |theta| of the active sensors x mean(std) (first order)"
)


def switch_on_ranking(gain: Any, active: Any) -> list[int]:
    """The switched-off sensors with a gain (NaN: forbidden, never a candidate), by
    decreasing gain, ties by index: the one place the ranking is worked out."""
    off = [i for i, (g, a) in enumerate(zip(gain, active, strict=True)) if not a and g == g]
    return sorted(off, key=lambda i: (-float(gain[i]), i))


@dataclass
class MaskRecord:
    """``mask.json``: the main sparse model's sensors in input order, theta, which are
    active, and for a scheme with mask phases each switched-off sensor's switch-on gain
    (None for the active ones and the forbidden ones) with the resulting ranking."""

    sensor_ids: list[str]
    theta: list[float]
    active: list[bool]
    scheme: str
    sparsity: float
    constraints: dict[str, Any] | None = None
    switch_on_gain: list[float | None] | None = None
    switch_on_gain_units: str = ""
    switch_on_ranking: list[int] | None = None

    @classmethod
    def build(
        cls,
        sensor_ids: list[str],
        theta: list[float],
        active: list[bool],
        scheme: str,
        constraints: dict[str, Any] | None,
        gain: Any = None,
        units: str = "",
    ) -> MaskRecord:
        """The record of a trained active set; ``gain [N]`` (NaN where a sensor may not
        be switched on) gives the per-sensor gains and the ranking."""
        n = len(sensor_ids)
        rec = cls(list(sensor_ids), list(theta), list(active), scheme,
                  1.0 - sum(active) / n, constraints)  # fmt: skip
        if gain is not None:
            rec.switch_on_gain = [
                None if a or math.isnan(g) else float(g) for a, g in zip(active, gain, strict=True)
            ]
            rec.switch_on_gain_units = units
            rec.switch_on_ranking = switch_on_ranking([float(g) for g in gain], active)
        return rec

    @property
    def active_index(self) -> list[int]:
        """The active sensors' indices, ascending (the compacted model's input order)."""
        return [i for i, a in enumerate(self.active) if a]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sensor_ids": self.sensor_ids,
            "theta": self.theta,
            "active": self.active,
            "active_index": self.active_index,
            "scheme": self.scheme,
            "sparsity": self.sparsity,
            "constraints": self.constraints,
            "switch_on_gain": self.switch_on_gain,
        }
        if self.switch_on_gain is not None:
            out.update(
                switch_on_gain_units=self.switch_on_gain_units,
                switch_on_gain_method=GAIN_METHOD,
                switch_on_ranking=self.switch_on_ranking,
            )
        return out

    @classmethod
    def read(cls, run_dir: str | os.PathLike) -> MaskRecord:
        """The ``mask.json`` of a finished run directory, checked."""
        path = Path(run_dir) / "mask.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"no mask.json in {run_dir}: is it a finished `dynst run` directory?"
            )
        try:
            doc = json.loads(path.read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise RecordError(f"{path} is not a dynst mask.json ({exc})") from None
        return cls.from_dict(doc, str(path))

    @classmethod
    def from_dict(cls, d: Any, source: str = "mask.json") -> MaskRecord:
        """A ``mask.json``, checked: ids, theta and active flags of one length, flags
        true / false, gains numbers (or null) and a ranking of switched-off sensors."""
        ids = need(d, "sensor_ids", list, source)
        active = need(d, "active", list, source)
        if len(active) != len(ids):
            raise RecordError(f"{source}: 'active' and 'sensor_ids' differ in length")
        if not all(isinstance(a, bool) for a in active):
            raise RecordError(f"{source}: 'active' must hold true / false")
        theta = d.get("theta", [1.0] * len(ids))
        if not isinstance(theta, list) or len(theta) != len(ids):
            raise RecordError(f"{source}: 'theta' and 'sensor_ids' differ in length")
        if not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in theta):
            raise RecordError(f"{source}: 'theta' must hold numbers")
        gain = d.get("switch_on_gain")
        ranking = d.get("switch_on_ranking")
        if gain is not None:
            if not isinstance(gain, list) or len(gain) != len(ids):
                raise RecordError(f"{source}: 'switch_on_gain' and 'sensor_ids' differ in length")
            if not all(
                g is None or (isinstance(g, (int, float)) and not isinstance(g, bool)) for g in gain
            ):
                raise RecordError(f"{source}: 'switch_on_gain' must hold numbers or null")
            if not isinstance(ranking, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(ids)
                and not active[i] and gain[i] is not None
                for i in ranking
            ):  # fmt: skip
                raise RecordError(
                    f"{source}: 'switch_on_ranking' must list switched-off sensors with a gain"
                )
        return cls(
            sensor_ids=[str(s) for s in ids],
            theta=[float(t) for t in theta],
            active=list(active),
            scheme=str(d.get("scheme", "")),
            sparsity=float(d.get("sparsity", 1.0 - sum(active) / max(len(ids), 1))),
            constraints=d.get("constraints") if isinstance(d.get("constraints"), dict) else None,
            switch_on_gain=gain,
            switch_on_gain_units=str(d.get("switch_on_gain_units", "")),
            switch_on_ranking=ranking,
        )
