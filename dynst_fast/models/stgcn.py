"""An STGCN-style graph forecaster in gated form (DESIGN.md section 5), built from
``dynst_fast.nn``.

Layout inside: ``[B, N, T, H]`` (sensors on dim 1, time and hidden features after), so
that graph message passing folds time and features into one axis and one
``gated_spmm`` call serves a whole window.

Gating: the data of sensor ``j`` leaves node ``j`` only through messages (and its own
read-out term), and every such exit is multiplied by ``g_j`` *once*. A node's own
temporal stream is not re-gated. Hence, for ``g_j = 0``, sensor j influences nothing
(the equivalence rule), while ``dL/dg_j`` is the first-order gain of letting j's
processed history out again, computed from j's own data. (Scaling the input by ``g_j``
*and* gating its messages would make that derivative vanish at 0: the product of two
gates has zero slope there.)

Compacted form: the node streams run on the K active sensors over the induced
sub-graph; the read-out reaches all N sensors over the bipartite graph A -> N.

With ``attention`` (the default), every sensor also reads its m nearest active sensors by attention
(``nn.NeighbourReadout``: nearness from the sensor space, by path on the graph or by
distance between the sensors' coordinates), so that a switched-off sensor is forecast
from the sensors near it even where no road links them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..graph import normalize_adjacency
from ..nn import (
    ActiveGraph,
    GatedGraphConv,
    GraphReadout,
    NeighbourReadout,
    ReadoutTerms,
    TemporalGLU,
)
from ..sensors import GraphSensors
from .base import CompactBackbone, GatedBackbone
from .registry import register_backbone


@dataclass
class STGCNOptions:
    """``hidden``: H, the node stream width. ``blocks``: (temporal GLU, graph conv) blocks;
    each GLU has kernel ``kernel`` and shortens time by ``stride``. ``readout``: width R of
    what each node sends to the read-out. ``embed``: width of the per-sensor embedding.
    ``dropout``: in the head. ``attention``: the read-out by attention over the
    ``neighbours`` nearest active sensors (``heads`` heads), from candidate lists of
    ``candidates`` sensors by ``near`` (``graph``: path length on the graph, the best on
    Los-loop's validation split; ``geo``: distance between coordinates; ``auto``); off, a
    sensor reads only its 1-hop neighbours. ``calendar``: the inputs carry the time of day
    and day of week, where the data has them (they enter the node streams and the
    read-out's queries). Both defaults won on Los-loop's validation split
    (bench/results/readout_attempts.md)."""

    hidden: int = 32
    blocks: int = 2
    kernel: int = 3
    stride: int = 2
    readout: int = 32
    embed: int = 8
    dropout: float = 0.0
    attention: bool = True
    neighbours: int = 8
    heads: int = 4
    candidates: int = 64
    near: str = "graph"
    calendar: bool = True


class GatedSTGCN(GatedBackbone):
    """STGCN-style forecaster: temporal GLU / gated graph conv blocks and a graph read-out.

    Args:
        space: the graph's sensors (``GraphSensors``; weights >= 0, self-loops ignored),
            or a ``CSRGraph`` (its sensors then get the ids ``0..N-1``).
        t_in, t_out, channels: see :class:`GatedBackbone`. The rest: :class:`STGCNOptions`.

    ``forward(x[B, t_in, N, C], gate[N] | None) -> [B, t_out, N, C]``, the whole field.
    """

    def __init__(
        self,
        space,
        t_in: int,
        t_out: int,
        channels: int = 1,
        hidden: int = STGCNOptions.hidden,
        blocks: int = STGCNOptions.blocks,
        kernel: int = STGCNOptions.kernel,
        stride: int = STGCNOptions.stride,
        readout: int = STGCNOptions.readout,
        embed: int = STGCNOptions.embed,
        dropout: float = STGCNOptions.dropout,
        attention: bool = STGCNOptions.attention,
        neighbours: int = STGCNOptions.neighbours,
        heads: int = STGCNOptions.heads,
        candidates: int = STGCNOptions.candidates,
        near: str = STGCNOptions.near,
        calendar: bool = STGCNOptions.calendar,
    ) -> None:
        if not isinstance(space, GraphSensors):
            space = GraphSensors(space)
        super().__init__(space, t_in, t_out, channels)
        n = self.num_sensors
        self.graph = normalize_adjacency(space.graph.to(dtype=torch.float32))
        self.node_embed = nn.Parameter(torch.randn(n, embed) * 0.1)
        self.inp = nn.Linear(self.in_channels + embed, hidden)
        self.layers = nn.ModuleList()
        t = t_in
        for _ in range(blocks):
            glu = TemporalGLU(hidden, kernel, stride)
            t = glu.out_len(t)
            self.layers.append(glu)
            self.layers.append(GatedGraphConv(self.graph, hidden))
        self.t_last = t
        self.to_readout = nn.Linear(self.t_last * hidden, readout)
        self.readout = GraphReadout(self.graph)
        self.skip = nn.Linear(t_in * channels, t_out * channels)
        self.neighbour = None
        if attention:
            cand, dist = space.candidates(candidates, near)
            self.neighbour = NeighbourReadout(
                torch.from_numpy(cand), torch.from_numpy(dist),
                query_dim=embed + space.calendar_features,
                key_dim=readout, width=readout, neighbours=neighbours, heads=heads,
            )  # fmt: skip
        self.head = nn.Sequential(
            nn.Linear((3 if attention else 2) * readout + embed + 2, 2 * readout),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(2 * readout, t_out * channels),
        )

    # ---------------------------------------------------------------- shared parts
    def encode(self, x: Tensor, embed: Tensor, layers, gate: Tensor | None) -> Tensor:
        """Node streams: ``x[B, T, M, C]`` -> read-out messages ``[B, M, R]`` (ungated).

        ``layers`` are this model's blocks (with ``gate [N]``) or their compacted
        counterparts (with ``gate [K]``, or None: the active gates they hold)."""
        b, t, m, c = x.shape
        h = x.permute(0, 2, 1, 3)
        h = torch.cat([h, embed[None, :, None, :].expand(b, m, t, embed.shape[1])], dim=-1)
        h = self.inp(h)
        for layer in layers:
            graph_layer = not isinstance(layer, TemporalGLU)
            h = layer(h, gate) if graph_layer else layer(h)
        return self.to_readout(h.reshape(b, m, -1))

    def skip_of(self, x: Tensor) -> Tensor:
        """Each sensor's direct forecast from its own window: ``[B, M, t_out * C]``."""
        b, _, m, _ = x.shape
        return self.skip(x[..., : self.channels].permute(0, 2, 1, 3).reshape(b, m, -1))

    def query_of(self, x: Tensor) -> Tensor:
        """``[B, N, Q]`` (or ``[N, Q]`` without a calendar): what each sensor asks its
        neighbours with: its embedding, and the calendar of the window's last step where
        the inputs carry one."""
        if not self.space.calendar_features:
            # the parameter itself: a view of it made under no_grad would trip the autograd
            # hooks of module trackers (FlopCounterMode)
            return self.node_embed
        cal = x[:, -1, 0, self.channels :]  # [B, F], the same for every sensor
        b, (n, e) = x.shape[0], self.node_embed.shape
        return torch.cat(
            [self.node_embed[None].expand(b, n, e), cal[:, None].expand(b, n, cal.shape[1])], -1
        )

    def head_out(self, terms: ReadoutTerms, near: Tensor | None = None) -> Tensor:
        """Every sensor's forecast from its read-out terms (``own``: the gated skip), its
        embedding and (``near [B, N, R]``) what it read from its nearest active sensors:
        ``[B, t_out, N, C]``."""
        b, n = terms.self_term.shape[:2]
        parts = [
            terms.self_term,
            terms.neighbours,
            self.node_embed[None].expand(b, n, -1),
            terms.degree.expand(b, n, 1),
            terms.active.expand(b, n, 1),
        ]
        if near is not None:
            parts.insert(2, near)
        feats = torch.cat(parts, dim=-1)
        out = self.head(feats) + terms.own[0]
        return out.reshape(b, n, self.t_out, self.channels).permute(0, 2, 1, 3)

    # ---------------------------------------------------------------- gated form
    def forward(self, x: Tensor, gate: Tensor | None = None) -> Tensor:
        self.check_input(x)
        every = gate is None  # every sensor on: the read-out needs no search
        gate = self.full_gate(gate, x)
        r = self.encode(x, self.node_embed, self.layers, gate)
        near = None
        if self.neighbour is not None:
            near = self.neighbour(self.query_of(x), r, None if every else gate)
        return self.head_out(self.readout(r, gate, self.skip_of(x)), near)

    def compact(self, active_index: Tensor, theta: Tensor | None = None) -> CompactSTGCN:
        return CompactSTGCN(self, active_index, theta)


class CompactSTGCN(CompactBackbone):
    """``GatedSTGCN`` restricted to K active sensors: ``x[B, T, K, C] -> [B, T_out, N, C]``.

    Node streams run on the induced sub-graph of the active set (cost grows with K and
    its edges); the read-out reaches all N sensors over the bipartite graph.
    """

    def __init__(self, parent: GatedSTGCN, active_index: Tensor, theta: Tensor | None) -> None:
        super().__init__(parent, active_index, theta)
        active = ActiveGraph(parent.graph, self.index, self.gate)
        self.subgraph, self.readout_graph = active.subgraph, active.readout_graph
        self.layers = nn.ModuleList(
            layer if isinstance(layer, TemporalGLU) else layer.compact(active)
            for layer in parent.layers
        )
        self.readout = parent.readout.compact(active)
        self.neighbour = None if parent.neighbour is None else parent.neighbour.compact(self.index)

    def forward(self, x_active: Tensor, alive: Tensor | None = None) -> Tensor:
        p = self.parent
        self.check_active_input(x_active)
        gate = None if alive is None else self.gates(alive, x_active)
        r = p.encode(x_active, p.node_embed[self.index], self.layers, gate)
        near = None
        if self.neighbour is not None:
            g = self.gates(None, x_active) if gate is None else gate
            near = self.neighbour(p.query_of(x_active), r, g, alive)
        return p.head_out(self.readout(r, p.skip_of(x_active), gate=gate), near)


@register_backbone(
    "stgcn",
    options=STGCNOptions,
    space="graph",
    width="hidden",
    default=True,
    summary="STGCN-style gated graph model; compacts for real",
    before={"attention": False, "calendar": False},  # runs saved before the read-out study
)
def build_stgcn(space, t_in, t_out, channels, **options) -> GatedSTGCN:
    return GatedSTGCN(space, t_in, t_out, channels, **options)
