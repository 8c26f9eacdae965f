"""Built-in backbones in gated form (DESIGN.md section 5) and a registry to build them."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..graph import CSRGraph
from .masked import CompactInputMasked, InputMasked
from .stgcn import CompactSTGCN, GatedSTGCN

__all__ = [
    "GatedSTGCN",
    "CompactSTGCN",
    "InputMasked",
    "CompactInputMasked",
    "GRAPH_MODELS",
    "build_graph_model",
]

GRAPH_MODELS = ("stgcn", "masked-stgcn")


def build_graph_model(
    name: str, graph: CSRGraph, t_in: int, t_out: int, channels: int, **kwargs: Any
) -> nn.Module:
    """``stgcn``: the gated STGCN (compacts for real). ``masked-stgcn``: the same network
    behind ``InputMasked`` (input times gate, no speedup), for comparison."""
    if name == "stgcn":
        return GatedSTGCN(graph, t_in, t_out, channels, **kwargs)
    if name == "masked-stgcn":
        inner = GatedSTGCN(graph, t_in, t_out, channels, **kwargs)
        return InputMasked(inner, graph.num_rows)
    raise ValueError(f"unknown graph model {name!r}; choose one of {', '.join(GRAPH_MODELS)}")
