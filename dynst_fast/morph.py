"""Stream morph: put sensors on one axis and everything a sensor reports on another.

Graph input ``[B, T, N, C]`` <-> ``[B, N, T*C]`` (features ordered ``(t, c)``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import ops


def graph_to_stream(x: Tensor) -> Tensor:
    """``[B, T, N, C]`` -> ``[B, N, T*C]``."""
    if x.dim() != 4:
        raise ValueError(f"graph_to_stream: expected [B, T, N, C], got shape {tuple(x.shape)}")
    b, t, n, c = x.shape
    return x.permute(0, 2, 1, 3).reshape(b, n, t * c)


def stream_to_graph(s: Tensor, t: int, c: int) -> Tensor:
    """``[B, N, T*C]`` -> ``[B, T, N, C]``, the inverse of :func:`graph_to_stream`."""
    if s.dim() != 3 or s.shape[2] != t * c:
        raise ValueError(f"stream_to_graph: expected [B, N, {t}*{c}], got shape {tuple(s.shape)}")
    b, n, _ = s.shape
    return s.reshape(b, n, t, c).permute(0, 2, 1, 3)


def select_sensors(x: Tensor, index: Tensor) -> Tensor:
    """``x[B, T, N, C]`` -> ``x[:, :, index]`` (``[B, T, K, C]``): the input of a compacted model.

    Runs ``dynst_fast.ops.compact`` (one gather pass, C++ on CPU, Triton on CUDA) on the
    ``[B*T, N, C]`` view; index is checked (int64/int32, distinct, in range).
    """
    if x.dim() != 4:
        raise ValueError(f"select_sensors: expected [B, T, N, C], got shape {tuple(x.shape)}")
    b, t, n, c = x.shape
    index = torch.as_tensor(index, device=x.device).reshape(-1)
    out = ops.compact(x.reshape(b * t, n, c), x.new_ones(n), index)
    return out.reshape(b, t, index.numel(), c)
