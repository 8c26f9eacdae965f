"""What the studies share: runs built from the run plan (``dynst_fast.plan``), exactly as
``dynst run`` builds them. One dense training per plan, then any number of sparse
trainings from it (each scheme at each sparsity a plan of its own, sharing the data set
and the schemes' orders), measured as ``dynst run`` measures them: test metrics of the
compacted model, dense against compacted inference side by side. Nothing is written to
a run directory."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from dynst_fast.config import RunConfig
from dynst_fast.evaluation import evaluate_model
from dynst_fast.plan import RunPlan, resolve
from dynst_fast.run import compacted, evaluate_run, scheme_result, time_run
from dynst_fast.schemes import OrderMemo
from dynst_fast.stages import Stages, Trained


def plan(cfg: RunConfig, base: RunPlan | None = None) -> RunPlan:
    """The plan of ``cfg``; with ``base``, on ``base``'s data set and sharing its orders."""
    if base is None:
        return resolve(cfg, memo=OrderMemo())
    return resolve(cfg, dataset=base.dataset, memo=base.main.memo)


def sparse_plan(
    base: RunPlan, scheme: str, sparsity: float | None = None, **settings: Any
) -> RunPlan:
    """``base``'s run with ``scheme`` as its only sparse scheme, at ``sparsity`` (default
    ``base``'s) and with schedule / train ``settings`` changed (``prune_by="taylor"``,
    ``failure_rate=0.1`` ...)."""
    cfg = base.config
    sched = {k: v for k, v in settings.items() if hasattr(cfg.schedule, k)}
    train = {k: v for k, v in settings.items() if hasattr(cfg.train, k)}
    unknown = set(settings) - set(sched) - set(train)
    if unknown:
        raise ValueError(f"sparse_plan: unknown settings {sorted(unknown)}")
    s = base.sparsity if sparsity is None else sparsity
    cfg = dataclasses.replace(
        cfg,
        schedule=dataclasses.replace(cfg.schedule, scheme=scheme, also=[], sparsity=s, **sched),
        train=dataclasses.replace(cfg.train, **train),
    )
    return plan(cfg, base)


def dense_run(p: RunPlan) -> tuple[Trained, dict[str, Any]]:
    """The plan's dense model and its test metrics."""
    dense = Stages(p, checkpoint=False).dense()
    return dense, evaluate_model(dense.model, p.splits, p.space)


def cached_dense(p: RunPlan, path: Path) -> Trained:
    """The plan's dense model: its weights from ``path`` (``weights_only``) when a study
    trained it before, else trained and saved there (atomically)."""
    model = p.build_model()
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return Trained("dense", model, None)
    trained = Stages(p, checkpoint=False).train(p.dense, model)
    tmp = path.with_suffix(".partial")
    torch.save(trained.model.state_dict(), tmp)
    os.replace(tmp, path)
    return trained


def sparse_train(p: RunPlan, dense: Trained) -> Trained:
    """The plan's main sparse scheme fine-tuned from ``dense``."""
    return Stages(p, checkpoint=False).sparse(p.main, dense)


def sparse_run(base: RunPlan, dense: Trained, scheme: str, sparsity: float) -> dict[str, Any]:
    """A sparse scheme fine-tuned from ``dense``: its ``metrics.json`` entry, and the
    active set it trained (``"active"``, sensor indices)."""
    p = sparse_plan(base, scheme, sparsity)
    trained = sparse_train(p, dense)
    compacts = compacted({scheme: trained})
    scores = evaluate_run(dense, compacts, p)[scheme]
    timing = time_run(p, dense, compacts)[scheme]
    active = trained.fit.sparsifier.active_index().tolist()
    return {**scheme_result(scores, trained, timing, p).to_dict(), "active": active}


def add_run_flags(parser) -> None:
    """The flags of a study that trains one dense model and DynST from it."""
    parser.add_argument("--data", default=None)
    parser.add_argument("--horizon", type=int, default=3)
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output path without extension")


def plan_from(args) -> RunPlan:
    """The plan of the run that :func:`add_run_flags`' flags describe."""
    return plan(
        RunConfig.from_flags(
            data=args.data, epochs=args.epochs, seed=args.seed, horizon=args.horizon,
            sparsity=args.sparsity, quiet=True,
        )
    )  # fmt: skip
