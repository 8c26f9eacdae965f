"""Backbones in gated form (DESIGN.md section 5), their base classes and the registry.

Built in: ``stgcn`` (``GatedSTGCN``) and ``masked-stgcn`` (it, behind ``InputMasked``) for
graph data; ``vit`` (``GatedViT``) and ``simvp`` (``SimVP`` behind ``InputMasked``) for grid
data. Your own: subclass ``GatedBackbone`` / ``CompactBackbone``, build it from
``dynst_fast.nn`` and register it with ``register_backbone`` (README: "Write your own
backbone").
"""

from __future__ import annotations

from .base import CompactBackbone, GatedBackbone
from .masked import CompactInputMasked, InputMasked
from .registry import (
    BACKBONES,
    Backbone,
    backbone,
    backbone_names,
    build_backbone,
    default_backbone,
    models_for,
    register_backbone,
)
from .simvp import SimVP, SimVPOptions
from .stgcn import CompactSTGCN, GatedSTGCN, STGCNOptions
from .vit import CompactViT, GatedViT, ViTOptions

__all__ = [
    "GatedBackbone",
    "CompactBackbone",
    "GatedSTGCN",
    "CompactSTGCN",
    "STGCNOptions",
    "GatedViT",
    "CompactViT",
    "ViTOptions",
    "SimVP",
    "SimVPOptions",
    "InputMasked",
    "CompactInputMasked",
    "BACKBONES",
    "Backbone",
    "backbone",
    "backbone_names",
    "build_backbone",
    "default_backbone",
    "models_for",
    "register_backbone",
]
