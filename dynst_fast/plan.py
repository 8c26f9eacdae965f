"""A run, resolved once: everything ``dynst run`` (and every bench) trains, worked out
before the first step and never again.

:func:`resolve` takes a configuration and returns a frozen :class:`RunPlan`: the
configuration with every data-dependent default filled in, the data set, its sensor
space and windows, the constraints, the target sparsity and K, and one :class:`Stage`
per training (the dense model, then each sparse scheme) with its scheme object and its
step schedule. Every check of the settings and the data runs here (``preflight``). A
stage builds its own sparsifier, with the scheme's order when the scheme has one, so
that no caller can start a data-chosen set from a random draw.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from dataclasses import dataclass, field

import torch
from torch import Tensor

from . import distributed, preflight
from .config import RunConfig, ScheduleConfig, TrainConfig, prune_signal
from .constraints import Constraints
from .constraints import from_config as constraints_from_config
from .data import Dataset, WindowSplits, load_dataset, make_windows
from .models import GatedBackbone, backbone, build_backbone, default_backbone, models_for
from .schedule import Schedule, active_count
from .schemes import OrderMemo, OrderSource, Scheme, scheme
from .selection import read_mask
from .sensors import SPACES, SensorSpace
from .sparsifier import Sparsifier


@dataclass(frozen=True)
class Stage:
    """One training of a run: the dense model (``scheme.dense``) or one sparse scheme,
    with its step schedule and what its sparsifier takes."""

    name: str
    scheme: Scheme
    schedule: Schedule
    settings: ScheduleConfig  # theta_lr, l1, prune_by
    seed: int
    constraints: Constraints | None = None
    source: OrderSource | None = None  # where a fixed-set scheme's order comes from
    memo: OrderMemo = field(default_factory=OrderMemo, compare=False, repr=False)
    quiet: bool = True

    def order(self) -> Tensor | None:
        """The scheme's starting order (computed once, shared through ``memo``), or None
        where the scheme learns its set or draws a seeded random one."""
        if not self.scheme.needs_order:
            return None
        if self.source is None:
            raise ValueError(f"the {self.name} scheme needs the data to choose its sensors")
        line = self.scheme.describe(self.source)
        if line and not self.quiet:
            print(f"dynst run: {line}", file=sys.stderr)
        return self.memo.get(self.scheme, self.source)

    def sparsifier(self, saved: dict | None = None, device: str = "cpu") -> Sparsifier:
        """A fresh sparsifier of this stage. ``saved``: a state it is about to be loaded
        from (resuming), whose active set then stands in for the scheme's order."""
        order = None
        if saved is not None and self.scheme.needs_order:
            active = torch.as_tensor(saved["active"], dtype=torch.bool).cpu()
            order = torch.cat([torch.nonzero(active), torch.nonzero(~active)]).reshape(-1)
        elif saved is None:
            order = self.order()
        s = self.settings
        return Sparsifier(
            self.schedule,
            theta_lr=s.theta_lr,
            l1=s.l1,
            seed=self.seed,
            device=device,
            constraints=None if self.scheme.dense else self.constraints,
            order=order,
            prune_by=s.prune_by,
        )


def make_stage(
    name: str | Scheme,
    *,
    train: TrainConfig,
    settings: ScheduleConfig,
    sparsity: float,
    num_sensors: int,
    num_windows: int,
    seed: int,
    constraints: Constraints | None = None,
    source: OrderSource | None = None,
    memo: OrderMemo | None = None,
    world: int | None = None,
    quiet: bool = True,
) -> Stage:
    """The stage of one scheme over ``train.epochs`` epochs of ``num_windows`` windows in
    global batches of ``train.batch_size`` per process x ``world`` processes (default:
    this job's), its schedule checked (``preflight.check_schedule``). ``settings.prune_by``
    must name the signal itself (``config.prune_signal`` resolves ``auto`` for a kind of
    data; ``resolve`` does it for a run)."""
    if settings.prune_by not in ("theta", "taylor"):
        raise ValueError(
            f"make_stage: prune_by {settings.prune_by!r} is not resolved: give theta or taylor "
            "(config.prune_signal(prune_by, space.kind))"
        )
    s = scheme(name)
    world = distributed.world_size() if world is None else world
    schedule = preflight.check_schedule(
        train, settings, s, 0.0 if s.dense else sparsity, num_sensors, num_windows, world
    )
    return Stage(s.name, s, schedule, settings, seed, constraints, source,
                 memo or OrderMemo(), quiet)  # fmt: skip


@dataclass(frozen=True)
class RunPlan:
    """A resolved run (see the module docstring). ``sparsity`` is what the sparse
    schedules are built for (``--sparsity``, or with ``--budget`` the one that sizes its
    swaps) and ``k`` = N - round(sparsity N) the active count it reaches."""

    config: RunConfig
    dataset: Dataset
    space: SensorSpace
    splits: WindowSplits
    constraints: Constraints | None
    sparsity: float
    k: int
    dense: Stage
    stages: dict[str, Stage]  # the sparse ones, the main scheme first

    @property
    def main(self) -> Stage:
        return self.stages[self.config.schedule.scheme]

    @property
    def out(self) -> str:
        return str(self.config.out)

    def build_model(self) -> GatedBackbone:
        """The resolved backbone, its weights drawn from ``torch`` seeded with the seed;
        :class:`ModelBuildError` naming the options where they do not make a model."""
        cfg = self.config
        torch.manual_seed(cfg.seed)
        m, d = cfg.model, cfg.data
        try:
            return build_backbone(m.name, self.space, d.t_in, d.horizon,
                                  self.dataset.num_channels, m.options)  # fmt: skip
        except (ValueError, TypeError, RuntimeError, ZeroDivisionError, OverflowError,
                MemoryError) as exc:  # fmt: skip
            first = " ".join(str(exc).split())[:200] or type(exc).__name__
            options = ", ".join(f"{k}={v}" for k, v in m.options.items())
            raise ModelBuildError(
                f"--model {m.name} cannot be built with its options ({options}): {first}; "
                "see --model's list for what each --option / --hidden takes"
            ) from None


class ModelBuildError(ValueError):
    """The backbone's options do not make a model (nothing was trained, so nothing is
    kept to resume)."""


def load(cfg: RunConfig) -> Dataset:
    """The data set of ``cfg`` (the synthetic planted one of the model's kind if none)."""
    kind = backbone(cfg.model.name).space if cfg.model.name else "graph"
    d = cfg.data
    return load_dataset(d.path, kind=kind, seed=cfg.seed, patch=d.patch,
                        options=d.read_options())  # fmt: skip


def resolve_config(cfg: RunConfig, ds: Dataset, space: SensorSpace) -> RunConfig:
    """``cfg`` with every default that depends on the data filled in (a new config): the
    model (the default of the data's kind), all its options, the sparsity (the planted
    one on synthetic data, else 0.5; none with a budget), the main scheme (``mask`` with
    ``--mask``), the pruning signal (``auto``'s choice for the data's kind) and the run
    directory."""
    name = cfg.model.name or default_backbone(space.kind)
    spec = backbone(name)
    if space.kind != spec.space:
        raise ValueError(
            f"{cfg.data.path!r} is {space.kind} data but --model {name} needs "
            f"{SPACES[spec.space].data_description} data; models for {space.kind} data: "
            f"{', '.join(models_for(space.kind))}"
        )
    options = dict(cfg.model.options)
    if cfg.model.hidden is not None:
        if spec.width is None:
            raise ValueError(f"--hidden: model {name} has no width option")
        options[spec.width] = cfg.model.hidden
    options = spec.parse_options(options)
    sparsity, budget = cfg.schedule.sparsity, cfg.constraints.budget
    main = cfg.schedule.scheme
    if cfg.schedule.mask is not None:
        sparsity = _mask_sparsity(cfg, space)
        main = "mask" if main == "dynst" else main
    if sparsity is None and budget is None:
        sparsity = space.planted_sparsity if space.planted is not None else 0.5
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(ds.name)).strip("._") or "data"
    target = f"b{budget:g}" if budget is not None else f"s{sparsity:g}"
    out = cfg.out or (f"runs/{safe}_{name}_{main}_{target}_seed{cfg.seed}")
    prune_by = prune_signal(cfg.schedule.prune_by, space.kind)
    return dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, name=name, hidden=None, options=options),
        schedule=dataclasses.replace(
            cfg.schedule, sparsity=sparsity, scheme=main, prune_by=prune_by
        ),
        out=out,
    )


def _mask_sparsity(cfg: RunConfig, space: SensorSpace) -> float:
    """The sparsity of ``--mask``'s set, checked against ``--sparsity`` if that is given."""
    n = space.num_sensors
    k = len(read_mask(cfg.schedule.mask, space.ids))
    given = cfg.schedule.sparsity
    if given is not None and active_count(n, given) != k:
        raise ValueError(
            f"--sparsity {given:g} keeps {active_count(n, given)} of {n} sensors but --mask "
            f"names {k}: leave --sparsity out (the mask sets it)"
        )
    return 1.0 - k / n


def _check_mask(cfg: RunConfig, mask: list[str], c: Constraints | None, space: SensorSpace) -> None:
    """``--mask``'s set keeps every kept sensor and no forbidden one."""
    if c is None:
        return
    chosen = set(mask)
    lost = [space.ids[i] for i in torch.nonzero(c.keep).flatten().tolist()]
    lost = [s for s in lost if s not in chosen]
    banned = [space.ids[i] for i in torch.nonzero(c.forbid).flatten().tolist()]
    banned = [s for s in banned if s in chosen]
    if lost or banned:
        what = f"leaves out kept {lost[0]!r}" if lost else f"holds forbidden {banned[0]!r}"
        raise ValueError(f"--mask {cfg.schedule.mask} {what}")


def resolve(
    cfg: RunConfig, *, dataset: Dataset | None = None, memo: OrderMemo | None = None
) -> RunPlan:
    """The plan of ``cfg`` (see the module docstring), every check passed. ``dataset``:
    this data set instead of loading ``cfg.data.path`` again; ``memo``: orders shared
    with other plans (benches that train one scheme at several sparsities)."""
    cfg.validate()
    ds = load(cfg) if dataset is None else dataset
    if getattr(ds, "missing", None) is not None and not cfg.quiet and distributed.is_main():
        print(f"dynst run: {ds.name}: {ds.missing.describe()}", file=sys.stderr)
    space = ds.sensor_space(cfg.data.patch)
    cfg = resolve_config(cfg, ds, space)
    calendar = getattr(ds, "calendar", None) if cfg.model.options.get("calendar") else None
    space.with_calendar(calendar)  # the backbone asks for it and the data can say it
    constraints = constraints_from_config(cfg.constraints, space.ids)
    splits = make_windows(
        ds, t_in=cfg.data.t_in, t_out=cfg.data.horizon, calendar=calendar is not None
    )
    n = space.num_sensors
    budget = constraints is not None and constraints.budget is not None
    sparsity = constraints.sizing_sparsity() if budget else float(cfg.schedule.sparsity)
    k = active_count(n, sparsity)
    if constraints is not None:
        constraints.check(None if budget else k, space.ids)
    mask = None
    if cfg.schedule.mask is not None:
        mask = read_mask(cfg.schedule.mask, space.ids)
        _check_mask(cfg, mask, constraints, space)
    memo = memo or OrderMemo()
    source = OrderSource(splits, space, k, constraints, mask)

    def stage(name: str) -> Stage:
        return make_stage(name, train=cfg.train, settings=cfg.schedule, sparsity=sparsity,
                          num_sensors=n, num_windows=len(splits.train), seed=cfg.seed,
                          constraints=constraints, source=source, memo=memo,
                          quiet=cfg.quiet)  # fmt: skip

    stages = {name: stage(name) for name in cfg.schedule.schemes}
    preflight.check_data(ds, splits, space.metrics_need_range)
    return RunPlan(cfg, ds, space, splits, constraints, sparsity, k, stage("dense"), stages)


def with_sparsity(cfg: RunConfig, sparsity: float) -> RunConfig:
    """``cfg`` at another target sparsity (a bench's sweep)."""
    return dataclasses.replace(cfg, schedule=dataclasses.replace(cfg.schedule, sparsity=sparsity))


__all__ = ["RunPlan", "Stage", "load", "make_stage", "resolve", "resolve_config",
           "with_sparsity", "math"]  # fmt: skip
