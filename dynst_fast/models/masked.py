"""``InputMasked``: gate any graph forecaster by multiplying its input by the gate.

It works with every model whose forward takes ``x[B, T, N, C]`` and returns the
whole field, and gives **no speedup**: the compacted form scatters the K active
sensors back into a zero-filled ``[B, T, N, C]`` tensor and runs the full model.
Use it for accuracy studies; use a gated backbone (``GatedSTGCN``) for speed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import ops
from ..morph import graph_to_stream, stream_to_graph


class InputMasked(nn.Module):
    """``forward(x[B, T, N, C], gate[N] | None) = model(x * gate)``."""

    gives_speedup = False

    def __init__(self, model: nn.Module, num_sensors: int) -> None:
        super().__init__()
        self.model = model
        self.num_sensors = num_sensors

    def forward(self, x: Tensor, gate: Tensor | None = None) -> Tensor:
        n = self.num_sensors
        if x.dim() != 4 or x.shape[2] != n:
            raise ValueError(f"InputMasked: x must have shape [B, T, {n}, C], got {tuple(x.shape)}")
        if gate is None:
            return self.model(x)
        if gate.shape != (n,):
            raise ValueError(f"InputMasked: gate must have shape [{n}], got {tuple(gate.shape)}")
        return self.model(x * gate.to(x.dtype)[None, None, :, None])

    def compact(self, active_index: Tensor, theta: Tensor | None = None) -> CompactInputMasked:
        return CompactInputMasked(self, active_index, theta)


class CompactInputMasked(nn.Module):
    """``x[B, T, K, C]`` -> the wrapped model's whole-field output (no speedup)."""

    gives_speedup = False

    def __init__(self, parent: InputMasked, active_index: Tensor, theta: Tensor | None) -> None:
        super().__init__()
        n = parent.num_sensors
        index = ops._checks.check_index(torch.as_tensor(active_index).reshape(-1), n, "compact")
        theta = torch.ones(n) if theta is None else theta.detach()
        if theta.shape != (n,):
            raise ValueError(f"compact: theta must have shape [{n}], got {tuple(theta.shape)}")
        self.parent = parent
        self.register_buffer("index", index)
        self.register_buffer("gate", theta.to(torch.float32)[index])

    def forward(self, x_active: Tensor) -> Tensor:
        t, c = x_active.shape[1], x_active.shape[3]
        scaled = graph_to_stream(x_active) * self.gate.to(x_active.dtype)[None, :, None]
        full = ops.expand(scaled, self.index, self.parent.num_sensors)
        return self.parent.model(stream_to_graph(full, t, c))
