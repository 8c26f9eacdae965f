"""``GatedAttention`` and ``GatedTransformerBlock``: self-attention in which token j's
weight as a key/value is multiplied by its gate ``g_j`` (DESIGN.md section 5, tokens).

Both act on any set of tokens with their gates, so their compacted counterpart is
themselves, run on the K active tokens with the K active gates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class GatedAttention(nn.Module):
    """Multi-head self-attention ``[B, M, D] -> [B, M, D]``; key/value j weighted by
    ``gate[j]`` (``gate=None``: plain attention).

    Weights ``w_ij = g_j exp(s_ij) / sum_k |g_k| exp(s_ik)`` (DESIGN's formula for
    ``g >= 0``; the denominator takes ``|g|`` so that a negative score can never make it
    vanish), as one ``scaled_dot_product_attention`` call on the values ``[g_j v_j, |g_j|]``:
    the extra column yields the denominator. A token with ``g_j = 0`` influences no other.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, h: Tensor, gate: Tensor | None = None) -> Tensor:
        b, m, d = h.shape
        q, k, v = self.qkv(h).reshape(b, m, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if gate is None:
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            # q and k get a zero column so that all three share one head size (SDPA's
            # fast kernels need that); it leaves every score unchanged.
            g = gate.to(h.dtype)[None, None, :, None]
            v_ext = torch.cat([v * g, g.abs().expand(b, self.heads, m, 1)], dim=-1)
            q, k = F.pad(q, (0, 1)), F.pad(k, (0, 1))
            o = F.scaled_dot_product_attention(q, k, v_ext, scale=(d // self.heads) ** -0.5)
            o = o[..., :-1] / o[..., -1:].clamp_min(torch.finfo(o.dtype).tiny)
        return self.proj(o.transpose(1, 2).reshape(b, m, d))


class GatedTransformerBlock(nn.Module):
    """Pre-norm transformer block ``[B, M, D] -> [B, M, D]`` with :class:`GatedAttention`."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = GatedAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )

    def forward(self, h: Tensor, gate: Tensor | None = None) -> Tensor:
        h = h + self.attn(self.norm1(h), gate)
        return h + self.mlp(self.norm2(h))
