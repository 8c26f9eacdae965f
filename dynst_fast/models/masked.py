"""``InputMasked``: gate any forecaster by multiplying its input by the gate.

It works with every model whose forward takes the full input (graphs ``x[B, T, N, C]``;
images ``x[B, T, C, H, W]`` with one gate entry per ``p x p`` patch, given a
:class:`~dynst_fast.morph.PatchGrid`) and returns the whole field, and gives **no
speedup**: the compacted form scatters the K active sensors back into a zero-filled full
input and runs the full model. Use it for accuracy studies; use a gated backbone
(``GatedSTGCN``, ``GatedViT``) for speed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import ops
from ..morph import PatchGrid, gate_to_pixels, graph_to_stream, stream_to_graph, stream_to_image


class InputMasked(nn.Module):
    """``forward(x, gate[N] | None) = model(x * gate)``, the gate broadcast over a graph
    sensor's data or over every pixel of an image patch (``grid`` given)."""

    gives_speedup = False

    def __init__(
        self,
        model: nn.Module,
        num_sensors: int,
        *,
        grid: PatchGrid | None = None,
        channels: int = 1,
    ) -> None:
        super().__init__()
        if grid is not None and grid.num_patches != num_sensors:
            raise ValueError(
                f"InputMasked: num_sensors={num_sensors} but the grid has {grid.num_patches} "
                "patches"
            )
        self.model = model
        self.num_sensors = num_sensors
        self.grid = grid
        self.channels = channels

    def _check(self, x: Tensor) -> None:
        n = self.num_sensors
        if self.grid is None:
            if x.dim() != 4 or x.shape[2] != n:
                raise ValueError(
                    f"InputMasked: x must have shape [B, T, {n}, C], got {tuple(x.shape)}"
                )
            return
        g = self.grid
        if x.dim() != 5 or tuple(x.shape[2:]) != (self.channels, g.height, g.width):
            raise ValueError(
                f"InputMasked: x must have shape [B, T, {self.channels}, {g.height}, {g.width}], "
                f"got {tuple(x.shape)}"
            )

    def forward(self, x: Tensor, gate: Tensor | None = None) -> Tensor:
        n = self.num_sensors
        self._check(x)
        if gate is None:
            return self.model(x)
        if gate.shape != (n,):
            raise ValueError(f"InputMasked: gate must have shape [{n}], got {tuple(gate.shape)}")
        gate = gate.to(x.dtype)
        if self.grid is None:
            return self.model(x * gate[None, None, :, None])
        return self.model(x * gate_to_pixels(gate, self.grid))

    def compact(self, active_index: Tensor, theta: Tensor | None = None) -> CompactInputMasked:
        return CompactInputMasked(self, active_index, theta)


class CompactInputMasked(nn.Module):
    """The active sensors (graph ``x[B, T, K, C]``, or image patches ``[B, K, T*C*p*p]``)
    -> the wrapped model's whole-field output. No speedup."""

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
        self.register_buffer("unit_theta", torch.ones(n))

    def gather_input(self, x: Tensor) -> Tensor:
        """The full input -> what ``forward`` takes (the active sensors' data, unscaled)."""
        self.parent._check(x)
        grid = self.parent.grid
        if grid is None:
            return x[:, :, self.index]
        return ops.patchify_compact(x, self.unit_theta.to(x.dtype), self.index, grid.patch)

    def forward(self, x_active: Tensor) -> Tensor:
        grid, n = self.parent.grid, self.parent.num_sensors
        if grid is None:
            t, c = x_active.shape[1], x_active.shape[3]
            scaled = graph_to_stream(x_active) * self.gate.to(x_active.dtype)[None, :, None]
            full = ops.expand(scaled, self.index, n)
            return self.parent.model(stream_to_graph(full, t, c))
        c, p = self.parent.channels, grid.patch
        k = self.index.numel()
        if x_active.dim() != 3 or x_active.shape[1] != k or x_active.shape[2] % (c * p * p):
            raise ValueError(
                f"CompactInputMasked: expected the active patches [B, {k}, T*{c}*{p}*{p}], "
                f"got {tuple(x_active.shape)} (use gather_input(frames))"
            )
        t = x_active.shape[2] // (c * p * p)
        scaled = x_active * self.gate.to(x_active.dtype)[None, :, None]
        full = ops.expand(scaled, self.index, n)
        return self.parent.model(stream_to_image(full, grid, t, c))
