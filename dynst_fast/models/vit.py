"""A ViT forecaster in gated form whose compacted model drops patches for real
(DESIGN.md section 5, tokens), built from ``dynst_fast.nn``.

Every ``p x p`` patch of the field is a sensor and a token. Shapes: input frames
``[B, t_in, C, H, W]`` -> patches ``[B, N, t_in*C*p*p]`` (the sensor space's stream morph,
H and W zero-padded to a multiple of p) -> tokens ``[B, N, D]`` -> forecast
``[B, t_out, C, H, W]`` (padding cropped off).

Gating, with ``g = theta * a``:

- **encoder attention** weighs token j as a key/value by ``g_j`` (``nn.GatedAttention``);
  a token with ``g_j = 0`` influences no other token.
- **decoder input** (MAE-style, ``nn.MaskTokenDecoder``): ``mask + g_j (enc_j - mask)`` at
  position j, i.e. the mask token wherever the sensor is off; the decoder attends over
  all N positions and forecasts the whole field.
- **skip**: a linear map shared by all patches from a patch's own history to its
  forecast, times ``g_j``.

Patch data enter ungated, so ``dL/dg_j`` of a switched-off patch (the first-order gain of
switching it on) is computed from its own data.

Compacted form (:class:`CompactViT`): the encoder runs on the K active tokens only
(cost ~K), the decoder on N positions with mask tokens at the N - K others. With an
encoder-heavy configuration (deep, wide encoder; one narrow decoder block) inference
cost falls nearly in proportion to K.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .. import ops
from ..nn import GatedTransformerBlock, MaskTokenDecoder
from ..sensors import PatchSensors
from .base import CompactBackbone, GatedBackbone
from .registry import register_backbone


@dataclass
class ViTOptions:
    """``dim``, ``depth``, ``heads``: encoder width, blocks, attention heads;
    ``decoder_dim``, ``decoder_depth``, ``decoder_heads``: the decoder's; ``mlp_ratio``:
    MLP width / block width; ``dropout``: inside the MLPs. ``calendar``: the inputs carry
    the time of day and day of week, where the data has them (as channels of every
    patch)."""

    dim: int = 64
    depth: int = 4
    heads: int = 4
    decoder_dim: int = 64
    decoder_depth: int = 1
    decoder_heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    calendar: bool = False


class GatedViT(GatedBackbone):
    """Patch-token forecaster with a gated encoder and an MAE-style decoder.

    Args:
        space: the patches of the field (``PatchSensors``), or their ``PatchGrid``.
        t_in, t_out, channels: see :class:`GatedBackbone`. The rest: :class:`ViTOptions`.

    ``forward(x[B, t_in, C, H, W], gate[N] | None) -> [B, t_out, C, H, W]``.
    """

    def __init__(
        self,
        space,
        t_in: int,
        t_out: int,
        channels: int = 1,
        dim: int = ViTOptions.dim,
        depth: int = ViTOptions.depth,
        heads: int = ViTOptions.heads,
        decoder_dim: int = ViTOptions.decoder_dim,
        decoder_depth: int = ViTOptions.decoder_depth,
        decoder_heads: int = ViTOptions.decoder_heads,
        mlp_ratio: float = ViTOptions.mlp_ratio,
        dropout: float = ViTOptions.dropout,
        calendar: bool = ViTOptions.calendar,
    ) -> None:
        if not isinstance(space, PatchSensors):
            space = PatchSensors(space)
        super().__init__(space, t_in, t_out, channels)
        self.grid = space.grid
        n, p = self.num_sensors, self.grid.patch
        f_in, f_out = t_in * self.in_channels * p * p, t_out * channels * p * p
        self.embed = nn.Linear(f_in, dim)
        self.pos = nn.Parameter(torch.randn(n, dim) * 0.02)
        self.blocks = nn.ModuleList(
            GatedTransformerBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth)
        )
        self.enc_norm = nn.LayerNorm(dim)
        self.decoder = MaskTokenDecoder(
            n, dim, decoder_dim, decoder_depth, decoder_heads, mlp_ratio, f_out, dropout
        )
        self.skip = nn.Linear(f_in, f_out)

    def encode(self, patches: Tensor, pos: Tensor, gate: Tensor | None) -> Tensor:
        """``[B, M, F_in]`` patches at positions with embeddings ``pos [M, D]`` -> ``[B, M, D]``."""
        h = self.embed(patches) + pos
        for blk in self.blocks:
            h = blk(h, gate)
        return self.enc_norm(h)

    def forward(self, x: Tensor, gate: Tensor | None = None) -> Tensor:
        self.check_input(x)
        if gate is not None:
            gate = self.full_gate(gate, x)
        patches = self.space.to_stream(x)
        enc = self.encode(patches, self.pos, gate)
        skip = self.skip(patches)
        if gate is not None:
            skip = gate[None, :, None] * skip
        out = self.decoder(enc, gate) + skip
        return self.space.from_stream(out, self.t_out, self.channels)

    def compact(self, active_index: Tensor, theta: Tensor | None = None) -> CompactViT:
        return CompactViT(self, active_index, theta)


class CompactViT(CompactBackbone):
    """``GatedViT`` on K active patches: ``[B, K, t_in*C*p*p] -> [B, t_out, C, H, W]``.

    Get its input from full frames with :meth:`gather_input` (``ops.patchify_compact``,
    which reads only the active patches).
    """

    def __init__(self, parent: GatedViT, active_index: Tensor, theta: Tensor | None) -> None:
        super().__init__(parent, active_index, theta)
        self.decoder = parent.decoder.compact(self.index, self.gate)

    def forward(self, patches: Tensor, alive: Tensor | None = None) -> Tensor:
        p = self.parent
        self.check_active_input(patches)
        gate = self.gates(alive, patches)
        enc = p.encode(patches, p.pos[self.index], gate)
        skip = ops.expand(gate[None, :, None] * p.skip(patches), self.index, p.num_sensors)
        out = self.decoder(enc, gate) + skip
        return p.space.from_stream(out, p.t_out, p.channels)


@register_backbone(
    "vit",
    options=ViTOptions,
    space="grid",
    width="dim",
    default=True,
    summary="gated ViT on image patches; compacts for real",
    before={"calendar": False},
)
def build_vit(space, t_in, t_out, channels, **options) -> GatedViT:
    return GatedViT(space, t_in, t_out, channels, **options)
