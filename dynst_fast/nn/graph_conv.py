"""``GatedGraphConv``, a gated graph convolution, and its compacted counterpart
``CompactGraphConv``, the same layer over the induced subgraph of the active sensors."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import ops
from ..graph import CSRGraph, as_graph
from .active_graph import ActiveGraph


class GatedGraphConv(nn.Module):
    """``h_i <- LN(h_i + relu(W_s h_i + sum_j A_ij g_j W_n h_j))`` on ``h [B, N, ..., H]``.

    Sensor j's data leaves node j only through its messages, each multiplied by ``g_j``
    once (DESIGN.md section 5): with ``g_j = 0`` it reaches no other node. Message passing
    folds every axis between the sensors and the features into one, so one
    ``ops.gated_spmm`` serves a whole window.

    Args:
        graph: the N x N ``CSRGraph`` (row = target, col = source), shared with the
            model's other blocks. hidden: H.
    """

    def __init__(self, graph: CSRGraph, hidden: int) -> None:
        super().__init__()
        self.graph = as_graph(graph, who="GatedGraphConv")
        self.self_lin = nn.Linear(hidden, hidden)
        self.nbr_lin = nn.Linear(hidden, hidden, bias=False)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h: Tensor, gate: Tensor) -> Tensor:
        """``h [B, N, ..., H]``, ``gate [N]`` -> ``[B, N, ..., H]``."""
        return self.propagate(h, self.graph.on(h.device), gate)

    def propagate(self, h: Tensor, graph: CSRGraph, gate: Tensor) -> Tensor:
        """The layer over any graph whose sources are the rows of ``h``."""
        b, m = h.shape[:2]
        msg = self.nbr_lin(h).reshape(b, m, -1)
        agg = ops.gated_spmm(graph, msg, gate).reshape(b, graph.num_rows, *h.shape[2:])
        return self.norm(h + torch.relu(self.self_lin(h) + agg))

    def compact(self, active: ActiveGraph) -> CompactGraphConv:
        return CompactGraphConv(self, active)


class CompactGraphConv(nn.Module):
    """:class:`GatedGraphConv` on the K active sensors: ``h [B, K, ..., H] -> [B, K, ..., H]``,
    messages over the induced subgraph with the active sensors' gates (cost ~ K and the
    subgraph's edges). Shares the layer's parameters."""

    def __init__(self, conv: GatedGraphConv, active: ActiveGraph) -> None:
        super().__init__()
        self.conv, self.active = conv, active
        self.register_buffer("gate", active.gate)

    def forward(self, h: Tensor, gate: Tensor | None = None) -> Tensor:
        """``gate [K]``: this call's active gates (default: the compacted ones)."""
        subgraph, _ = self.active.on(h.device)
        gate = self.gate.to(h.dtype) if gate is None else gate
        return self.conv.propagate(h, subgraph, gate)
