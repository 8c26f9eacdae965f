"""An STGCN-style graph forecaster in gated form (DESIGN.md section 5).

Layout inside: ``[B, N, T, H]`` (sensors on dim 1, time and hidden features after),
so that graph message passing folds time and features into one axis and one
``gated_spmm`` call serves a whole window.

Gating: the data of sensor ``j`` leaves node ``j`` only through messages (and its
own read-out term), and every such exit is multiplied by ``g_j`` *once*. A node's
own temporal stream is not re-gated. Hence, for ``g_j = 0``, sensor j influences
nothing (the equivalence rule), while ``dL/dg_j`` is the first-order gain of letting
j's processed history out again, computed from j's own data. (Scaling the input by
``g_j`` *and* gating its messages would make that derivative vanish at 0: the
product of two gates has zero slope there.)

Compacted form: the node streams run on the K active sensors over the induced
sub-graph; the read-out reaches all N sensors over the bipartite graph A -> N.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import ops
from ..graph import CSRGraph, normalize_adjacency


class TemporalGLU(nn.Module):
    """Gated temporal convolution over T, per node, with a stride:
    ``[B, N, T, H] -> [B, N, T', H]``, ``T' = (max(T, k) - k) // stride + 1``."""

    def __init__(self, hidden: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.proj = nn.Linear(kernel * hidden, 2 * hidden)
        self.norm = nn.LayerNorm(hidden)

    def out_len(self, t: int) -> int:
        return (max(t, self.kernel) - self.kernel) // self.stride + 1

    def forward(self, h: Tensor) -> Tensor:
        k, s = self.kernel, self.stride
        if h.shape[2] < k:
            h = torch.nn.functional.pad(h, (0, 0, k - h.shape[2], 0))
        span = s * (self.out_len(h.shape[2]) - 1) + 1
        taps = torch.cat([h[:, :, i : i + span : s] for i in range(k)], dim=-1)
        a, b = self.proj(taps).chunk(2, dim=-1)
        return self.norm(h[:, :, k - 1 : k - 1 + span : s] + a * torch.sigmoid(b))


class GatedGraphConv(nn.Module):
    """``h_i <- LN(h_i + relu(W_s h_i + sum_j A_ij g_j W_n h_j))`` on ``[B, N, T, H]``."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.self_lin = nn.Linear(hidden, hidden)
        self.nbr_lin = nn.Linear(hidden, hidden, bias=False)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h: Tensor, graph: CSRGraph, gate: Tensor) -> Tensor:
        b, n, t, hid = h.shape
        msg = self.nbr_lin(h).reshape(b, n, t * hid)
        agg = ops.gated_spmm(graph, msg, gate).reshape(b, graph.num_rows, t, hid)
        return self.norm(h + torch.relu(self.self_lin(h) + agg))


class GatedSTGCN(nn.Module):
    """STGCN-style forecaster: temporal GLU / gated graph conv blocks and a graph read-out.

    Args:
        graph: ``CSRGraph`` N x N adjacency (weights >= 0; self-loops are ignored).
        t_in, t_out: window lengths in steps. channels: C of the input and output.
        hidden: H, the node stream width. blocks: number of (temporal GLU, graph conv) blocks;
            each GLU has kernel ``kernel`` and shortens time by ``stride``.
        readout: width R of what each node sends to the read-out.
        embed: width of the learned per-sensor embedding.

    ``forward(x[B, t_in, N, C], gate[N] | None) -> [B, t_out, N, C]``, the whole field.
    """

    def __init__(
        self,
        graph: CSRGraph,
        t_in: int,
        t_out: int,
        channels: int = 1,
        hidden: int = 32,
        blocks: int = 2,
        kernel: int = 3,
        stride: int = 2,
        readout: int = 32,
        embed: int = 8,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if graph.num_rows != graph.num_cols:
            raise ValueError(f"GatedSTGCN: the graph must be square, got shape {graph.shape}")
        self.num_sensors = graph.num_rows
        self.t_in, self.t_out, self.channels = t_in, t_out, channels
        self.graph = normalize_adjacency(graph.to(dtype=torch.float32))
        self.node_embed = nn.Parameter(torch.randn(self.num_sensors, embed) * 0.1)
        self.inp = nn.Linear(channels + embed, hidden)
        self.layers = nn.ModuleList()
        t = t_in
        for _ in range(blocks):
            glu = TemporalGLU(hidden, kernel, stride)
            t = glu.out_len(t)
            self.layers.append(glu)
            self.layers.append(GatedGraphConv(hidden))
        self.t_last = t
        self.to_readout = nn.Linear(self.t_last * hidden, readout)
        self.skip = nn.Linear(t_in * channels, t_out * channels)
        self.head = nn.Sequential(
            nn.Linear(2 * readout + embed + 2, 2 * readout),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(2 * readout, t_out * channels),
        )

    # ---------------------------------------------------------------- shared parts
    def encode(self, x: Tensor, embed: Tensor, graph: CSRGraph, gate: Tensor) -> Tensor:
        """Node streams: ``x[B, T, M, C]`` -> read-out messages ``[B, M, R]`` (ungated)."""
        b, t, m, c = x.shape
        h = x.permute(0, 2, 1, 3)
        h = torch.cat([h, embed[None, :, None, :].expand(b, m, t, embed.shape[1])], dim=-1)
        h = self.inp(h)
        for layer in self.layers:
            h = layer(h, graph, gate) if isinstance(layer, GatedGraphConv) else layer(h)
        return self.to_readout(h.reshape(b, m, -1))

    def read_out(
        self,
        r_self: Tensor,
        skip_self: Tensor,
        nbr: Tensor,
        deg: Tensor,
        active: Tensor,
        b: int,
    ) -> Tensor:
        """Combine per-target terms (all ``[B, N, *]``, self terms already gated)."""
        n = self.num_sensors
        feats = torch.cat(
            [
                r_self,
                nbr,
                self.node_embed[None].expand(b, n, -1),
                deg.expand(b, n, 1),
                active.expand(b, n, 1),
            ],
            dim=-1,
        )
        out = self.head(feats) + skip_self
        return out.reshape(b, n, self.t_out, self.channels).permute(0, 2, 1, 3)

    def _check_x(self, x: Tensor, n: int, who: str) -> None:
        want = f"[B, {self.t_in}, {n}, {self.channels}]"
        if (
            x.dim() != 4
            or x.shape[1] != self.t_in
            or x.shape[2] != n
            or x.shape[3] != self.channels
        ):
            raise ValueError(f"{who}: x must have shape {want}, got {tuple(x.shape)}")

    # ---------------------------------------------------------------- gated form
    def forward(self, x: Tensor, gate: Tensor | None = None) -> Tensor:
        n = self.num_sensors
        self._check_x(x, n, "GatedSTGCN")
        if gate is None:
            gate = x.new_ones(n)
        if gate.shape != (n,):
            raise ValueError(f"GatedSTGCN: gate must have shape [{n}], got {tuple(gate.shape)}")
        gate = gate.to(x.dtype)
        graph = self._graph_on(x.device)
        b = x.shape[0]
        r = self.encode(x, self.node_embed, graph, gate)
        g = gate[None, :, None]
        skip = self.skip(x.permute(0, 2, 1, 3).reshape(b, n, -1))
        nbr = ops.gated_spmm(graph, r, gate)
        deg = ops.gated_spmm(graph, x.new_ones(1, n, 1), gate)
        active = (gate != 0).to(x.dtype)[None, :, None]
        return self.read_out(g * r, g * skip, nbr, deg, active, b)

    def compact(self, active_index: Tensor, theta: Tensor | None = None) -> CompactSTGCN:
        """The deployed model on the active sensors only; shares this model's parameters.

        ``theta`` is the full ``[N]`` score vector (ones if None); only ``theta[active_index]``
        is used.
        """
        return CompactSTGCN(self, active_index, theta)

    def _graph_on(self, device: torch.device) -> CSRGraph:
        if self.graph.device != device:
            self.graph = self.graph.to(device)
        return self.graph


class CompactSTGCN(nn.Module):
    """``GatedSTGCN`` restricted to K active sensors: ``x[B, T, K, C] -> [B, T_out, N, C]``.

    Node streams run on the induced sub-graph of the active set (cost grows with K and
    its edges); the read-out reaches all N sensors over the bipartite graph.
    """

    def __init__(self, parent: GatedSTGCN, active_index: Tensor, theta: Tensor | None) -> None:
        super().__init__()
        n = parent.num_sensors
        # Everything is built on the device of the parent's graph (CUDA once the parent
        # ran there), so that the graph ops run their kernels for that device.
        device = parent.graph.device
        index = torch.as_tensor(active_index, dtype=torch.int64).reshape(-1)
        index = ops._checks.check_index(index.to(device), n, "compact")
        if theta is None:
            theta = torch.ones(n)
        if theta.shape != (n,):
            raise ValueError(f"compact: theta must have shape [{n}], got {tuple(theta.shape)}")
        self.parent = parent
        self.num_active = index.numel()
        self.register_buffer("index", index)
        self.register_buffer("gate", theta.detach().to(device=device, dtype=torch.float32)[index])
        active = torch.zeros(n, device=device)
        active[index] = 1.0
        self.register_buffer("active", active[None, :, None])
        self.subgraph = ops.induce_subgraph(parent.graph, index)
        self.readout_graph = ops.bipartite(parent.graph, index)
        ones = torch.ones(1, self.num_active, 1, device=device)
        deg = ops.gated_spmm(self.readout_graph, ones, self.gate)
        self.register_buffer("deg", deg)

    def gather_input(self, x: Tensor) -> Tensor:
        """The full input ``[B, T, N, C]`` -> the active sensors' ``[B, T, K, C]``."""
        self.parent._check_x(x, self.parent.num_sensors, "CompactSTGCN")
        return x[:, :, self.index]

    def forward(self, x_active: Tensor) -> Tensor:
        p = self.parent
        p._check_x(x_active, self.num_active, "CompactSTGCN")
        b, n, k = x_active.shape[0], p.num_sensors, self.num_active
        gate = self.gate.to(x_active.dtype)
        if self.subgraph.device != x_active.device:
            self.subgraph = self.subgraph.to(x_active.device)
            self.readout_graph = self.readout_graph.to(x_active.device)
        embed = p.node_embed[self.index]
        r = p.encode(x_active, embed, self.subgraph, gate)
        g = gate[None, :, None]
        skip = p.skip(x_active.permute(0, 2, 1, 3).reshape(b, k, -1))
        r_self = ops.expand(g * r, self.index, n)
        skip_self = ops.expand(g * skip, self.index, n)
        nbr = ops.gated_spmm(self.readout_graph, r, gate)
        return p.read_out(r_self, skip_self, nbr, self.deg, self.active, b)
