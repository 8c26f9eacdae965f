"""The sensor-space contract (DESIGN.md section 5): everything that differs between
graph nodes and image patches, behind one type, built once from the data set.

Outside the sensor spaces no module branches on the kind of data: it asks its space.
(The torch-free ``serve.py`` reads the sidecar layouts that :meth:`SensorSpace.sidecar`
writes.)
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ..calendar import FEATURES as CALENDAR_FEATURES
from ..calendar import Calendar
from ..metrics import StreamingMetrics


class SensorSpace(ABC):
    """The N sensors of a data set as the models, the runs and the exports see them.

    Full inputs are ``[B, T, N, C]`` (graphs) or ``[B, T, C, H, W]`` (grids); a compacted
    model reads the *active input* that :meth:`gather` cuts from a full input.
    """

    kind: ClassVar[str]  # the kind of data: "graph" or "grid"
    data_description: ClassVar[str]  # how error messages name that kind of data
    noun: ClassVar[str]  # what a sensor is called in reports: "sensors", "patches"
    metrics_need_range: ClassVar[bool] = False  # metrics scaled by the target's range

    def __init__(self, ids: list[str], planted: np.ndarray | None = None) -> None:
        self.ids = list(ids)
        self.planted = None if planted is None else np.asarray(planted, dtype=np.int64)
        self.calendar: Calendar | None = None  # the inputs carry its features (with_calendar)

    def with_calendar(self, calendar: Calendar | None) -> SensorSpace:
        """This space, its inputs carrying ``calendar``'s features after their data
        channels (None: no calendar inputs); returns itself."""
        self.calendar = calendar
        return self

    @property
    def calendar_features(self) -> int:
        """F, the calendar channels of an input after its data channels (0: none)."""
        return 0 if self.calendar is None else len(CALENDAR_FEATURES)

    def calendar_state(self) -> dict[str, Any]:
        """The calendar's part of :meth:`state` (empty without one)."""
        return {} if self.calendar is None else {"calendar": self.calendar.to_dict()}

    def restore_calendar(self, state: dict[str, Any]) -> SensorSpace:
        """This space with the calendar of a :meth:`state` (if it has one)."""
        cal = state.get("calendar")
        return self.with_calendar(None if cal is None else Calendar.from_dict(cal))

    @property
    def num_sensors(self) -> int:
        return len(self.ids)

    @property
    def planted_sparsity(self) -> float | None:
        """``1 - len(planted) / N`` for data with planted sensors, else None."""
        return None if self.planted is None else 1.0 - len(self.planted) / self.num_sensors

    # ---------------------------------------------------------------- inputs
    @abstractmethod
    def check_input(
        self, x: Tensor, who: str, t: int | None = None, channels: int | None = None
    ) -> None:
        """Raise a clear ``ValueError`` unless ``x`` is a full input (``t`` steps and
        ``channels`` channels when given)."""

    @abstractmethod
    def check_active_input(
        self, x_active: Tensor, k: int, who: str, t: int | None, channels: int
    ) -> None:
        """Raise a clear ``ValueError`` unless ``x_active`` is what :meth:`gather` gives
        for ``k`` active sensors."""

    @abstractmethod
    def gather(self, x: Tensor, index: Tensor) -> Tensor:
        """The active input of the sensors ``index`` ``[K]`` from a full input ``x``."""

    @abstractmethod
    def to_stream(self, x: Tensor) -> Tensor:
        """Stream morph: a full input -> ``[B, N, F]``, one row per sensor."""

    @abstractmethod
    def from_stream(self, s: Tensor, t: int, channels: int) -> Tensor:
        """The inverse of :meth:`to_stream` for ``t`` steps of ``channels`` channels."""

    @abstractmethod
    def active_stream(self, x_active: Tensor, channels: int) -> tuple[Tensor, int]:
        """An active input -> ``([B, K, F]`` streams of the active sensors, its steps T)."""

    @abstractmethod
    def gate_input(self, x: Tensor, gate: Tensor) -> Tensor:
        """``x`` with every value of sensor j multiplied by ``gate[j]``."""

    def hold_first(self, x: Tensor, sensors: Tensor, channels: int) -> Tensor:
        """Full inputs ``x [B, T, ...]`` with the first ``channels`` (the data; calendar
        channels after them stay) of the sensors ``sensors`` held at the window's first
        step at every step: what a stuck sensor sends."""
        gate = torch.zeros(self.num_sensors, dtype=x.dtype, device=x.device)
        gate[sensors.to(x.device)] = 1.0
        held = self.cells(self.gate_input(torch.ones_like(x[:, :1]), gate)).clone()
        held[..., channels:] = 0.0
        held = self.from_cells(held, x[:, :1])
        return x * (1 - held) + x[:, :1] * held

    # ---------------------------------------------------------------- evaluation
    def metric_stream(self, t_out: int, target_range: Callable[[], float]) -> StreamingMetrics:
        """An empty accumulator of this space's whole-field metrics of ``[B, t_out, ...]``
        forecasts in original units; ``target_range()`` gives the targets' max - min over
        the split, for metrics that scale by it (``metrics_need_range``)."""
        return StreamingMetrics(t_out)

    def metrics(self, pred: Tensor, target: Tensor) -> dict[str, Any]:
        """Whole-field metrics of forecasts in original units, all windows at once."""
        acc = self.metric_stream(target.shape[1], lambda: _finite_range(target))
        acc.update(pred, target)
        return acc.result()

    def kept_cells(self, index: Tensor, step: Sequence[int]) -> Tensor:
        """``step``-shaped bool (one step of a forecast: ``[N, C]``, ``[C, H, W]``): True on
        the values of the sensors ``index``, which a compacted model keeps on."""
        gate = torch.zeros(self.num_sensors)
        gate[index.cpu()] = 1.0
        return self.gate_input(torch.ones(1, 1, *step), gate)[0, 0] != 0

    def sensor_of_cells(self, step: Sequence[int]) -> Tensor:
        """``step``-shaped int64: the sensor number of every value of one step of a
        forecast (for per-sensor scores)."""
        gate = torch.arange(1, self.num_sensors + 1, dtype=torch.float64)
        number = self.gate_input(torch.ones(1, 1, *step, dtype=torch.float64), gate)[0, 0]
        return (number - 1).round().to(torch.int64)

    @abstractmethod
    def cells(self, x: Tensor) -> Tensor:
        """``[B, T, M, C]``: the values as M independent series (sensors or pixels), the
        view the per-series baselines fit on."""

    @abstractmethod
    def from_cells(self, y: Tensor, like: Tensor) -> Tensor:
        """The inverse of :meth:`cells`, shaped like the windows ``like``."""

    # ---------------------------------------------------------------- nearness
    NEARNESS: ClassVar[tuple[str, ...]] = ("auto",)  # what :meth:`candidates` can go by

    @abstractmethod
    def candidates(self, length: int, by: str = "auto") -> tuple[np.ndarray, np.ndarray]:
        """``(index [N, L] int64, distance [N, L] float32)``: every sensor's ``L = min(
        length, N)`` nearest sensors, itself first, -1 (distance inf) padding those it
        cannot reach; ``by`` one of :attr:`NEARNESS`. Computed in O(N L) memory."""

    def check_nearness(self, by: str) -> str:
        if by not in self.NEARNESS:
            raise ValueError(
                f"nearness {by!r} is not one of {', '.join(self.NEARNESS)} for {self.kind} data"
            )
        return by

    # ---------------------------------------------------------------- artifacts
    @abstractmethod
    def state(self) -> dict[str, Any]:
        """What rebuilds this space (plain types and tensors: ``weights_only``-loadable)."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict[str, Any]) -> SensorSpace: ...

    def check_matches(self, other: SensorSpace) -> None:
        """Raise a clear ``ValueError`` unless ``other`` (a data set's space) has the
        layout this space (a checkpoint's) was trained on."""
        if other.kind != self.kind:
            raise ValueError(
                f"the checkpoint holds a model for {self.kind} data but the data is "
                f"{other.kind} data"
            )

    def metrics_fields(self) -> dict[str, Any]:
        """Extra fields of ``metrics.json`` that describe the layout."""
        return {}

    def notes(self, scores: dict[str, Any]) -> list[str]:
        """Paragraphs for ``report.md`` that explain the layout (``scores``: the dense
        model's test metrics, which hold what the space's metrics were scaled by)."""
        return []

    @abstractmethod
    def picture(
        self,
        path: str | os.PathLike,
        active: np.ndarray,
        theta: np.ndarray,
        title: str,
        gain: np.ndarray | None = None,
        gain_label: str | None = None,
    ) -> None:
        """Write ``sensors.png``: the map of kept sensors (shaded by theta) and dropped
        ones (shaded by ``gain [N]`` when given: their switch-on gain, or what
        ``gain_label`` names, such as their forecast error)."""

    # ---------------------------------------------------------------- serving
    @abstractmethod
    def serving_module(
        self, model: nn.Module, index: Tensor, mean: Tensor, std: Tensor, full: bool = False
    ) -> nn.Module:
        """``model`` wrapped to take the served input of the sensors ``index`` and return
        the whole field, both in original units (normalisation folded in). ``model``
        takes the normalised active input, or with ``full`` the whole normalised input."""

    @abstractmethod
    def serving_input(self, x: Tensor, index: Tensor) -> Tensor:
        """What the served model of :meth:`serving_module` takes, cut from full inputs
        ``x`` in original units."""

    @abstractmethod
    def sidecar(self, index: Tensor, t_in: int, t_out: int, channels: int) -> dict[str, Any]:
        """The layout fields of an exported model's sidecar (``kind``, the ``input`` /
        ``output`` shapes, and whatever else ``dynst predict`` needs)."""


def _finite_range(target: Tensor) -> float:
    """max - min of the non-NaN entries of ``target``."""
    seen = target[~target.isnan()]
    if seen.numel() == 0:
        raise ValueError("no valid entries: every target is NaN")
    return float(seen.max() - seen.min())
