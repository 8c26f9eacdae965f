"""A ViT forecaster in gated form whose compacted model drops patches for real
(DESIGN.md section 5, tokens).

Every ``p x p`` patch of the field is a sensor and a token. Shapes: input frames
``[B, t_in, C, H, W]`` -> patches ``[B, N, t_in*C*p*p]`` (``morph.image_to_stream``, H and W
zero-padded to a multiple of p) -> tokens ``[B, N, D]`` -> forecast ``[B, t_out, C, H, W]``
(padding cropped off).

Gating, with ``g = theta * a``:

- **encoder attention** weighs token j as a key/value by ``g_j``:
  ``w_ij = g_j exp(s_ij) / sum_k |g_k| exp(s_ik)`` (DESIGN's formula for ``g >= 0``; the
  denominator takes ``|g|`` so that a negative score can never make it vanish). It is
  one ``scaled_dot_product_attention`` call on the values ``[g_j v_j, |g_j|]``: the extra
  column yields the denominator (q and k get a zero column to match). A token with
  ``g_j = 0`` influences no other token.
- **decoder input** (MAE-style): ``mask + g_j (enc_j - mask)`` at position j, i.e. the
  mask token wherever the sensor is off; the decoder attends over all N positions and
  forecasts the whole field.
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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import ops
from ..morph import PatchGrid, image_to_stream, stream_to_image


class GatedAttention(nn.Module):
    """Multi-head self-attention ``[B, M, D] -> [B, M, D]``; key/value j weighted by
    ``gate[j]`` (``gate=None``: plain attention)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, h: Tensor, gate: Tensor | None) -> Tensor:
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


class Block(nn.Module):
    """Pre-norm transformer block with gated attention."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = GatedAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )

    def forward(self, h: Tensor, gate: Tensor | None) -> Tensor:
        h = h + self.attn(self.norm1(h), gate)
        return h + self.mlp(self.norm2(h))


class GatedViT(nn.Module):
    """Patch-token forecaster with a gated encoder and an MAE-style decoder.

    Args:
        height, width: the field size H x W; patch: p (H, W are padded up to multiples of p).
        t_in, t_out: window lengths in steps; channels: C of input and output.
        dim, depth, heads: encoder width, number of blocks, attention heads.
        decoder_dim, decoder_depth, decoder_heads: the decoder's.
        mlp_ratio: MLP width / block width. dropout: inside the MLPs.

    ``forward(x[B, t_in, C, H, W], gate[N] | None) -> [B, t_out, C, H, W]``.
    """

    def __init__(
        self,
        height: int,
        width: int,
        patch: int,
        t_in: int,
        t_out: int,
        channels: int = 1,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
        decoder_dim: int = 64,
        decoder_depth: int = 1,
        decoder_heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.grid = PatchGrid(int(height), int(width), patch)
        self.num_sensors = self.grid.num_patches
        self.t_in, self.t_out, self.channels = t_in, t_out, channels
        n, p = self.num_sensors, patch
        f_in, f_out = t_in * channels * p * p, t_out * channels * p * p
        self.embed = nn.Linear(f_in, dim)
        self.pos = nn.Parameter(torch.randn(n, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.enc_norm = nn.LayerNorm(dim)
        self.mask_token = nn.Parameter(torch.zeros(dim))
        self.dec_embed = nn.Linear(dim, decoder_dim)
        self.dec_pos = nn.Parameter(torch.randn(n, decoder_dim) * 0.02)
        self.dec_blocks = nn.ModuleList(
            Block(decoder_dim, decoder_heads, mlp_ratio, dropout) for _ in range(decoder_depth)
        )
        self.dec_norm = nn.LayerNorm(decoder_dim)
        self.head = nn.Linear(decoder_dim, f_out)
        self.skip = nn.Linear(f_in, f_out)

    # ---------------------------------------------------------------- shared parts
    def encode(self, patches: Tensor, pos: Tensor, gate: Tensor | None) -> Tensor:
        """``[B, M, F_in]`` patches at positions with embeddings ``pos [M, D]`` -> ``[B, M, D]``."""
        h = self.embed(patches) + pos
        for blk in self.blocks:
            h = blk(h, gate)
        return self.enc_norm(h)

    def decode(self, tokens: Tensor) -> Tensor:
        """Decoder over all N positions: ``[B, N, D] -> [B, N, F_out]``."""
        h = self.dec_embed(tokens) + self.dec_pos
        for blk in self.dec_blocks:
            h = blk(h, None)
        return self.head(self.dec_norm(h))

    def check_frames(self, x: Tensor, who: str = "GatedViT") -> None:
        """Raise a clear ``ValueError`` unless ``x`` is ``[B, t_in, C, H, W]`` of this model."""
        g = self.grid
        want = (self.t_in, self.channels, g.height, g.width)
        if x.dim() != 5 or tuple(x.shape[1:]) != want:
            got = tuple(x.shape)
            msg = f"{who}: x must have shape [B, {', '.join(map(str, want))}], got {got}"
            if x.dim() == 5 and x.shape[2] != self.channels:
                msg += f" (the model has {self.channels} channel(s), the data {x.shape[2]})"
            raise ValueError(msg)

    # ---------------------------------------------------------------- gated form
    def forward(self, x: Tensor, gate: Tensor | None = None) -> Tensor:
        self.check_frames(x)
        n = self.num_sensors
        if gate is not None and gate.shape != (n,):
            raise ValueError(f"GatedViT: gate must have shape [{n}], got {tuple(gate.shape)}")
        patches, _ = image_to_stream(x, self.grid.patch)
        enc = self.encode(patches, self.pos, gate)
        skip = self.skip(patches)
        if gate is not None:
            g = gate.to(x.dtype)[None, :, None]
            enc = self.mask_token + g * (enc - self.mask_token)
            skip = g * skip
        out = self.decode(enc) + skip
        return stream_to_image(out, self.grid, self.t_out, self.channels)

    def compact(self, active_index: Tensor, theta: Tensor | None = None) -> CompactViT:
        """The deployed model on the active patches only; shares this model's parameters.

        ``theta`` is the full ``[N]`` score vector (ones if None).
        """
        return CompactViT(self, active_index, theta)


class CompactViT(nn.Module):
    """``GatedViT`` on K active patches: ``[B, K, t_in*C*p*p] -> [B, t_out, C, H, W]``.

    Get its input from full frames with :meth:`gather_input` (``ops.patchify_compact``,
    which reads only the active patches).
    """

    def __init__(self, parent: GatedViT, active_index: Tensor, theta: Tensor | None) -> None:
        super().__init__()
        n = parent.num_sensors
        index = torch.as_tensor(active_index, dtype=torch.int64).reshape(-1)
        index = ops._checks.check_index(index, n, "compact")
        theta = torch.ones(n) if theta is None else theta.detach()
        if theta.shape != (n,):
            raise ValueError(f"compact: theta must have shape [{n}], got {tuple(theta.shape)}")
        self.parent = parent
        self.num_active = index.numel()
        self.register_buffer("index", index)
        self.register_buffer("gate", theta.to(torch.float32)[index.to(theta.device)])
        self.register_buffer("unit_theta", torch.ones(n))

    def gather_input(self, frames: Tensor) -> Tensor:
        """Full frames ``[B, t_in, C, H, W]`` -> the active patches ``[B, K, t_in*C*p*p]``."""
        self.parent.check_frames(frames, "CompactViT")
        return ops.patchify_compact(
            frames, self.unit_theta.to(frames.dtype), self.index, self.parent.grid.patch
        )

    def forward(self, patches: Tensor) -> Tensor:
        p = self.parent
        f_in = p.embed.in_features
        if patches.dim() != 3 or patches.shape[1:] != (self.num_active, f_in):
            raise ValueError(
                f"CompactViT: expected the active patches [B, {self.num_active}, {f_in}], "
                f"got {tuple(patches.shape)} (use gather_input(frames))"
            )
        gate = self.gate.to(patches.dtype)
        g = gate[None, :, None]
        enc = p.encode(patches, p.pos[self.index], gate)
        n = p.num_sensors
        tokens = p.mask_token + ops.expand(g * (enc - p.mask_token), self.index, n)
        skip = ops.expand(g * p.skip(patches), self.index, n)
        out = p.decode(tokens) + skip
        return stream_to_image(out, p.grid, p.t_out, p.channels)
