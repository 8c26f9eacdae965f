"""``TemporalGLU``: a gated temporal convolution over each sensor's own stream.

It mixes nothing across sensors, so its compacted counterpart is itself, run on the K
active sensors' streams.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TemporalGLU(nn.Module):
    """Gated temporal convolution over T, per sensor, with a stride:
    ``[B, M, T, H] -> [B, M, T', H]``, ``T' = (max(T, k) - k) // stride + 1``
    (a residual GLU ``LN(h + a * sigmoid(b))`` over ``k`` taps)."""

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
