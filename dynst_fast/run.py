"""``dynst run`` as a pipeline (DESIGN.md section 8): resolve, train, evaluate, time, write.

:func:`run` resolves the configuration into a :class:`~dynst_fast.plan.RunPlan` (every
setting and the data checked before the first step), trains its stages
(:class:`~dynst_fast.stages.Stages`: the dense model, then each sparse scheme, saving the
training state after every epoch), then :func:`finish` evaluates the dense and the
compacted models on the test split, times them side by side, and writes the run
directory, staged beside it and published whole (``artifacts``, ``rundir``). With
``resume=True`` it continues an interrupted run bit-identically on CPU. Under torchrun
every rank trains in step; rank 0 alone writes and shows progress.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import distributed
from .artifacts import RunRecord, write_config, write_run
from .baselines import run_baselines
from .config import RunConfig
from .constraints import Constraints
from .data.windows import eval_batch_size
from .evaluation import evaluate_model
from .models import CompactBackbone
from .plan import ModelBuildError, RunPlan, resolve
from .records import (
    DenseResult,
    MaskRecord,
    MetricsDict,
    RunMetrics,
    SchemeResult,
    TimingInfo,
)
from .report import format_table, render_report
from .rundir import begin_run
from .sparsifier import Sparsifier
from .stages import Stages, Trained, load_progress
from .timing import METHOD, side_by_side
from .train import TrainingDiverged, first_windows, switch_on_estimate

RANK_IN_REPORT = 10  # switch-on candidates listed in report.md


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``out`` is the run directory that ``--resume`` continues."""

    def __init__(self, out: str) -> None:
        super().__init__(out)
        self.out = out


# ---------------------------------------------------------------- the pipeline
def run(cfg: RunConfig, resume: bool = False) -> dict[str, Any]:
    """Run the main job and write the run directory; returns ``metrics.json`` as a dict
    (``records.MetricsDict``) with the run directory as ``"out"``.

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
        saved, progress = load_progress(cfg.out)
        cfg = dataclasses.replace(saved, quiet=cfg.quiet)
    if not main:  # rank 0 alone shows progress
        cfg = dataclasses.replace(cfg, quiet=True)
    plan = resolve(cfg)
    stage_dir = None
    if main:
        try:
            stage_dir = begin_run(plan.out, resume=resume)
            write_config(stage_dir, plan.config)
        except BaseException:
            distributed.all_ok(False)  # the other ranks stop rather than wait for rank 0
            raise
    if not distributed.all_ok(True):  # rank 0 could not start the run directory
        raise RuntimeError("rank 0 could not start the run directory (its error is above)")
    stages = Stages(plan, progress, checkpoint=main)
    try:
        if main and not resume:
            stages.save(None)  # Ctrl-C from the first step on leaves a run to resume
        dense, sparse = stages.run()
        if not main:  # trained in step with rank 0, which evaluates and writes
            return {"out": plan.out, "rank": distributed.rank()}
        metrics = finish(plan, dense, sparse, t_start)
    except KeyboardInterrupt:
        raise RunInterrupted(plan.out) from None
    except (TrainingDiverged, ModelBuildError):
        if stage_dir is not None:  # resuming would diverge or fail the same way
            shutil.rmtree(stage_dir, ignore_errors=True)
        raise
    return MetricsDict({**metrics.to_dict(), "out": plan.out})


def finish(plan: RunPlan, dense: Trained, sparse: dict[str, Trained], t_start: float) -> RunMetrics:
    """Evaluate, time and write the run directory (published whole); its metrics."""
    main = sparse[plan.main.name]
    compacts = compacted(sparse)
    scores = evaluate_run(dense, compacts, plan, kept=main.fit.sparsifier.active_index())
    timings = time_run(plan, dense, compacts)
    gain = switch_on_estimate(main.fit.sparsifier, plan.splits.std)
    if gain is not None and plan.constraints is not None:
        gain[plan.constraints.forbid.numpy()] = np.nan  # never switched back on
    results = {
        name: scheme_result(scores[name], t, timings[name], plan) for name, t in sparse.items()
    }
    constraints = constraint_fields(plan.constraints, main.fit.sparsifier, plan)
    metrics = run_metrics(plan, dense, main, scores["dense"], results, timings, constraints,
                          time.perf_counter() - t_start)  # fmt: skip
    sp = main.fit.sparsifier
    mask = MaskRecord.build(
        plan.space.ids,
        sp.theta.detach().cpu().tolist(),
        sp.active.cpu().tolist(),
        main.scheme,
        constraints,
        gain,
        plan.dataset.units,
    )
    candidates = [
        (plan.space.ids[i], mask.switch_on_gain[i])
        for i in (mask.switch_on_ranking or [])[:RANK_IN_REPORT]
    ]
    notes = plan.space.notes(scores["dense"]) + non_finite(scores)
    worst = worst_switched_off(scores[main.scheme], scores["dense"], mask, plan)
    report = render_report(metrics, sp.history, notes, candidates, worst)
    ds = plan.dataset
    record = RunRecord(
        config=plan.config,
        dataset=ds.name,
        units=ds.units,
        num_channels=ds.num_channels,
        space=plan.space,
        mean=plan.splits.mean,
        std=plan.splits.std,
        dense=dense,
        main=main,
        metrics=metrics,
        mask=mask,
        report=report,
    )
    write_run(plan.out, record)
    return metrics


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
    plan: RunPlan,
    kept: torch.Tensor | None = None,
) -> dict[str, dict[str, Any]]:
    """Test metrics of the dense model and of every compacted sparse model, each also on
    its kept and dropped sensors apart (the dense model on those of ``kept``, the main
    scheme's active set, so that the two compare on the same sensors)."""
    splits, space = plan.splits, plan.space
    out = {"dense": evaluate_model(dense.model, splits, space, kept=kept, per_sensor=True)}
    for name, c in compacts.items():
        out[name] = evaluate_model(c, splits, space, active_index=c.index, per_sensor=True)
    return out


def timing_batch(plan: RunPlan) -> int:
    """Test windows per timed call: ``--time-batch``, at most what the test split has and
    what an evaluation batch holds (``eval_batch_size``: fewer for large N)."""
    test = plan.splits.test
    return min(plan.config.timing.batch, len(test), eval_batch_size(test))


def time_run(
    plan: RunPlan, dense: Trained, compacts: dict[str, CompactBackbone]
) -> dict[str, Timing]:
    """For every sparse scheme, dense against compacted inference side by side on the
    first test windows; the compacted time includes gathering the active sensors' input
    from the full input (for images, ``ops.patchify_compact`` of the frames)."""
    xb, _ = first_windows(plan.splits.test, timing_batch(plan))
    t = plan.config.timing
    dense.model.eval()
    out = {}
    for name, c in compacts.items():
        times = side_by_side(
            {"dense": lambda: dense.model(xb), "compact": lambda c=c: c(c.gather_input(xb))},
            repeats=t.repeats,
            warmup=t.warmup,
        )
        out[name] = Timing(times["dense"], times["compact"])
    return out


def scheme_result(
    scores: dict[str, Any], trained: Trained, timing: Timing, plan: RunPlan
) -> SchemeResult:
    """A sparse scheme's entry of ``metrics.json``."""
    sp = trained.fit.sparsifier
    index = sp.active_index()
    gives = trained.model.gives_speedup
    planted = plan.space.planted
    return SchemeResult(
        scores=scores,
        infer_ms=timing.compact_ms,
        dense_infer_ms=timing.dense_ms,
        speedup=timing.ratio if gives else None,
        gives_speedup=gives,
        num_active=int(index.numel()),
        train_seconds=trained.fit.seconds,
        swaps=sum(len(h.get("dropped", [])) for h in sp.history),
        measured_ratio=None if gives else timing.ratio,
        planted_recall=None if planted is None else float(np.isin(planted, index.numpy()).mean()),
    )


def run_metrics(
    plan: RunPlan,
    dense: Trained,
    main: Trained,
    dense_scores: dict[str, Any],
    results: dict[str, SchemeResult],
    timings: dict[str, Timing],
    constraints: dict[str, Any] | None,
    seconds: float,
) -> RunMetrics:
    """``metrics.json`` (DESIGN.md section 8) of a finished run."""
    cfg, space, ds = plan.config, plan.space, plan.dataset
    sp = main.fit.sparsifier
    idx = sp.active_index()
    return RunMetrics(
        dataset=ds.name,
        model=cfg.model.name,
        scheme=main.scheme,
        num_sensors=space.num_sensors,
        sparsity=sp.sparsity,
        target_sparsity=cfg.schedule.sparsity,
        num_active=int(idx.numel()),
        active_sensors=[space.ids[i] for i in idx.tolist()],
        units=ds.units,
        t_in=cfg.data.t_in,
        t_out=cfg.data.horizon,
        dense=DenseResult(dense_scores, dense.fit.seconds, timings[main.scheme].dense_ms),
        schemes=results,
        baselines=run_baselines(plan.splits, space),
        world_size=distributed.world_size(),
        timing=TimingInfo(
            batch=timing_batch(plan),
            threads=torch.get_num_threads(),
            machine=f"{platform.processor() or platform.machine()}, {platform.system()}",
            method=METHOD.format(repeats=cfg.timing.repeats, warmup=cfg.timing.warmup),
        ),
        config=cfg.to_dict(),
        seconds=seconds,
        layout=space.metrics_fields(),
        planted_sensors=None
        if space.planted is None
        else [space.ids[i] for i in space.planted.tolist()],
        constraints=constraints,
        missing=None if getattr(ds, "missing", None) is None else ds.missing.to_dict(),
    )


def worst_switched_off(
    sparse: dict[str, Any], dense: dict[str, Any], mask: MaskRecord, plan: RunPlan
) -> list[tuple[str, float, float]]:
    """``(id, sparse MAE, dense MAE)`` of the switched-off sensors the sparse model
    forecasts worst (test split), worst first: where the sparse network is blind."""
    per, base = sparse["mae_per_sensor"], dense["mae_per_sensor"]
    off = [i for i, a in enumerate(mask.active) if not a and per[i] == per[i]]
    off.sort(key=lambda i: (-per[i], i))
    return [(plan.space.ids[i], per[i], base[i]) for i in off[:RANK_IN_REPORT]]


def non_finite(scores: dict[str, dict[str, Any]]) -> list[str]:
    """Warnings (also printed to stderr) for test metrics (``{model: its scores}``) that
    are NaN or infinite, which ``metrics.json`` holds as null: a model whose forecasts
    overflowed."""
    out = []
    for name, m in scores.items():
        bad = [k for k, v in m.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            text = (
                f"the {name} model's test {', '.join(bad)} is not finite (null in "
                "metrics.json): its forecasts overflow or are NaN on the test split"
            )
            out.append(f"**Warning:** {text}.")
            print(f"dynst run: warning: {text}", file=sys.stderr)
    return out


def constraint_fields(
    c: Constraints | None, sp: Sparsifier, plan: RunPlan
) -> dict[str, Any] | None:
    """``metrics.json``'s (and ``mask.json``'s) account of the constraints: the kept and
    forbidden ids, and with a budget the active set's cost against it."""
    if c is None:
        return None
    ids = plan.space.ids
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


__all__ = ["RunConfig", "RunInterrupted", "finish", "format_table", "resolve", "run"]
