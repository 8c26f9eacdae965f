"""``dynst rank``: a run's switched-off sensors, best first, by the estimated gain of
switching each back on: the ranking ``mask.json`` holds (``records.MaskRecord``), with
each sensor's gain. Reads JSON only (no torch)."""

from __future__ import annotations

import os

from .records import MaskRecord


def switch_on_ranking(run_dir: str | os.PathLike, top: int | None = None) -> list[dict]:
    """``[{"rank", "sensor", "index", "gain"}]`` of the switched-off sensors of a run,
    by decreasing estimated whole-field MAE decrease (original units); the first ``top``."""
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise ValueError(f"--top must be a positive integer, got {top!r}")
    mask = MaskRecord.read(run_dir)
    if mask.switch_on_gain is None:
        raise ValueError(
            f"{run_dir}/mask.json has no switch-on gains: the {mask.scheme!r} scheme has no "
            "mask phase to measure them in (dynst, iterative, one-shot and fixed have)"
        )
    ranking = mask.switch_on_ranking[:top] if top else mask.switch_on_ranking
    return [
        {"rank": r, "sensor": mask.sensor_ids[i], "index": i,
         "gain": float(mask.switch_on_gain[i])}
        for r, i in enumerate(ranking, 1)
    ]  # fmt: skip
