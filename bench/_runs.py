"""What the accuracy benches share: ``dynst run``'s pipeline steps, one dense training per
seed and then any number of sparse trainings from it, measured as ``dynst run`` measures
them (test metrics of the compacted model, dense against compacted inference side by
side). Nothing is written to a run directory."""

from __future__ import annotations

import dataclasses
from typing import Any

from dynst_fast import run
from dynst_fast.artifacts import Trained
from dynst_fast.config import RunConfig
from dynst_fast.data import make_windows
from dynst_fast.train import evaluate


@dataclasses.dataclass
class Prepared:
    cfg: RunConfig  # resolved
    ds: Any
    space: Any
    splits: Any


def prepare(cfg: RunConfig) -> Prepared:
    cfg.validate()
    ds = run.load(cfg)
    space = run.sensor_space(ds, cfg)
    cfg = run.resolve(cfg, ds, space)
    return Prepared(cfg, ds, space, make_windows(ds, cfg.data.t_in, cfg.data.horizon))


def dense_run(p: Prepared) -> tuple[Trained, dict[str, Any]]:
    """The dense model and its test metrics."""
    stages = run.Stages(p.cfg, checkpoint=False)
    dense = run.train_dense(stages, run.build(p.cfg, p.space, p.ds.num_channels), p.splits)
    return dense, evaluate(dense.model, p.splits, p.space)


def sparse_run(p: Prepared, dense: Trained, scheme: str, sparsity: float) -> dict[str, Any]:
    """A sparse scheme fine-tuned from ``dense``: its ``metrics.json`` entry."""
    cfg = dataclasses.replace(
        p.cfg, schedule=dataclasses.replace(p.cfg.schedule, sparsity=sparsity)
    )
    trained = run.train_sparse(run.Stages(cfg, checkpoint=False), dense, p.splits, scheme)
    compacts = run.compacted({scheme: trained})
    metrics = run.evaluate_run(dense, compacts, p.splits, p.space)[scheme]
    timing = run.time_run(cfg, dense, compacts, p.splits)[scheme]
    return run.sparse_metrics(metrics, trained, timing, p.space)


def add_run_flags(p) -> None:
    """The flags of a bench that trains one dense model and DynST from it."""
    p.add_argument("--data", default=None)
    p.add_argument("--horizon", type=int, default=3)
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output path without extension")


def prepare_from(args) -> Prepared:
    """:func:`prepare` of the run that :func:`add_run_flags`' flags describe."""
    return prepare(
        RunConfig.from_flags(
            data=args.data, epochs=args.epochs, seed=args.seed, horizon=args.horizon,
            sparsity=args.sparsity, quiet=True,
        )
    )  # fmt: skip
