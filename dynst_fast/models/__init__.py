"""Built-in backbones in gated form (DESIGN.md section 5) and registries to build them."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..graph import CSRGraph
from ..morph import PatchGrid
from .masked import CompactInputMasked, InputMasked
from .simvp import SimVP
from .stgcn import CompactSTGCN, GatedSTGCN
from .vit import CompactViT, GatedViT

__all__ = [
    "GatedSTGCN",
    "CompactSTGCN",
    "GatedViT",
    "CompactViT",
    "SimVP",
    "InputMasked",
    "CompactInputMasked",
    "GRAPH_MODELS",
    "IMAGE_MODELS",
    "build_graph_model",
    "build_image_model",
]

GRAPH_MODELS = ("stgcn", "masked-stgcn")
IMAGE_MODELS = ("vit", "simvp")


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


def build_image_model(
    name: str, grid: PatchGrid, t_in: int, t_out: int, channels: int, **kwargs: Any
) -> nn.Module:
    """``vit``: the gated ViT (compacts for real, one sensor per patch of ``grid``).
    ``simvp``: the SimVP-style CNN behind ``InputMasked`` (accuracy only, no speedup)."""
    if name == "vit":
        return GatedViT(grid.height, grid.width, grid.patch, t_in, t_out, channels, **kwargs)
    if name == "simvp":
        inner = SimVP(grid.height, grid.width, t_in, t_out, channels, **kwargs)
        return InputMasked(inner, grid.num_patches, grid=grid, channels=channels)
    raise ValueError(f"unknown image model {name!r}; choose one of {', '.join(IMAGE_MODELS)}")
