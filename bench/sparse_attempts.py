"""Validation-only attempts at closing the sparse-vs-dense gap on Los-loop.

Seed 0, sparsity 0.5, 12 steps in and 3 out: trains the dense model once, then
fine-tunes copies under a few settings and prints the best validation MAE of each
(the test split is not looked at).

    python bench/sparse_attempts.py --data ../shared/data/los_loop
"""

from __future__ import annotations

import argparse
import copy
import dataclasses

import torch

from dynst_fast.data import load_graph_dataset, make_windows
from dynst_fast.models import GatedSTGCN
from dynst_fast.train import TrainConfig, evaluate, fit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--sparsity", type=float, default=0.5)
    args = p.parse_args()
    ds = load_graph_dataset(args.data)
    splits = make_windows(ds, 12, 3)
    torch.manual_seed(0)
    dense = GatedSTGCN(ds.adjacency, 12, 3, ds.num_channels, hidden=32)
    fit(dense, splits, TrainConfig(epochs=30, scheme="dense", seed=0))
    print(f"dense: val MAE {evaluate(dense, splits, 'val')['mae']:.4f}", flush=True)
    base = TrainConfig(epochs=30, scheme="dynst", sparsity=args.sparsity, seed=0)
    attempts = {
        "dynst, defaults": base,
        "dynst, 60 epochs": dataclasses.replace(base, epochs=60),
        "dynst, theta_lr 5e-2, l1 3e-3": dataclasses.replace(base, theta_lr=5e-2, l1=3e-3),
        "iterative (no swap)": dataclasses.replace(base, scheme="iterative"),
    }
    for name, cfg in attempts.items():
        result = fit(copy.deepcopy(dense), splits, cfg)
        print(f"{name}: val MAE {result.best_val_mae:.4f}", flush=True)


if __name__ == "__main__":
    main()
