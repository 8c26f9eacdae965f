"""``GraphReadout``: what every one of the N sensors learns from itself (if on) and from
its active neighbours, and its compacted counterpart ``CompactGraphReadout``, which
reaches all N sensors from the K active ones over the bipartite graph."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from .. import ops
from ..graph import CSRGraph
from .active_graph import ActiveGraph


class ReadoutTerms(NamedTuple):
    """Per-target read-out terms, all over the N sensors."""

    self_term: Tensor  # [B, N, R]: g_i r_i (0 where sensor i is off)
    neighbours: Tensor  # [B, N, R]: sum_j A_ij g_j r_j
    degree: Tensor  # [1, N, 1]: sum_j A_ij g_j
    active: Tensor  # [1, N, 1]: 1 where g_i != 0
    own: tuple[Tensor, ...] = ()  # g_i x_i of each further per-sensor x given


class GraphReadout(nn.Module):
    """Read-out to all N sensors (no parameters): from messages ``r [B, N, R]`` and
    ``gate [N]``, the :class:`ReadoutTerms` a head turns into every sensor's forecast, so
    that switched-off sensors are forecast from their active neighbours. Each sensor's
    own terms (of ``r`` and of any further per-sensor tensors ``own [B, N, *]``, such as a
    skip connection) are gated once, like its messages."""

    def __init__(self, graph: CSRGraph) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, r: Tensor, gate: Tensor, *own: Tensor) -> ReadoutTerms:
        graph = self.graph.on(r.device)
        g = gate[None, :, None]
        neighbours = ops.gated_spmm(graph, r, gate)
        degree = ops.gated_spmm(graph, r.new_ones(1, graph.num_rows, 1), gate)
        active = (gate != 0).to(r.dtype)[None, :, None]
        return ReadoutTerms(g * r, neighbours, degree, active, tuple(g * x for x in own))

    def compact(self, active: ActiveGraph) -> CompactGraphReadout:
        return CompactGraphReadout(active)


class CompactGraphReadout(nn.Module):
    """:class:`GraphReadout` from the K active sensors: ``r [B, K, R]`` -> the same
    :class:`ReadoutTerms` over all N sensors (neighbour sums over the bipartite graph,
    own terms scattered back, degrees and the active flags computed once)."""

    def __init__(self, active: ActiveGraph) -> None:
        super().__init__()
        self.active_graph = active
        _, readout = active.on(active.index.device)
        k = active.num_active
        ones = active.gate.new_ones(1, k, 1)
        self.register_buffer("index", active.index)
        self.register_buffer("gate", active.gate)
        self.register_buffer("degree", ops.gated_spmm(readout, ones, active.gate))
        flags = active.gate.new_zeros(active.num_sensors)
        flags[active.index] = 1.0
        self.register_buffer("active", flags[None, :, None])

    def forward(self, r: Tensor, *own: Tensor, gate: Tensor | None = None) -> ReadoutTerms:
        """``r [B, K, R]`` and further per-sensor ``own [B, K, *]`` of the active sensors;
        ``gate [K]`` this call's active gates (default: the compacted ones, whose degrees
        and flags are computed once; others' are computed here)."""
        _, readout = self.active_graph.on(r.device)
        n = self.active_graph.num_sensors
        degree, active = self.degree, self.active
        if gate is None:
            gate = self.gate.to(r.dtype)
        else:
            degree = ops.gated_spmm(readout, r.new_ones(1, gate.numel(), 1), gate)
            active = ops.expand((gate != 0).to(r.dtype)[None, :, None], self.index, n)
        g = gate[None, :, None]
        self_term = ops.expand(g * r, self.index, n)
        own_terms = tuple(ops.expand(g * x, self.index, n) for x in own)
        neighbours = ops.gated_spmm(readout, r, gate)
        return ReadoutTerms(self_term, neighbours, degree, active, own_terms)
