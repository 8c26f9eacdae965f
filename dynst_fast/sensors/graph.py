"""Graph sensors: the N nodes of a sensor network, inputs ``[B, T, N, C]``."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from .. import ops
from ..graph import CSRGraph, as_graph
from ..morph import graph_to_stream, stream_to_graph
from .base import SensorSpace


def select_sensors(x: Tensor, index: Tensor) -> Tensor:
    """``x[B, T, N, C]`` -> ``x[:, :, index]`` (``[B, T, K, C]``): the input of a compacted model.

    Runs ``dynst_fast.ops.compact`` (one gather pass, C++ on CPU, Triton on CUDA) on the
    ``[B*T, N, C]`` view; index is checked (int64/int32, distinct, in range).
    """
    if x.dim() != 4:
        raise ValueError(f"select_sensors: expected [B, T, N, C], got shape {tuple(x.shape)}")
    b, t, n, c = x.shape
    index = torch.as_tensor(index, device=x.device).reshape(-1)
    out = ops.compact(x.reshape(b * t, n, c), x.new_ones(n), index)
    return out.reshape(b, t, index.numel(), c)


class GraphSensors(SensorSpace):
    """The nodes of a sensor network, with its adjacency (row = target, col = source).

    Args:
        graph: the N x N ``CSRGraph``. ids: the N sensor ids, input order.
        planted: sorted planted sensor indices (synthetic data), or None.
        coords: ``[N, 2]`` positions for the picture, (lat, lon) if ``geographic``.
    """

    kind: ClassVar[str] = "graph"
    data_description: ClassVar[str] = "graph"
    noun: ClassVar[str] = "sensors"

    def __init__(
        self,
        graph: CSRGraph,
        ids: list[str] | None = None,
        planted: np.ndarray | None = None,
        coords: np.ndarray | None = None,
        geographic: bool = True,
    ) -> None:
        graph = as_graph(graph, len(ids) if ids is not None else None, "GraphSensors")
        if graph.num_rows != graph.num_cols:
            raise ValueError(f"GraphSensors: the graph must be square, got shape {graph.shape}")
        n = graph.num_rows
        ids = [str(i) for i in range(n)] if ids is None else list(ids)
        if len(ids) != n:
            raise ValueError(f"GraphSensors: {len(ids)} ids for a graph of {n} sensors")
        super().__init__(ids, planted)
        self.graph = graph
        self.coords, self.geographic = coords, geographic

    # ---------------------------------------------------------------- inputs
    def check_input(self, x, who, t=None, channels=None):
        _check_graph_input(x, self.num_sensors, who, t, channels)

    def check_active_input(self, x_active, k, who, t, channels):
        _check_graph_input(x_active, k, who, t, channels)

    def gather(self, x: Tensor, index: Tensor) -> Tensor:
        return select_sensors(x, index)

    def to_stream(self, x: Tensor) -> Tensor:
        return graph_to_stream(x)

    def from_stream(self, s: Tensor, t: int, channels: int) -> Tensor:
        return stream_to_graph(s, t, channels)

    def active_stream(self, x_active: Tensor, channels: int) -> tuple[Tensor, int]:
        return graph_to_stream(x_active), int(x_active.shape[1])

    def gate_input(self, x: Tensor, gate: Tensor) -> Tensor:
        return x * gate.to(x.dtype)[None, None, :, None]

    # ---------------------------------------------------------------- evaluation
    def cells(self, x: Tensor) -> Tensor:
        return x

    def from_cells(self, y: Tensor, like: Tensor) -> Tensor:
        return y

    # ---------------------------------------------------------------- nearness
    NEARNESS: ClassVar[tuple[str, ...]] = ("auto", "graph", "geo")

    def candidates(self, length: int, by: str = "auto") -> tuple[np.ndarray, np.ndarray]:
        """By shortest path on the graph (``graph``), or by distance between the sensors'
        coordinates (``geo``: km for latitude / longitude); ``auto``: ``geo`` where the
        data has coordinates, else ``graph``."""
        from .nearness import nearest_by_coords, nearest_on_graph, planar_km

        by = self.check_nearness(by)
        if by == "auto":
            by = "geo" if self.coords is not None else "graph"
        if by == "graph":
            return nearest_on_graph(self.graph, length)
        if self.coords is None:
            raise ValueError("nearness 'geo' needs the sensors' coordinates (locations.csv)")
        coords = np.asarray(self.coords, dtype=np.float64)
        points = planar_km(coords) if self.geographic else coords
        return nearest_by_coords(points, length)

    # ---------------------------------------------------------------- artifacts
    def state(self) -> dict[str, Any]:
        out = {"kind": self.kind, "ids": list(self.ids), "graph": self.graph.state_dict(),
               **self.calendar_state()}  # fmt: skip
        if self.coords is not None:
            out["coords"] = torch.as_tensor(np.asarray(self.coords, dtype=np.float64))
            out["geographic"] = bool(self.geographic)
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> GraphSensors:
        coords = state.get("coords")
        return cls(
            CSRGraph.from_state_dict(state["graph"]),
            list(state["ids"]),
            coords=None if coords is None else np.asarray(coords, dtype=np.float64),
            geographic=bool(state.get("geographic", True)),
        ).restore_calendar(state)

    def check_matches(self, other: SensorSpace) -> None:
        super().check_matches(other)
        if other.num_sensors != self.num_sensors:
            raise ValueError(
                f"the checkpoint's model has {self.num_sensors} graph sensors; the data "
                "does not match"
            )

    def picture(
        self, path: str | os.PathLike, active, theta, title: str, gain=None,
        gain_label: str | None = None,
    ) -> None:  # fmt: skip
        from ..plot import draw_sensors

        draw_sensors(
            path,
            self.graph,
            active,
            coords=self.coords,
            planted=self.planted,
            theta=theta,
            geographic=self.geographic,
            title=title,
            gain=gain,
            **({} if gain_label is None else {"gain_label": gain_label}),
        )

    # ---------------------------------------------------------------- serving
    def serving_module(self, model, index, mean, std, full=False) -> nn.Module:
        mean, std = mean.to(torch.float32), std.to(torch.float32)
        f = self.calendar_features  # calendar channels pass through unscaled
        in_mean = torch.cat([mean[index], mean.new_zeros(index.numel(), f)], -1)
        in_std = torch.cat([std[index], std.new_ones(index.numel(), f)], -1)
        return GraphServing(model, in_mean, in_std, mean, std)

    def serving_input(self, x: Tensor, index: Tensor) -> Tensor:
        return x[:, :, index].contiguous()

    def sidecar(self, index, t_in, t_out, channels) -> dict[str, Any]:
        k, n = int(index.numel()), self.num_sensors
        return {
            "kind": "graph",
            "input": {"shape": ["batch", t_in, k, channels + self.calendar_features]},
            "output": {"shape": ["batch", t_out, n, channels]},
            **self.calendar_state(),
        }


class GraphServing(nn.Module):
    """Original units in, original units out, around a compacted (or dense) graph model.

    ``forward(x[B, T_in, K, C], alive[K] | None) -> [B, T_out, N, C]``: ``x`` is normalised with the
    statistics of its K sensors, run through ``model``, and the whole-field forecast
    de-normalised with those of all N sensors.
    """

    def __init__(
        self, model: nn.Module, in_mean: Tensor, in_std: Tensor, mean: Tensor, std: Tensor
    ) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("in_mean", in_mean.to(torch.float32))
        self.register_buffer("in_std", in_std.to(torch.float32))
        self.register_buffer("out_mean", mean.to(torch.float32))
        self.register_buffer("out_std", std.to(torch.float32))

    def forward(self, x: Tensor, alive: Tensor | None = None) -> Tensor:
        """``alive [K]``: 1 for a reporting sensor, 0 for a failed one (if the model takes it)."""
        z = (x - self.in_mean) / self.in_std
        y = self.model(z) if alive is None else self.model(z, alive)
        return y * self.out_std + self.out_mean


def _check_graph_input(x: Tensor, n: int, who: str, t: int | None, c: int | None) -> None:
    want = f"[B, {'T' if t is None else t}, {n}, {'C' if c is None else c}]"
    if (
        x.dim() != 4
        or x.shape[2] != n
        or (t is not None and x.shape[1] != t)
        or (c is not None and x.shape[3] != c)
    ):
        raise ValueError(f"{who}: x must have shape {want}, got {tuple(x.shape)}")
