"""Validation-only attempts at closing the sparse-vs-dense gap on Los-loop.

Seed 0, sparsity 0.5, 12 steps in and 3 out: trains the dense model once, then
fine-tunes copies under a few settings and prints the best validation MAE of each
(the test split is not looked at).

    python bench/sparse_attempts.py --data ../shared/data/los_loop
"""

from __future__ import annotations

import argparse
import dataclasses

from _runs import prepare

from dynst_fast import run
from dynst_fast.config import RunConfig
from dynst_fast.train import evaluate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--sparsity", type=float, default=0.5)
    args = p.parse_args()
    prep = prepare(RunConfig.from_flags(data=args.data, horizon=3, sparsity=args.sparsity))
    cfg, splits = prep.cfg, prep.splits
    stages = run.Stages(cfg, checkpoint=False)
    dense = run.train_dense(stages, run.build(cfg, prep.space, prep.ds.num_channels), splits)
    val = evaluate(dense.model, splits, prep.space, "val")["mae"]
    print(f"dense: val MAE {val:.4f}", flush=True)
    s, t = cfg.schedule, cfg.train
    attempts = {
        "dynst, defaults": ("dynst", cfg),
        "dynst, 60 epochs": (
            "dynst",
            dataclasses.replace(cfg, train=dataclasses.replace(t, epochs=60)),
        ),
        "dynst, theta_lr 5e-2, l1 3e-3": (
            "dynst",
            dataclasses.replace(cfg, schedule=dataclasses.replace(s, theta_lr=5e-2, l1=3e-3)),
        ),
        "iterative (no swap)": ("iterative", cfg),
    }
    for name, (scheme, c) in attempts.items():
        trained = run.train_sparse(run.Stages(c, checkpoint=False), dense, splits, scheme)
        print(f"{name}: val MAE {trained.fit.best_val_mae:.4f}", flush=True)


if __name__ == "__main__":
    main()
