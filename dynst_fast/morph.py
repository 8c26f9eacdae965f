"""Stream morph: put sensors on one axis and everything a sensor reports on another.

Graph input ``[B, T, N, C]`` <-> ``[B, N, T*C]`` (features ordered ``(t, c)``).
"""

from __future__ import annotations

from torch import Tensor


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
