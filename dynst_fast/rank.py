"""``dynst rank``: a run's switched-off sensors, best first, by the estimated gain of
switching each back on (``mask.json``'s ``switch_on_gain``). Reads JSON only (no torch)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def switch_on_ranking(run_dir: str | os.PathLike, top: int | None = None) -> list[dict]:
    """``[{"rank", "sensor", "index", "gain"}]`` of the switched-off sensors of a run,
    by decreasing estimated whole-field MAE decrease (original units); the first ``top``."""
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise ValueError(f"--top must be a positive integer, got {top!r}")
    path = Path(run_dir) / "mask.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no mask.json in {run_dir}: is it a finished `dynst run` directory?"
        )
    try:
        mask = json.loads(path.read_text())
        ids, gain, active = mask["sensor_ids"], mask["switch_on_gain"], mask["active"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a dynst mask.json ({exc})") from None
    if gain is None:
        raise ValueError(
            f"{path} has no switch-on gains: the {mask.get('scheme')!r} scheme has no mask "
            "phase to measure them in (dynst, iterative, one-shot and fixed have)"
        )
    if not (len(ids) == len(gain) == len(active)):
        raise ValueError(f"{path}: sensor_ids, active and switch_on_gain differ in length")
    constraints = mask.get("constraints") or {}
    forbidden = set(constraints.get("forbid", [])) if isinstance(constraints, dict) else set()
    off = [i for i, a in enumerate(active) if not a and ids[i] not in forbidden]
    if any(not isinstance(gain[i], (int, float)) for i in off):
        raise ValueError(f"{path}: a switched-off sensor has no numeric switch_on_gain")
    off.sort(key=lambda i: (-gain[i], i))
    return [
        {"rank": r, "sensor": ids[i], "index": i, "gain": float(gain[i])}
        for r, i in enumerate(off[:top] if top else off, 1)
    ]
