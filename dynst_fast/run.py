"""``dynst run`` as a pipeline (DESIGN.md section 8): load, sensor space, resolve, build,
train dense, train sparse, evaluate, time, write.

Each step takes and returns typed values and none of them changes the configuration:
:func:`resolve` returns a new, fully resolved one (model name and options, sparsity,
run directory), which the run directory saves as ``config.toml``. Every setting and the
data are checked before the first step (``preflight``). The run is staged beside its
directory and published whole at the end (``artifacts``); training writes the training
state there after every epoch (``artifacts.save_progress``), and :func:`run` with
``resume=True`` continues from it, bit-identically on CPU.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import platform
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__, artifacts, distributed, preflight
from .artifacts import RunRecord, Trained
from .baselines import run_baselines
from .config import RunConfig
from .constraints import Constraints
from .constraints import from_config as constraints_from_config
from .data import Dataset, WindowSplits, load_dataset, make_windows
from .models import (
    CompactBackbone,
    GatedBackbone,
    backbone,
    build_backbone,
    default_backbone,
    models_for,
)
from .preflight import schedule_sparsity
from .report import format_table, render_report
from .selection import order_for, read_mask
from .sensors import SPACES, SensorSpace
from .sparsifier import Sparsifier
from .timing import METHOD, side_by_side
from .train import (
    FitResult,
    TrainingDiverged,
    eval_batch_size,
    evaluate,
    first_windows,
    fit,
    switch_on_estimate,
)

RANK_IN_REPORT = 10  # switch-on candidates listed in report.md


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``out`` is the run directory that ``--resume`` continues."""

    def __init__(self, out: str) -> None:
        super().__init__(out)
        self.out = out


# ---------------------------------------------------------------- load and resolve
def load(cfg: RunConfig) -> Dataset:
    """The data set of ``cfg`` (the synthetic planted one of the model's kind if none)."""
    kind = backbone(cfg.model.name).space if cfg.model.name else "graph"
    return load_dataset(
        cfg.data.path, kind=kind, seed=cfg.seed, patch=cfg.data.patch, data=cfg.data
    )


def sensor_space(ds: Dataset, cfg: RunConfig) -> SensorSpace:
    return ds.sensor_space(cfg.data.patch)


def resolve(cfg: RunConfig, ds: Dataset, space: SensorSpace) -> RunConfig:
    """``cfg`` with every default that depends on the data filled in (a new config): the
    model (the default of the data's kind), all its options, the sparsity (the planted
    one on synthetic data, else 0.5; none with a budget) and the run directory."""
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
    scheme = cfg.schedule.scheme
    if cfg.schedule.mask is not None:
        sparsity = mask_sparsity(cfg, space)
        scheme = "mask" if scheme == "dynst" else scheme
    if sparsity is None and budget is None:
        sparsity = space.planted_sparsity if space.planted is not None else 0.5
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(ds.name)).strip("._") or "data"
    target = f"b{budget:g}" if budget is not None else f"s{sparsity:g}"
    out = cfg.out or (f"runs/{safe}_{name}_{scheme}_{target}_seed{cfg.seed}")
    return dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, name=name, hidden=None, options=options),
        schedule=dataclasses.replace(cfg.schedule, sparsity=sparsity, scheme=scheme),
        out=out,
    )


def mask_sparsity(cfg: RunConfig, space: SensorSpace) -> float:
    """The sparsity of ``--mask``'s set, checked against ``--sparsity`` if that is given."""
    n = space.num_sensors
    k = len(read_mask(cfg.schedule.mask, space.ids))
    given = cfg.schedule.sparsity
    if given is not None and n - int(round(given * n)) != k:
        raise ValueError(
            f"--sparsity {given:g} keeps {n - int(round(given * n))} of {n} sensors but --mask "
            f"names {k}: leave --sparsity out (the mask sets it)"
        )
    return 1.0 - k / n


def sensor_orders(
    cfg: RunConfig, splits: WindowSplits, space: SensorSpace, constraints: Constraints | None
) -> Callable[[str], torch.Tensor | None]:
    """The fixed-set schemes' sensor orders (``dynst_fast.selection``), computed when a
    stage first asks for one (a resumed run skips those already trained)."""
    n = space.num_sensors
    mask = read_mask(cfg.schedule.mask, space.ids) if cfg.schedule.mask is not None else None
    if mask is not None and constraints is not None:
        chosen = set(mask)
        lost = [space.ids[i] for i in torch.nonzero(constraints.keep).flatten().tolist()]
        lost = [s for s in lost if s not in chosen]
        banned = [space.ids[i] for i in torch.nonzero(constraints.forbid).flatten().tolist()]
        banned = [s for s in banned if s in chosen]
        if lost or banned:
            what = f"leaves out kept {lost[0]!r}" if lost else f"holds forbidden {banned[0]!r}"
            raise ValueError(f"--mask {cfg.schedule.mask} {what}")

    def order(scheme: str) -> torch.Tensor | None:
        k = n - int(round(schedule_sparsity(cfg, constraints) * n))
        if scheme in ("qr", "greedy") and not cfg.quiet:
            print(f"dynst run: choosing {k} of {n} sensors ({scheme})", file=sys.stderr)
        return order_for(scheme, splits, space, k, constraints, mask)

    return order


def build(cfg: RunConfig, space: SensorSpace, num_channels: int) -> GatedBackbone:
    """The resolved backbone, its weights drawn from ``torch`` seeded with ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    m, d = cfg.model, cfg.data
    return build_backbone(m.name, space, d.t_in, d.horizon, num_channels, m.options)


# ---------------------------------------------------------------- training
class _Progress:
    """One tqdm bar per training, showing phase, round and sparsity."""

    def __init__(self, label: str, total: int, done: int, quiet: bool) -> None:
        self.bar = tqdm(total=total, initial=done, desc=label, unit="epoch", disable=quiet)

    def __call__(self, info: dict[str, Any]) -> None:
        post = {
            "phase": info["phase"],
            "sparsity": f"{info['sparsity']:.2f}",
            "loss": f"{info['loss']:.4f}",
        }
        if info["round"]:
            post["round"] = info["round"]
        if info["val_mae"] == info["val_mae"]:
            post["val_mae"] = f"{info['val_mae']:.4f}"
        post["steps/s"] = f"{info['steps_per_s']:.3g}"
        post["windows/s"] = f"{info['windows_per_s']:.3g}"
        self.bar.set_postfix(post)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


class Stages:
    """The trainings of a run, checkpointed: finished ones and the running one's state
    after its last epoch, saved to the run directory after every epoch (unless
    ``checkpoint`` is False)."""

    def __init__(
        self,
        cfg: RunConfig,
        progress: dict[str, Any] | None = None,
        checkpoint: bool = True,
        constraints: Constraints | None = None,
        orders: Callable[[str], torch.Tensor | None] | None = None,
    ) -> None:
        self.cfg, self.checkpoint, self.constraints = cfg, checkpoint, constraints
        self.orders = orders
        self.done: dict[str, dict[str, Any]] = dict(progress["done"]) if progress else {}
        self.current: dict[str, Any] | None = progress.get("current") if progress else None

    def train(self, name: str, scheme: str, model: GatedBackbone, splits: WindowSplits) -> Trained:
        """Train ``model`` (in place) under ``scheme``, or restore it if already trained."""
        cfg = self.cfg
        if name in self.done:
            rec = self.done[name]
            model.load_state_dict(rec["model_state"])
            return Trained(scheme, model, _fit_result(rec))
        resume = self.current["state"] if self.current and self.current["stage"] == name else None
        bar = _Progress(name, cfg.train.epochs, resume["epoch"] if resume else 0, cfg.quiet)
        try:
            result = fit(
                model,
                splits,
                cfg.train,
                cfg.schedule,
                scheme=scheme,
                sparsity=0.0 if scheme == "dense" else schedule_sparsity(cfg, self.constraints),
                seed=cfg.seed,
                progress=bar,
                on_epoch=(lambda st: self._save({"stage": name, "state": st}))
                if self.checkpoint
                else None,
                resume=resume,
                constraints=None if scheme == "dense" else self.constraints,
                order=self.orders(scheme) if self.orders is not None and resume is None else None,
            )
        except TrainingDiverged as exc:
            raise TrainingDiverged(f"the {name} model's {exc}") from None
        finally:
            bar.close()
        self.done[name] = {
            "model_state": model.state_dict(),
            "sparsifier": result.sparsifier.state_dict(),
            "best_val_mae": result.best_val_mae,
            "best_epoch": result.best_epoch,
            "losses": result.losses,
            "val_maes": result.val_maes,
            "seconds": result.seconds,
            "optimizer_state": result.optimizer_state,
        }
        self.current = None
        return Trained(scheme, model, result)

    def _save(self, current: dict[str, Any] | None) -> None:
        progress = {"done": self.done, "current": current, "world_size": distributed.world_size()}
        artifacts.save_progress(self.cfg.out, self.cfg, progress)


def _fit_result(rec: dict[str, Any]) -> FitResult:
    return FitResult(
        sparsifier=Sparsifier.from_state_dict(rec["sparsifier"]),
        best_val_mae=rec["best_val_mae"],
        best_epoch=rec["best_epoch"],
        losses=list(rec["losses"]),
        val_maes=list(rec["val_maes"]),
        seconds=rec["seconds"],
        optimizer_state=rec["optimizer_state"],
    )


def train_dense(stages: Stages, model: GatedBackbone, splits: WindowSplits) -> Trained:
    """Train the backbone with every sensor on."""
    return stages.train("dense", "dense", model, splits)


def train_sparse(stages: Stages, dense: Trained, splits: WindowSplits, scheme: str) -> Trained:
    """Fine-tune a copy of the dense model under ``scheme`` to the target sparsity."""
    return stages.train(scheme, scheme, copy.deepcopy(dense.model), splits)


# ---------------------------------------------------------------- evaluate and time
@dataclass(frozen=True)
class Timing:
    """Dense against compacted inference, timed side by side (ms per call)."""

    dense_ms: float
    compact_ms: float

    @property
    def ratio(self) -> float:
        return self.dense_ms / self.compact_ms


def compacted(sparse: dict[str, Trained]) -> dict[str, CompactBackbone]:
    """The deployed (compacted) model of every sparse training, built once."""
    out = {}
    for name, t in sparse.items():
        sp = t.fit.sparsifier
        out[name] = t.model.compact(sp.active_index(), sp.theta.detach()).eval()
    return out


def evaluate_run(
    dense: Trained,
    compacts: dict[str, CompactBackbone],
    splits: WindowSplits,
    space: SensorSpace,
    kept: torch.Tensor | None = None,
) -> dict[str, dict[str, Any]]:
    """Test metrics of the dense model and of every compacted sparse model, each also on
    its kept and dropped sensors apart (the dense model on those of ``kept``, the main
    scheme's active set, so that the two compare on the same sensors)."""
    out = {"dense": evaluate(dense.model, splits, space, kept=kept)}
    for name, c in compacts.items():
        out[name] = evaluate(c, splits, space, active_index=c.index)
    return out


def timing_batch(cfg: RunConfig, splits: WindowSplits) -> int:
    """Test windows per timed call: ``--time-batch``, at most what the test split has and
    what an evaluation batch holds (``train.eval_batch_size``: fewer for large N)."""
    return min(cfg.timing.batch, len(splits.test), eval_batch_size(splits.test))


def time_run(
    cfg: RunConfig, dense: Trained, compacts: dict[str, CompactBackbone], splits: WindowSplits
) -> dict[str, Timing]:
    """For every sparse scheme, dense against compacted inference side by side on the
    first test windows; the compacted time includes gathering the active sensors' input
    from the full input (for images, ``ops.patchify_compact`` of the frames)."""
    xb, _ = first_windows(splits.test, timing_batch(cfg, splits))
    dense.model.eval()
    out = {}
    for name, c in compacts.items():
        times = side_by_side(
            {"dense": lambda: dense.model(xb), "compact": lambda c=c: c(c.gather_input(xb))},
            repeats=cfg.timing.repeats,
            warmup=cfg.timing.warmup,
        )
        out[name] = Timing(times["dense"], times["compact"])
    return out


def sparse_metrics(
    metrics: dict[str, Any], trained: Trained, timing: Timing, space: SensorSpace
) -> dict[str, Any]:
    """A sparse scheme's entry of ``metrics.json``. A model that gives no speedup
    (``InputMasked``) reports ``speedup`` None and the plain time ratio as
    ``measured_ratio``."""
    sp = trained.fit.sparsifier
    index = sp.active_index()
    gives = trained.model.gives_speedup
    m = {
        **metrics,
        "infer_ms": timing.compact_ms,
        "dense_infer_ms": timing.dense_ms,
        "speedup": timing.ratio if gives else None,
        "gives_speedup": gives,
        "num_active": int(index.numel()),
        "train_seconds": trained.fit.seconds,
        "swaps": sum(len(h.get("dropped", [])) for h in sp.history),
    }
    if not gives:
        m["measured_ratio"] = timing.ratio
    if space.planted is not None:
        m["planted_recall"] = float(np.isin(space.planted, index.numpy()).mean())
    return m


def non_finite(metrics: dict[str, dict[str, Any]]) -> list[str]:
    """Warnings (also printed to stderr) for test metrics that are NaN or infinite, which
    ``metrics.json`` holds as null: a model whose forecasts overflowed."""
    out = []
    for name, m in metrics.items():
        bad = [k for k, v in m.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            text = (
                f"the {name} model's test {', '.join(bad)} is not finite (null in "
                "metrics.json): its forecasts overflow or are NaN on the test split"
            )
            out.append(f"**Warning:** {text}.")
            print(f"dynst run: warning: {text}", file=sys.stderr)
    return out


def write(out: str | Path, record: RunRecord) -> None:
    artifacts.write_run(out, record)


# ---------------------------------------------------------------- the pipeline
def run(cfg: RunConfig, resume: bool = False) -> dict[str, Any]:
    """Run the main job and write the run directory; returns the metrics dict.

    ``resume``: ``cfg.out`` holds an interrupted run; continue it (its saved
    configuration is used, ``cfg`` only gives the directory and ``quiet``).
    """
    t_start = time.perf_counter()
    joined = distributed.init_from_env()  # under torchrun: one of several ranks
    try:
        return _run(cfg, resume, t_start)
    finally:
        if joined:
            distributed.shutdown()


def _run(cfg: RunConfig, resume: bool, t_start: float) -> dict[str, Any]:
    main = distributed.is_main()
    progress = None
    if resume:
        saved, progress = artifacts.load_progress(cfg.out)
        cfg = dataclasses.replace(saved, quiet=cfg.quiet)
        was, now = int(progress.get("world_size", 1)), distributed.world_size()
        if was != now:
            raise ValueError(
                f"the run was trained on {was} process(es) and resumes on {now}: resume it "
                f"with --nproc {was} (the batches depend on it)"
            )
    cfg.validate()
    ds = load(cfg)
    space = sensor_space(ds, cfg)
    cfg = resolve(cfg, ds, space)
    constraints = constraints_from_config(cfg.constraints, space.ids)
    splits = make_windows(ds, t_in=cfg.data.t_in, t_out=cfg.data.horizon)
    preflight.check_run(cfg, ds, splits, space, constraints)
    if not main:  # train in step with rank 0, which alone writes and shows progress
        if not distributed.all_ok(True):  # rank 0 could not start the run directory
            raise RuntimeError("rank 0 could not start the run directory (its error is above)")
        cfg = dataclasses.replace(cfg, quiet=True)
        orders = sensor_orders(cfg, splits, space, constraints)
        stages = Stages(cfg, progress, checkpoint=False, constraints=constraints, orders=orders)
        dense = train_dense(stages, build(cfg, space, ds.num_channels), splits)
        for s in cfg.schedule.schemes:
            train_sparse(stages, dense, splits, s)
        return {"out": str(cfg.out), "rank": distributed.rank()}
    try:
        stage = artifacts.begin_run(cfg.out, resume=resume)
        artifacts.write_config(stage, cfg)
    except BaseException:
        distributed.all_ok(False)  # the other ranks stop rather than wait for rank 0
        raise
    distributed.all_ok(True)
    orders = sensor_orders(cfg, splits, space, constraints)
    stages = Stages(cfg, progress, constraints=constraints, orders=orders)
    try:
        if not resume:
            stages._save(None)  # Ctrl-C from the first step on leaves a run to resume
        dense = train_dense(stages, build(cfg, space, ds.num_channels), splits)
        sparse = {s: train_sparse(stages, dense, splits, s) for s in cfg.schedule.schemes}
        m = finish(cfg, ds, space, splits, dense, sparse, t_start, constraints)
    except KeyboardInterrupt:
        raise RunInterrupted(str(cfg.out)) from None
    except TrainingDiverged:
        shutil.rmtree(stage, ignore_errors=True)  # resuming would diverge the same way
        raise
    return {**m, "out": str(cfg.out)}


def finish(
    cfg: RunConfig,
    ds: Dataset,
    space: SensorSpace,
    splits: WindowSplits,
    dense: Trained,
    sparse: dict[str, Trained],
    t_start: float,
    constraints: Constraints | None = None,
) -> dict[str, Any]:
    """Evaluate, time and write the run directory (published whole); its metrics."""
    compacts = compacted(sparse)
    main_index = sparse[cfg.schedule.scheme].fit.sparsifier.active_index()
    metrics = evaluate_run(dense, compacts, splits, space, kept=main_index)
    timings = time_run(cfg, dense, compacts, splits)
    main = sparse[cfg.schedule.scheme]
    m = metrics_json(cfg, ds, space, splits, dense, sparse, metrics, timings)
    m["seconds"] = time.perf_counter() - t_start
    if constraints is not None:
        m["constraints"] = constraint_fields(constraints, main.fit.sparsifier, space)
    gain = switch_on_estimate(main.fit.sparsifier, splits.std)
    candidates = []
    if gain is not None:
        if constraints is not None:  # a forbidden sensor cannot be switched back on
            gain[constraints.forbid.numpy()] = np.nan
        off = np.flatnonzero(~main.fit.sparsifier.active.cpu().numpy() & ~np.isnan(gain))
        top = off[np.argsort(-gain[off], kind="stable")][:RANK_IN_REPORT]
        candidates = [(space.ids[i], float(gain[i])) for i in top]
    notes = space.notes(m) + non_finite(metrics)
    report = render_report(m, main.fit.sparsifier.history, notes, candidates)
    record = RunRecord(
        config=cfg,
        dataset=ds.name,
        units=ds.units,
        num_channels=ds.num_channels,
        space=space,
        mean=splits.mean,
        std=splits.std,
        dense=dense,
        main=main,
        metrics=m,
        report=report,
        switch_on=gain,
    )
    write(cfg.out, record)
    return m


def constraint_fields(c: Constraints, sp: Sparsifier, space: SensorSpace) -> dict[str, Any]:
    """``metrics.json``'s (and ``mask.json``'s) account of the constraints: the kept and
    forbidden ids, and with a budget the active set's cost against it."""
    ids = space.ids
    out: dict[str, Any] = {
        "keep": [ids[i] for i in torch.nonzero(c.keep).flatten().tolist()],
        "forbid": [ids[i] for i in torch.nonzero(c.forbid).flatten().tolist()],
    }
    if c.budget is not None:
        out.update(
            budget=c.budget,
            cost=sp.cost,
            total_cost=float(c.costs.sum()),
            costed=c.cost is not None,
        )
    return out


def metrics_json(
    cfg: RunConfig,
    ds: Dataset,
    space: SensorSpace,
    splits: WindowSplits,
    dense: Trained,
    sparse: dict[str, Trained],
    metrics: dict[str, dict[str, Any]],
    timings: dict[str, Timing],
) -> dict[str, Any]:
    """``metrics.json`` (DESIGN.md section 8) from the evaluations and timings."""
    s = cfg.schedule
    per_scheme = {
        name: sparse_metrics(metrics[name], t, timings[name], space) for name, t in sparse.items()
    }
    main = per_scheme[s.scheme]
    sp = sparse[s.scheme].fit.sparsifier
    idx = sp.active_index()
    dense_m = {
        **metrics["dense"],
        "train_seconds": dense.fit.seconds,
        "infer_ms": timings[s.scheme].dense_ms,
    }
    out: dict[str, Any] = {
        "dataset": ds.name,
        "model": cfg.model.name,
        "scheme": s.scheme,
        "num_sensors": space.num_sensors,
        "sparsity": sp.sparsity,
        "target_sparsity": s.sparsity,
        "num_active": int(idx.numel()),
        "active_sensors": [space.ids[i] for i in idx.tolist()],
        "units": ds.units,
        "t_in": cfg.data.t_in,
        "t_out": cfg.data.horizon,
        "dense": dense_m,
        "dynst": main,
        "speedup": main["speedup"],
        "others": {k: v for k, v in per_scheme.items() if k != s.scheme},
        "baselines": run_baselines(splits, space),
        "world_size": distributed.world_size(),
        "timing": {
            "batch": timing_batch(cfg, splits),
            "threads": torch.get_num_threads(),
            "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
            "method": METHOD.format(repeats=cfg.timing.repeats, warmup=cfg.timing.warmup),
        },
        "config": cfg.to_dict(),
        "version": __version__,
        "seconds": None,  # the run's wall time, filled in by run()
    }
    out.update(space.metrics_fields())
    if space.planted is not None:
        out["planted_recall"] = main["planted_recall"]
        out["planted_sensors"] = [space.ids[i] for i in space.planted.tolist()]
    return out


__all__ = [
    "RunConfig",
    "run",
    "load",
    "sensor_space",
    "resolve",
    "build",
    "train_dense",
    "train_sparse",
    "evaluate_run",
    "time_run",
    "metrics_json",
    "format_table",
    "Stages",
]
