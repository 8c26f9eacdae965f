"""``InputMasked``: gate any forecaster by multiplying its input by the gate.

It works with every model whose forward takes the full input of a sensor space (graphs
``x[B, T, N, C]``; images ``x[B, T, C, H, W]`` with one gate entry per ``p x p`` patch)
and returns the whole field, and gives **no speedup**: the compacted form scatters the
K active sensors back into a zero-filled full input and runs the full model. Use it for
accuracy studies; use a gated backbone (``GatedSTGCN``, ``GatedViT``) for speed.
"""

from __future__ import annotations

from torch import Tensor, nn

from .. import ops
from ..sensors import SensorSpace
from .base import CompactBackbone, GatedBackbone
from .registry import register_backbone
from .stgcn import GatedSTGCN, STGCNOptions


class InputMasked(GatedBackbone):
    """``forward(x, gate[N] | None) = model(x * gate)``, the gate broadcast over a graph
    sensor's data or over every pixel of an image patch (``space.gate_input``).

    Args:
        model: a forecaster ``x -> whole field`` over the full input of ``space``.
        space, t_in, t_out, channels: see :class:`GatedBackbone` (the input check leaves
            the number of steps to ``model``).
    """

    gives_speedup = False

    def __init__(
        self, model: nn.Module, space: SensorSpace, t_in: int, t_out: int, channels: int = 1
    ) -> None:
        if not isinstance(model, nn.Module):
            got = type(model).__name__
            raise TypeError(f"InputMasked: model must be a torch.nn.Module, got {got}")
        super().__init__(space, t_in, t_out, channels)
        self.model = model

    def check_input(self, x: Tensor, who: str | None = None) -> None:
        self.space.check_input(x, who or "InputMasked", None, self.channels)

    def forward(self, x: Tensor, gate: Tensor | None = None) -> Tensor:
        self.check_input(x)
        if gate is None:
            return self.model(x)
        return self.model(self.space.gate_input(x, self.full_gate(gate, x)))

    def compact(self, active_index: Tensor, theta: Tensor | None = None) -> CompactInputMasked:
        return CompactInputMasked(self, active_index, theta)


class CompactInputMasked(CompactBackbone):
    """The active sensors' input (graph ``x[B, T, K, C]``, or image patches
    ``[B, K, T*C*p*p]``) -> the wrapped model's whole-field output. No speedup."""

    gives_speedup = False

    def forward(self, x_active: Tensor, alive: Tensor | None = None) -> Tensor:
        p = self.parent
        p.space.check_active_input(x_active, self.num_active, type(self).__name__, None,
                                   p.channels)  # fmt: skip
        stream, t = p.space.active_stream(x_active, p.channels)
        scaled = stream * self.gates(alive, stream)[None, :, None]
        full = ops.expand(scaled, self.index, p.num_sensors)
        return p.model(p.space.from_stream(full, t, p.channels))


@register_backbone(
    "masked-stgcn",
    options=STGCNOptions,
    space="graph",
    width="hidden",
    summary="the stgcn network gated through InputMasked: accuracy only, no speedup",
    before={"attention": False, "calendar": False},
)
def build_masked_stgcn(space, t_in, t_out, channels, **options) -> InputMasked:
    return InputMasked(GatedSTGCN(space, t_in, t_out, channels, **options), space, t_in, t_out,
                       channels)  # fmt: skip
