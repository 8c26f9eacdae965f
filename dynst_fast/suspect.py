"""Sensors that lie: readings that are numbers but cannot be right.

A broken detector rarely sends NaN. A stuck one repeats its last value; a broken one
sends 0 or an impossible value. :class:`SuspectRules` flags, per window and input
sensor, a window that is **stuck** (every step the same, for a sensor whose training
windows were rarely so) or **out of range** (a reading outside the range the sensor
showed on the training split, widened by ``margin`` times that range on both sides).
``dynst export`` writes the rules into the sidecar (``"suspect"``), ``dynst predict
--on-suspect`` applies them, and :func:`suspect_sensors` is the same check for code that
serves a model in PyTorch. numpy only (a torch tensor is taken and given back as one):
a serving host needs no torch.

Layouts (original units, the exported model's input): graphs ``[B, T_in, K, C]``, image
tiles ``[B, K, T_in, C, p, p]`` (``kind`` ``"graph"`` / ``"image"``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

# Chosen on Los-loop's validation split (bench/results/los_loop_failures.md): a margin of
# 0.1 of the range flagged 0.34% of the sensor-windows out of range (the low speeds of
# congestion that training had not seen), 0.5 flagged 0.08%; sensors constant in more
# than 1% of their training windows (5 of 207) are not checked for sticking, which left no
# validation window flagged stuck (5%: 0.08%).
MARGIN = 0.5  # of a sensor's training range, added below and above it
STUCK_SHARE = 0.01  # a sensor constant in more of its training windows is never "stuck"
REASONS = ("stuck", "out of range")


def canonical(x: np.ndarray, kind: str) -> np.ndarray:
    """``x`` as ``[B, K, T, C, P]`` (P: a tile's pixels, 1 for graphs), a view."""
    if kind == "graph" and x.ndim == 4:
        return x.transpose(0, 2, 1, 3)[..., None]
    if kind == "image" and x.ndim == 6:
        return x.reshape(*x.shape[:4], -1)
    raise ValueError(f"{kind!r} input of {x.ndim} dimensions: graph [B, T, K, C] or image tiles")


@dataclass(frozen=True)
class SuspectRules:
    """``low`` / ``high`` ``[K, C]``: the readings a sensor may send (-inf / inf where
    training saw none); ``check_stuck [K]``: whether a constant window means stuck for
    that sensor; ``margin`` and ``stuck_share``: how they were drawn from training."""

    low: np.ndarray
    high: np.ndarray
    check_stuck: np.ndarray
    margin: float = MARGIN
    stuck_share: float = STUCK_SHARE

    @property
    def num_sensors(self) -> int:
        return int(self.check_stuck.shape[0])

    def flags(self, x: np.ndarray, kind: str) -> dict[str, np.ndarray]:
        """``{"stuck": [B, K], "out of range": [B, K]}`` bool for windows ``x`` (NaN is
        neither: it is missing, which the caller handles)."""
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise ValueError(f"suspect rules check real numbers, got dtype {x.dtype}")
        v = canonical(x, kind)
        b, k = v.shape[:2]
        if k != self.num_sensors:
            raise ValueError(f"the suspect rules are for {self.num_sensors} sensors, got {k}")
        stuck = np.zeros((b, k), dtype=bool)
        if b == 0:
            return {"stuck": stuck, "out of range": stuck.copy()}
        if v.shape[2] > 1:  # a window of one step is always constant
            same = (v.max(axis=2) == v.min(axis=2)).reshape(b, k, -1).all(axis=2)
            stuck = same & self.check_stuck[None, :]
        lo, hi = self.low[None, :, None, :, None], self.high[None, :, None, :, None]
        with np.errstate(invalid="ignore"):
            outside = ((v < lo) | (v > hi)).reshape(b, k, -1).any(axis=2)
        return {"stuck": stuck, "out of range": outside}

    def to_dict(self) -> dict[str, Any]:
        def plain(a: np.ndarray) -> list:
            return [[None if not np.isfinite(v) else float(v) for v in row] for row in a]

        return {
            "rules": "a window constant over all its steps (for check_stuck sensors), or a "
            "reading below low or above high",
            "margin": self.margin,
            "stuck_share": self.stuck_share,
            "low": plain(self.low),
            "high": plain(self.high),
            "check_stuck": [bool(s) for s in self.check_stuck],
        }

    @classmethod
    def from_dict(cls, d: Any, k: int, c: int) -> SuspectRules:
        """The rules a sidecar holds for ``k`` sensors of ``c`` channels; ``ValueError``
        naming what is wrong."""

        def bounds(name: str, none: float) -> np.ndarray:
            rows = d.get(name)
            ok = isinstance(rows, list) and len(rows) == k
            ok = ok and all(isinstance(r, list) and len(r) == c for r in rows)
            ok = ok and all(
                v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                for r in rows
                for v in r
            )
            if not ok:
                raise ValueError(f"the sidecar's suspect.{name} must be [{k}][{c}] numbers")
            return np.array([[none if v is None else v for v in r] for r in rows], np.float64)

        if not isinstance(d, dict):
            raise ValueError("the sidecar's suspect field must be an object")
        stuck = d.get("check_stuck")
        if not (
            isinstance(stuck, list) and len(stuck) == k and all(isinstance(s, bool) for s in stuck)
        ):
            raise ValueError(f"the sidecar's suspect.check_stuck must be {k} booleans")
        for name in ("margin", "stuck_share"):
            v = d.get(name, 0.0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ValueError(f"the sidecar's suspect.{name} must be a number >= 0, got {v!r}")
        return cls(
            bounds("low", -np.inf),
            bounds("high", np.inf),
            np.array(stuck, dtype=bool),
            float(d.get("margin", MARGIN)),
            float(d.get("stuck_share", STUCK_SHARE)),
        )

    @classmethod
    def from_sidecar(cls, meta: dict[str, Any]) -> SuspectRules | None:
        """The rules of an exported model's sidecar (a dict), None if it has none."""
        if meta.get("suspect") is None:
            return None
        return cls.from_dict(meta["suspect"], len(meta["sensor_ids"]), int(meta["channels"]))


def rules_from_training(
    windows: Iterable[np.ndarray],
    kind: str,
    margin: float = MARGIN,
    stuck_share: float = STUCK_SHARE,
) -> SuspectRules:
    """The rules drawn from training windows (each a batch in ``kind``'s layout, data
    channels only, original units, NaN = missing): each sensor's range per channel
    widened by ``margin`` of it, and ``check_stuck`` for the sensors constant in at
    most ``stuck_share`` of their windows."""
    lo = hi = constant = None
    count = 0
    for x in windows:
        v = canonical(np.asarray(x, dtype=np.float64), kind)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a sensor with no reading here
            b_lo = np.nanmin(v, axis=(0, 2, 4))  # [K, C]
            b_hi = np.nanmax(v, axis=(0, 2, 4))
        same = (v.max(axis=2) == v.min(axis=2)).reshape(v.shape[0], v.shape[1], -1).all(axis=2)
        if lo is None:
            lo, hi, constant = b_lo, b_hi, same.sum(axis=0)
        else:
            lo, hi = np.fmin(lo, b_lo), np.fmax(hi, b_hi)
            constant = constant + same.sum(axis=0)
        count += v.shape[0]
    if lo is None or count == 0:
        raise ValueError("no training window to draw the suspect rules from")
    width = np.where(np.isfinite(hi - lo), hi - lo, 0.0)
    low = np.where(np.isfinite(lo), lo - margin * width, -np.inf)
    high = np.where(np.isfinite(hi), hi + margin * width, np.inf)
    return SuspectRules(low, high, constant / count <= stuck_share, margin, stuck_share)


def suspect_sensors(x: Any, rules: SuspectRules, kind: str = "graph") -> Any:
    """``[B, K]`` bool: the input sensors ``rules`` flag in each window of ``x`` (stuck
    or out of range), for code that serves in PyTorch: a torch tensor in, a torch bool
    tensor out (on ``x``'s device); a numpy array in, one out."""
    if not isinstance(rules, SuspectRules):
        raise TypeError(
            f"rules must be SuspectRules (SuspectRules.from_sidecar), got {rules!r:.80}"
        )
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        import torch

        f = rules.flags(x.detach().cpu().numpy(), kind)
        return torch.from_numpy(f["stuck"] | f["out of range"]).to(x.device)
    f = rules.flags(np.asarray(x), kind)
    return f["stuck"] | f["out of range"]
