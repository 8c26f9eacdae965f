"""The command line of ``dynst run``, generated from the configuration tree: one flag per
setting (:func:`add_arguments`), the settings a command line gave (:func:`apply_arguments`,
:func:`given_settings`), and the command line of a configuration (:func:`command_line`)."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import typing
from typing import Any

from .coerce import unwrap_optional
from .config import RunConfig, flag_name, leaves


def _dest(section: str | None, name: str) -> str:
    return f"{section}.{name}" if section else name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting of the tree, with its help and default."""
    defaults = RunConfig()
    groups: dict[str | None, Any] = {}
    for section, f in leaves():
        if section not in groups:
            title = f"{section} settings" if section else "run settings"
            groups[section] = parser.add_argument_group(title)
        group = groups[section]
        default = getattr(getattr(defaults, section) if section else defaults, f.name)
        kind = typing.get_type_hints(type(getattr(defaults, section)) if section else RunConfig)[
            f.name
        ]
        flag = flag_name(f)
        text = f.metadata.get("help", "")
        kw: dict[str, Any] = {"dest": _dest(section, f.name), "default": argparse.SUPPRESS}
        choices = f.metadata.get("choices")
        if flag == "--model":
            text = _model_help(text)
        base = unwrap_optional(kind)
        if base is bool:
            group.add_argument(flag, action="store_true", help=text, **kw)
            continue
        kw["metavar"] = f.name.upper()
        if typing.get_origin(base) is list:
            kw.update(nargs="*", metavar=f.metadata.get("metavar") or "SCHEME")
        elif typing.get_origin(base) is dict:
            kw.update(action="append", type=_key_value, metavar="KEY=VALUE")
        else:
            kw["type"] = base
        if choices is not None:
            kw["choices"] = choices
            text = f"{text}: {', '.join(choices)}"
        if default not in (None, [], {}):
            text = f"{text} (default: {default})"
        group.add_argument(flag, help=text, **kw)


def _model_help(text: str) -> str:
    from .models import backbone, backbone_names

    lines = []
    for name in backbone_names():
        spec = backbone(name)
        opts = ", ".join(spec.option_types())
        lines.append(f"{name} ({spec.space} data{', default' if spec.default else ''}: "
                     f"{spec.summary}; options {opts})")  # fmt: skip
    return f"{text}. Models: " + "; ".join(lines)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def apply_arguments(cfg: RunConfig, ns: argparse.Namespace) -> RunConfig:
    """``cfg`` with every setting given on the command line replaced (a new config)."""
    given = vars(ns)
    sections: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for section, f in leaves():
        dest = _dest(section, f.name)
        if dest not in given:
            continue
        value = given[dest]
        if f.name == "options" and section == "model":
            value = {**cfg.model.options, **dict(value)}
        if section:
            sections.setdefault(section, {})[f.name] = value
        else:
            top[f.name] = value
    new = {s: dataclasses.replace(getattr(cfg, s), **v) for s, v in sections.items()}
    return dataclasses.replace(cfg, **new, **top)


def given_settings(ns: argparse.Namespace) -> list[str]:
    """The flags of the settings given on the command line."""
    out = []
    for section, f in leaves():
        if _dest(section, f.name) in vars(ns):
            out.append(flag_name(f))
    return out


def command_line(cfg: RunConfig) -> str:
    """``dynst run`` with the flags of every setting that differs from its default, each
    value quoted for a POSIX shell."""
    q = lambda v: shlex.quote(str(v))  # noqa: E731
    defaults = RunConfig()
    parts = ["dynst run"]
    for section, f in leaves():
        value = getattr(getattr(cfg, section) if section else cfg, f.name)
        default = getattr(getattr(defaults, section) if section else defaults, f.name)
        if value == default or f.name == "quiet":
            continue
        flag = flag_name(f)
        if isinstance(value, bool):
            parts.append(flag)
        elif isinstance(value, list):
            parts.append(" ".join([flag, *map(q, value)]))
        elif isinstance(value, dict):
            parts += [f"{flag} {q(f'{k}={v}')}" for k, v in value.items()]
        else:
            parts.append(f"{flag} {q(value)}")
    return " ".join(parts)
