"""``MaskTokenDecoder``: an MAE-style decoder over all N positions that sees a learned
mask token wherever a sensor is off, and its compacted counterpart
``CompactMaskTokenDecoder``, which takes only the K active tokens."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import ops
from .attention import GatedTransformerBlock


class MaskTokenDecoder(nn.Module):
    """Tokens ``[B, N, D]`` and gates ``[N]`` -> ``[B, N, out_features]``.

    Position j's input is ``mask + g_j (enc_j - mask)``: the mask token where the sensor
    is off, its encoding where it is on with ``g_j = 1``. Then a linear map to the
    decoder width plus a learned position embedding, ``depth`` transformer blocks over all
    N positions, a norm and a linear head.

    Args:
        num_positions: N. dim: the encoder width D. decoder_dim, depth, heads, mlp_ratio,
            dropout: the decoder's blocks. out_features: the head's width.
    """

    def __init__(
        self,
        num_positions: int,
        dim: int,
        decoder_dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
        out_features: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_positions = num_positions
        self.mask_token = nn.Parameter(torch.zeros(dim))
        self.dec_embed = nn.Linear(dim, decoder_dim)
        self.dec_pos = nn.Parameter(torch.randn(num_positions, decoder_dim) * 0.02)
        self.dec_blocks = nn.ModuleList(
            GatedTransformerBlock(decoder_dim, heads, mlp_ratio, dropout) for _ in range(depth)
        )
        self.dec_norm = nn.LayerNorm(decoder_dim)
        self.head = nn.Linear(decoder_dim, out_features)

    def forward(self, enc: Tensor, gate: Tensor | None = None) -> Tensor:
        if gate is not None:
            g = gate.to(enc.dtype)[None, :, None]
            enc = self.mask_token + g * (enc - self.mask_token)
        return self.decode(enc)

    def decode(self, tokens: Tensor) -> Tensor:
        """The decoder on already-masked tokens ``[B, N, D]``."""
        h = self.dec_embed(tokens) + self.dec_pos
        for blk in self.dec_blocks:
            h = blk(h, None)
        return self.head(self.dec_norm(h))

    def compact(self, index: Tensor, gate: Tensor) -> CompactMaskTokenDecoder:
        return CompactMaskTokenDecoder(self, index, gate)


class CompactMaskTokenDecoder(nn.Module):
    """:class:`MaskTokenDecoder` given only the K active tokens ``[B, K, D]`` (at positions
    ``index``, with gates ``gate [K]``): the mask token fills the N - K others, the decoder
    runs over all N. Shares the decoder's parameters."""

    def __init__(self, decoder: MaskTokenDecoder, index: Tensor, gate: Tensor) -> None:
        super().__init__()
        self.decoder = decoder
        self.register_buffer("index", index)
        self.register_buffer("gate", gate)

    def forward(self, enc_active: Tensor, gate: Tensor | None = None) -> Tensor:
        """``gate [K]``: this call's active gates (default: the compacted ones)."""
        d = self.decoder
        g = (self.gate.to(enc_active.dtype) if gate is None else gate)[None, :, None]
        scattered = ops.expand(g * (enc_active - d.mask_token), self.index, d.num_positions)
        return d.decode(d.mask_token + scattered)
