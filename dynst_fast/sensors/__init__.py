"""Sensor spaces (DESIGN.md section 5): graph nodes or image patches, behind one type.

A data set builds its space once (``dataset.sensor_space(patch)``); models, runs,
artifacts and exports ask it for everything that differs between the two kinds.
"""

from __future__ import annotations

from typing import Any

from .base import SensorSpace
from .graph import GraphSensors, GraphServing, select_sensors
from .patches import PatchSensors, PatchServing, frames_to_tiles

SPACES: dict[str, type[SensorSpace]] = {cls.kind: cls for cls in (GraphSensors, PatchSensors)}


def space_from_state(state: dict[str, Any]) -> SensorSpace:
    """The space a checkpoint recorded (``SensorSpace.state``)."""
    kind = state.get("kind") if isinstance(state, dict) else None
    if kind not in SPACES:
        raise ValueError(f"unknown sensor space {kind!r}; known: {', '.join(SPACES)}")
    return SPACES[kind].from_state(state)


__all__ = [
    "SensorSpace",
    "GraphSensors",
    "PatchSensors",
    "GraphServing",
    "PatchServing",
    "SPACES",
    "frames_to_tiles",
    "select_sensors",
    "space_from_state",
]
