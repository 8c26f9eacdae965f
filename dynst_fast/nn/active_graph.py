"""``ActiveGraph``: what the compacted graph blocks share about the active sensors."""

from __future__ import annotations

import torch
from torch import Tensor

from .. import ops
from ..graph import CSRGraph


class ActiveGraph:
    """The K active sensors of an N-sensor graph: their indices, their gates, the induced
    subgraph ``A[A][:, A]`` their streams pass messages over and the bipartite read-out
    graph ``A[:, A]`` from them to all N sensors, each built once (with the C++ / CUDA
    graph ops) and shared by every compacted block of a model.

    Args:
        graph: the N x N graph the gated blocks use. index: ``[K]`` int64 active sensors
            (checked by the compacted model). gate: ``[K]`` their gates ``theta[index]``.
    """

    def __init__(self, graph: CSRGraph, index: Tensor, gate: Tensor) -> None:
        graph = graph.on(index.device)
        self.num_sensors = graph.num_rows
        self.index, self.gate = index, gate
        self.subgraph = ops.induce_subgraph(graph, index)
        self.readout_graph = ops.bipartite(graph, index)

    @property
    def num_active(self) -> int:
        return int(self.index.numel())

    def on(self, device: torch.device) -> tuple[CSRGraph, CSRGraph]:
        """``(subgraph, readout_graph)`` on ``device``."""
        return self.subgraph.on(device), self.readout_graph.on(device)
