"""The backbone registry: one name, one builder with typed options.

The CLI's ``--model`` help (and the check of its value), ``dynst run``, ``dynst export``
and checkpoint rebuilding all read it. A backbone registers with :func:`register_backbone` when its
module is imported; backbones of other packages are found through the entry-point group
``dynst_fast.backbones`` (an entry point names a module, or an object in it, whose
import registers them).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from ..coerce import coerce
from ..sensors import SPACES, SensorSpace
from .base import GatedBackbone

ENTRY_POINT_GROUP = "dynst_fast.backbones"


@dataclass(frozen=True)
class Backbone:
    """A registered backbone.

    ``build(space, t_in, t_out, channels, **options)`` returns the gated backbone;
    ``options`` is a dataclass of its typed options (every field with a default);
    ``space`` the kind of sensor space it takes (``"graph"`` or ``"grid"``); ``width`` the
    option that ``--hidden`` sets; ``default`` marks the default backbone of its kind;
    ``before`` gives the options added after runs were saved without them, each with the
    value that rebuilds such a run (its behaviour before the option existed).
    """

    name: str
    build: Callable[..., GatedBackbone]
    options: type
    space: str
    summary: str = ""
    width: str | None = None
    default: bool = False
    before: dict[str, Any] = dataclasses.field(default_factory=dict)

    def option_types(self) -> dict[str, Any]:
        hints = typing.get_type_hints(self.options)
        return {f.name: hints[f.name] for f in dataclasses.fields(self.options)}

    def parse_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Every option of this backbone, ``options`` over the defaults, type-checked
        (strings, as the CLI gives them, are converted)."""
        types = self.option_types()
        unknown = sorted(set(options) - set(types))
        if unknown:
            raise ValueError(
                f"unknown option {unknown[0]!r} for model {self.name}; its options: "
                f"{', '.join(types) or 'none'}"
            )
        out = dataclasses.asdict(self.options())
        for key, value in options.items():
            out[key] = coerce(value, types[key], f"model option {key} of {self.name}", parse=True)
        return out

    def saved_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The options of a saved run (a checkpoint's or a progress file's resolved ones):
        those it predates take their ``before`` values, not today's defaults."""
        return self.parse_options({**self.before, **options})


BACKBONES: dict[str, Backbone] = {}
_entry_points_loaded = False


def register_backbone(
    name: str,
    *,
    options: type,
    space: str,
    summary: str = "",
    width: str | None = None,
    default: bool = False,
    before: dict[str, Any] | None = None,
) -> Callable:
    """Decorator: register a builder (or a :class:`GatedBackbone` class) as ``name``
    (``before``: see :class:`Backbone`)."""
    if space not in SPACES:
        raise ValueError(f"register_backbone({name!r}): space must be one of {', '.join(SPACES)}")
    if not dataclasses.is_dataclass(options):
        raise TypeError(f"register_backbone({name!r}): options must be a dataclass")
    fields = {f.name for f in dataclasses.fields(options)}
    if width is not None and width not in fields:
        raise ValueError(f"register_backbone({name!r}): width {width!r} is not an option")
    if set(before or {}) - fields:
        raise ValueError(f"register_backbone({name!r}): before names unknown options")

    def register(build: Callable) -> Callable:
        BACKBONES[name] = Backbone(name, build, options, space, summary, width, default,
                                   dict(before or {}))  # fmt: skip
        return build

    return register


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()


def backbone(name: str) -> Backbone:
    """The registered backbone ``name`` (clear ``ValueError`` naming the choices)."""
    if name not in BACKBONES:
        _load_entry_points()
    if name not in BACKBONES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(backbone_names())}")
    return BACKBONES[name]


def backbone_names() -> list[str]:
    """Every registered name: graph models first, each kind's default first."""
    _load_entry_points()
    order = list(SPACES)
    return sorted(
        BACKBONES, key=lambda n: (order.index(BACKBONES[n].space), not BACKBONES[n].default)
    )


def default_backbone(kind: str) -> str:
    """The default backbone for ``kind`` data (``"graph"``: stgcn, ``"grid"``: vit)."""
    _load_entry_points()
    for spec in BACKBONES.values():
        if spec.default and spec.space == kind:
            return spec.name
    raise ValueError(f"no default model for {kind} data")


def models_for(kind: str) -> list[str]:
    return [n for n in backbone_names() if backbone(n).space == kind]


def build_backbone(
    name: str,
    space: SensorSpace,
    t_in: int,
    t_out: int,
    channels: int,
    options: dict[str, Any] | None = None,
) -> GatedBackbone:
    """Build backbone ``name`` for ``space`` with ``options`` over its defaults."""
    spec = backbone(name)
    if space.kind != spec.space:
        raise ValueError(
            f"model {name} takes {SPACES[spec.space].data_description} data, not {space.kind} "
            f"data; models for {space.kind} data: {', '.join(models_for(space.kind))}"
        )
    return spec.build(space, t_in, t_out, channels, **spec.parse_options(options or {}))
