"""One configuration tree for ``dynst run``: every setting and its default, stated once.

``RunConfig`` holds the sections ``data``, ``model``, ``schedule``, ``constraints``,
``train`` and ``timing`` and a few top-level settings. The command line is generated from the tree
(:func:`add_arguments`), so every field can be set as a flag; a TOML file with the same
sections sets them too (``dynst run --config FILE.toml``), and every run directory saves
its resolved ``config.toml``, which reproduces the run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import schemes
from .coerce import coerce
from .limits import F32_MAX

if typing.TYPE_CHECKING:
    from .data.options import ReadOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SPARSE_SCHEMES = schemes.scheme_names(sparse=True)
PRUNE_BY = ("auto", "theta", "taylor")


def prune_signal(prune_by: str, kind: str) -> str:
    """The pruning signal ``prune_by`` stands for on ``kind`` data (``auto``: taylor on
    graph data, theta on grid data)."""
    if prune_by == "auto":
        return "taylor" if kind == "graph" else "theta"
    return prune_by


def setting(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    choices=None,
    metavar: str | None = None,
    number_as_text: bool = False,
) -> Any:
    """A config field: its default, its help line, and optionally its flag, choices and
    the name of its value in ``--help``; ``number_as_text``: a text field that a TOML
    file may also give as a number (``missing_value = 0``)."""
    meta = {"help": help, "flag": flag, "choices": choices, "metavar": metavar,
            "number_as_text": number_as_text}  # fmt: skip
    if isinstance(default, (list, dict)):
        return field(default_factory=type(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DataConfig:
    """The data set and its windows."""

    path: str | None = setting(
        None,
        "graph data directory or values file, or grid data (.npy [T, H, W] or [T, C, H, W], "
        "or a directory holding one), or synthetic:N[:T] (the planted sensor network with N "
        "sensors over T steps) (default: the synthetic planted sensor network, or the "
        "synthetic planted grid for image models)",
        flag="--data",
    )
    patch: int = setting(
        4, "image models: patch size p, one sensor per p x p patch (H, W padded up)"
    )
    t_in: int = setting(12, "input window length in steps")
    horizon: int = setting(12, "output window length in steps")
    distance_sigma: float | None = setting(
        None,
        "distance lists (PEMS, node-link JSON): sigma of the Gaussian kernel "
        "exp(-(d / sigma)^2) (default: the standard deviation of the distances)",
    )
    distance_threshold: float = setting(
        0.1, "PEMS distance lists: kernel weights below this are no edge (DCRNN's 0.1)"
    )
    missing_value: str = setting(
        "auto",
        "readings equal to V are missing, like NaN: left out of the loss and every metric, "
        "and filled in the inputs; a number, none, or auto: the data's meta.json "
        "missing_value, else 0 for the METR-LA / PEMS-BAY (DCRNN) and PEMS (ASTGCN) "
        "layouts, as the field scores them, and none for the others",
        metavar="V",
        number_as_text=True,
    )

    def read_options(self) -> ReadOptions:
        """The settings the data readers take, as the data layer's own record."""
        from .data.options import ReadOptions  # the data layer imports torch; this does not

        return ReadOptions(
            self.distance_sigma, self.distance_threshold, parse_missing(self.missing_value)
        )


def parse_missing(value: str) -> float | str | None:
    """``--missing-value``'s text as :class:`ReadOptions` takes it: ``"auto"``, None
    (``none``) or a finite number; one ``ValueError`` naming the flag otherwise."""
    text = str(value).strip().lower()
    if text in ("auto", "none"):
        return None if text == "none" else "auto"
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise ValueError(f"--missing-value must be a number, none or auto, got {value!r}")
    if abs(v) > F32_MAX:
        raise ValueError(
            f"--missing-value {value}: beyond float32's range (+-{F32_MAX:.3g}), so no reading "
            "can equal it"
        )
    return v


@dataclass(frozen=True)
class ModelConfig:
    """The backbone (a name of the registry) and its typed options."""

    name: str | None = setting(
        None,
        "backbone (default: the default model of the data's kind, stgcn for graph data and "
        "vit for grid data)",
        flag="--model",
    )
    hidden: int | None = setting(None, "model width: the backbone's width option")
    options: dict[str, Any] = setting(
        {}, "a backbone option KEY=VALUE (repeatable; see --model's list)", flag="--option"
    )


@dataclass(frozen=True)
class ScheduleConfig:
    """What the sparse trainings do (DESIGN.md section 4), in fractions of training."""

    scheme: str = setting("dynst", "the sparse scheme", choices=SPARSE_SCHEMES)
    also: list[str] = setting(
        [], "more sparse schemes to train and report beside the main one", choices=SPARSE_SCHEMES
    )
    sparsity: float | None = setting(
        None,
        "target sparsity in [0, 1) (default: the planted sparsity on synthetic data, else 0.5)",
    )
    mask: str | None = setting(
        None,
        "a mask.json of an earlier run, or a file of sensor ids (one per line or "
        "comma-separated): train and evaluate exactly this active set (the main scheme "
        "becomes mask, its sparsity the file's; --also compares others at it)",
        metavar="FILE",
    )
    rounds: int = setting(10, "pruning rounds (one-shot uses 1; fixed swaps in each)")
    warmup_frac: float = setting(0.0, "share of training steps before the first round")
    prune_frac: float = setting(0.3, "share of training steps the rounds take")
    mask_frac: float = setting(0.3, "share of each round's steps that train theta")
    swap_fraction: float = setting(0.05, "share of the active sensors swapped per round")
    prune_by: str = setting(
        "auto",
        "what a round end prunes the lowest of: theta (|theta|, Eq. 4), taylor (|theta| x "
        "the mean |dL/dg| since the last swap: the first-order loss change of switching a "
        "sensor off, which lets the read-out say which sensors the others stand in for), or "
        "auto: taylor on graph data, theta on grid data (the better of the two on each kind's "
        "validation runs, bench/results/readout_attempts.md)",
        choices=PRUNE_BY,
    )
    theta_lr: float = setting(2e-2, "Adam learning rate of theta in mask phases")
    l1: float = setting(1e-3, "L1 pull on theta in mask phases")

    @property
    def schemes(self) -> list[str]:
        """The sparse schemes a run trains: the main one, then ``also``."""
        return [self.scheme, *self.also]


@dataclass(frozen=True)
class ConstraintsConfig:
    """What the sparse schemes' active sets must respect (the dense model uses every sensor)."""

    keep: list[str] = setting(
        [], "sensor ids that stay active, never pruned or dropped", metavar="ID"
    )
    keep_file: str | None = setting(
        None, "a file of sensor ids to keep (one per line or comma-separated; # comments)"
    )
    forbid: list[str] = setting([], "sensor ids that are never active", metavar="ID")
    forbid_file: str | None = setting(None, "a file of sensor ids to forbid (as --keep-file)")
    cost: str | None = setting(
        None, "a CSV of sensor_id,cost: each sensor's running cost (needs --budget)"
    )
    budget: float | None = setting(
        None,
        "in place of --sparsity: the active sensors' total cost ends at or below this (each "
        "sensor costs 1 without --cost); the schedule reaches it in equal steps and prunes the "
        "lowest |theta| per unit cost",
    )

    @property
    def given(self) -> bool:
        """Whether any constraint is set."""
        return bool(self.keep or self.keep_file or self.forbid or self.forbid_file) or (
            self.cost is not None or self.budget is not None
        )


@dataclass(frozen=True)
class TrainConfig:
    """The network's optimisation (AdamW, cosine learning rate down to 0.1 x)."""

    epochs: int = setting(30, "epochs per training (dense, sparse)")
    batch_size: int = setting(32, "windows per optimizer step")
    lr: float = setting(2e-3, "peak learning rate")
    weight_decay: float = setting(1e-4, "AdamW weight decay")
    grad_clip: float = setting(5.0, "gradient norm clip")
    failure_rate: float = setting(
        0.0,
        "fine-tune with this share of the active sensors failed at random in every step "
        "(switched off as at serving time), so that forecasts degrade gracefully",
    )
    stuck_share: float = setting(
        0.0,
        "with --failure-rate: this share of the failed sensors is stuck instead of silent "
        "(its readings hold the window's first value and it stays switched on), so that the "
        "model learns to discount a sensor that stops changing",
    )
    sensor_dropout: float = setting(
        0.0,
        "train the dense model with this share of the sensors switched off at random in "
        "every step (through the gate), so that it learns to forecast sensors it cannot see "
        "before any is pruned",
    )
    distill: float = setting(
        0.0,
        "weight of the dense model's forecasts as a second target of every sparse model "
        "(distillation, L1)",
    )


@dataclass(frozen=True)
class TimingConfig:
    """How dense and compacted inference are timed side by side."""

    batch: int = setting(64, "test windows per timed call", flag="--time-batch")
    repeats: int = setting(30, "timed rounds (each times every model once)", flag="--time-repeats")
    warmup: int = setting(5, "untimed calls of each model first", flag="--time-warmup")


@dataclass(frozen=True)
class RunConfig:
    """Everything ``dynst run`` takes; see ``dynst run --help``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    constraints: ConstraintsConfig = field(default_factory=ConstraintsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    timing: TimingConfig = field(default_factory=TimingConfig)
    seed: int = setting(0, "seeds the data generator, the weights, the batches and the masks")
    out: str | None = setting(None, "run directory (default: runs/<dataset>_<model>_...)")
    quiet: bool = setting(False, "no progress bars")

    def validate(self) -> RunConfig:
        """Raise one clear ``ValueError`` naming the flag of the first bad value."""
        d, m, s, t, tm = self.data, self.model, self.schedule, self.train, self.timing
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise ValueError(f"--seed must be an integer in [0, 2^32), got {seed!r}")
        if d.distance_sigma is not None and not d.distance_sigma > 0:
            raise ValueError(f"--distance-sigma must be positive, got {d.distance_sigma}")
        if not 0.0 <= d.distance_threshold < 1.0:
            raise ValueError(f"--distance-threshold must be in [0, 1), got {d.distance_threshold}")
        parse_missing(d.missing_value)
        if isinstance(d.patch, bool) or not isinstance(d.patch, int) or d.patch < 1:
            raise ValueError(f"--patch must be a positive integer, got {d.patch!r}")
        if m.hidden is not None and m.hidden < 1:
            raise ValueError("--hidden must be >= 1")
        if m.name is not None:
            from .models import backbone

            backbone(m.name)  # unknown names: one clear error naming the choices
        if s.sparsity is not None and not (0.0 <= s.sparsity < 1.0):
            raise ValueError(f"--sparsity must be in [0, 1), got {s.sparsity}")
        c = self.constraints
        if c.budget is not None:
            if s.sparsity is not None:
                raise ValueError("--budget replaces --sparsity: give one of them")
            if not (math.isfinite(c.budget) and c.budget > 0):
                raise ValueError(f"--budget must be a positive number, got {c.budget}")
        if c.cost is not None and c.budget is None:
            raise ValueError("--cost needs --budget (the cap on the active sensors' total cost)")
        if s.mask is not None and "mask" not in s.schemes and s.scheme != "dynst":
            raise ValueError(
                f"--mask trains the given set (scheme mask) but --scheme {s.scheme} learns its "
                f"own: leave --scheme out, and compare with --also {s.scheme}"
            )
        if s.mask is not None and "mask" in s.also:
            raise ValueError("--also mask: --mask FILE already trains that set as the main scheme")
        if s.mask is None and "mask" in s.schemes:
            raise ValueError("the mask scheme trains a given set: name it with --mask FILE")
        if c.budget is not None:
            counted = [
                x for x in s.schemes if x in SPARSE_SCHEMES and not schemes.scheme(x).takes_budget
            ]
            if counted or s.mask is not None:
                what = counted[0] if counted else "mask"
                raise ValueError(
                    f"--budget: the {what} scheme takes a number of sensors, not a cost; "
                    "give --sparsity instead"
                )
        for i, scheme in enumerate(s.schemes):
            if scheme not in SPARSE_SCHEMES:
                raise ValueError(
                    f"unknown sparse scheme {scheme!r}; choose from {', '.join(SPARSE_SCHEMES)} "
                    "(dense always runs)"
                )
            if scheme in s.schemes[:i]:
                main = " (the main --scheme)" if scheme == s.scheme else ""
                raise ValueError(f"--also: {scheme} is already trained{main}; name it once")
        for section, name in (
            (t, "epochs"),
            (d, "t_in"),
            (d, "horizon"),
            (t, "batch_size"),
            (tm, "batch"),
            (s, "rounds"),
            (tm, "repeats"),
        ):
            v = getattr(section, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{flag_of(section, name)} must be >= 1 (an integer), got {v!r}")
        if tm.warmup < 0:
            raise ValueError("--time-warmup must be >= 0")
        for section, name in ((s, "warmup_frac"), (s, "prune_frac"), (s, "mask_frac")):
            if not 0.0 <= getattr(section, name) <= 1.0:
                raise ValueError(f"{flag_of(section, name)} must be in [0, 1]")
        if not 0.0 <= t.failure_rate < 1.0:
            raise ValueError(f"--failure-rate must be in [0, 1), got {t.failure_rate}")
        if not 0.0 <= t.stuck_share <= 1.0:
            raise ValueError(f"--stuck-share must be in [0, 1], got {t.stuck_share}")
        if t.stuck_share > 0 and t.failure_rate == 0:
            raise ValueError("--stuck-share makes some of the failures stuck: give --failure-rate")
        if s.prune_by not in PRUNE_BY:
            raise ValueError(f"--prune-by must be one of {', '.join(PRUNE_BY)}, got {s.prune_by!r}")
        if not 0.0 <= t.sensor_dropout < 1.0:
            raise ValueError(f"--sensor-dropout must be in [0, 1), got {t.sensor_dropout}")
        if not (math.isfinite(t.distill) and t.distill >= 0):
            raise ValueError(f"--distill must be >= 0, got {t.distill}")
        if not 0.0 <= s.swap_fraction < 1.0:
            raise ValueError(f"--swap-fraction must be in [0, 1), got {s.swap_fraction}")
        for section, name in ((t, "lr"), (s, "theta_lr")):
            v = getattr(section, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{flag_of(section, name)} must be a positive number, got {v}")
        for section, name in ((t, "weight_decay"), (s, "l1"), (t, "grad_clip")):
            v = getattr(section, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{flag_of(section, name)} must be >= 0, got {v}")
        return self

    @classmethod
    def from_flags(cls, **settings: Any) -> RunConfig:
        """A config from settings named after their flags, as the command line names them
        (``epochs=6``, ``data="runs/x"``, ``time_batch=4``, ``option={"dim": 16}``): the
        Python API's way to write ``dynst run --epochs 6 ...``."""
        cfg = cls()
        by_flag = {flag_name(f)[2:].replace("-", "_"): (section, f) for section, f in leaves()}
        sections: dict[str, dict[str, Any]] = {}
        top: dict[str, Any] = {}
        for key, value in settings.items():
            if key not in by_flag:
                raise ValueError(f"unknown setting {key!r}; settings: {', '.join(by_flag)}")
            section, f = by_flag[key]
            kind = typing.get_type_hints(type(getattr(cfg, section)) if section else cls)[f.name]
            if f.metadata.get("number_as_text") and isinstance(value, (int, float)):
                value = str(value) if not isinstance(value, bool) else value
            if f.metadata.get("number_as_text") and value is None:
                value = "none"  # missing_value=None: no sentinel
            if isinstance(value, os.PathLike):  # data=Path(...), out=tmp_path / "run"
                value = os.fspath(value)
            if isinstance(value, tuple):
                value = list(value)
            value = coerce(value, kind, key)
            (sections.setdefault(section, {}) if section else top)[f.name] = value
        new = {s: dataclasses.replace(getattr(cfg, s), **v) for s, v in sections.items()}
        return dataclasses.replace(cfg, **new, **top)

    # ---------------------------------------------------------------- dicts and TOML
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "the configuration") -> RunConfig:
        """A config from nested dicts (as TOML gives them); unknown keys and values of the
        wrong type are one clear ``ValueError`` that names them."""
        if not isinstance(d, dict):
            raise ValueError(f"{source} must be a table of settings")
        return _build(cls, d, source, "")

    @classmethod
    def from_toml(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no configuration file at {path}")
        try:
            d = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path} is not valid TOML: {exc}") from None
        return cls.from_dict(d, str(path))

    def to_toml(self) -> str:
        """The tree as TOML (unset settings, which are None, are left out)."""
        import tomli_w

        return tomli_w.dumps(_drop_none(self.to_dict()))


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _drop_none(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}


def _build(cls: type, d: dict[str, Any], source: str, prefix: str):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"{source}: unknown setting '{prefix}{unknown[0]}'")
    kwargs = {}
    for name, value in d.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            if not isinstance(value, dict):
                raise ValueError(f"{source}: [{prefix}{name}] must be a table")
            kwargs[name] = _build(kind, value, source, f"{prefix}{name}.")
        else:
            number_as_text = fields[name].metadata.get("number_as_text", False)
            if number_as_text and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = f"{value:g}" if isinstance(value, float) else str(value)
            kwargs[name] = coerce(value, kind, f"{source}: {prefix}{name}")
    return cls(**kwargs)


# ---------------------------------------------------------------- the tree's fields
def leaves(cls: type = RunConfig) -> list[tuple[str | None, dataclasses.Field]]:
    """``(section, field)`` of every setting, sections in tree order (None: top level)."""
    out = []
    for f in dataclasses.fields(cls):
        kind = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(kind):
            out += [(f.name, g) for _, g in leaves(kind)]
        else:
            out.append((None, f))
    return out


def flag_name(f: dataclasses.Field) -> str:
    """The command-line flag of a setting."""
    return f.metadata.get("flag") or f"--{f.name.replace('_', '-')}"


def flag_of(section: Any, name: str) -> str:
    """The flag of field ``name`` of a section (an instance or class of a section)."""
    return flag_name(next(f for f in dataclasses.fields(section) if f.name == name))
