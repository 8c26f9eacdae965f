"""Accuracy of dense vs sparse schemes on a graph data set, averaged over seeds.

Trains the dense model once per seed, then fine-tunes a copy under each scheme and
sparsity (exactly what ``dynst run`` does), and writes a Markdown table and a JSON
file of test MAE / RMSE (original units, whole field) and compacted speedups.

    python -m bench.studies.accuracy_graph --data ../shared/data/los_loop --horizon 3 \\
        --sparsities 0.3 0.5 --schemes dynst random --seeds 0 1 2 --epochs 30 \\
        --out bench/results/los_loop_accuracy
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from bench.studies.runs import dense_run, plan, sparse_run
from dynst_fast.baselines import run_baselines
from dynst_fast.config import SPARSE_SCHEMES, RunConfig
from dynst_fast.files import write_atomic, write_json


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None)
    p.add_argument("--horizon", type=int, default=12)
    p.add_argument("--t-in", type=int, default=12)
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.3, 0.5])
    p.add_argument("--schemes", nargs="+", default=["dynst", "random"], choices=SPARSE_SCHEMES)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--out", required=True, help="output path without extension")
    args = p.parse_args()

    rows: dict[str, dict[str, list[float]]] = {}
    started = time.perf_counter()
    ds = None
    for seed in args.seeds:
        cfg = RunConfig.from_flags(
            data=args.data, epochs=args.epochs, seed=seed, t_in=args.t_in, horizon=args.horizon
        )
        prep = plan(cfg)
        ds, splits = prep.dataset, prep.splits
        dense, dm = dense_run(prep)
        rows.setdefault("dense", {"mae": [], "rmse": [], "speedup": []})
        rows["dense"]["mae"].append(dm["mae"])
        rows["dense"]["rmse"].append(dm["rmse"])
        for s in args.sparsities:
            for scheme in args.schemes:
                m = sparse_run(prep, dense, scheme, s)
                r = rows.setdefault(
                    f"{scheme} {s:g}", {"mae": [], "rmse": [], "speedup": [], "active": []}
                )
                r["mae"].append(m["mae"])
                r["rmse"].append(m["rmse"])
                r["speedup"].append(m["speedup"])
                r["active"].append(m["active"])  # the trained set, by sensor index
                print(
                    f"seed {seed} {scheme} {s:g}: MAE {m['mae']:.4f} RMSE {m['rmse']:.4f} "
                    f"speedup {m['speedup']:.2f}x (dense MAE {dm['mae']:.4f})",
                    flush=True,
                )
    base = run_baselines(splits, prep.space)
    units = f" ({ds.units})" if ds.units else ""
    lines = [
        f"# Accuracy on {ds.name}: {args.t_in} steps in, {args.horizon} out, 8:1:1 split",
        "",
        f"Seeds {args.seeds}, {args.epochs} epochs per training, whole-field test metrics "
        f"in original units, mean ± std over seeds. Speedup = dense / compacted inference "
        f"time (batch 64, {torch.get_num_threads()} threads, {platform.machine()}, "
        "side by side in one process).",
        "",
        f"| model | MAE{units} | RMSE{units} | MAE vs dense | speedup |",
        "|---|---|---|---|---|",
    ]
    dense_mae = statistics.fmean(rows["dense"]["mae"])
    for name, r in rows.items():
        rel = statistics.fmean(r["mae"]) / dense_mae - 1
        sp = f"{statistics.fmean(r['speedup']):.2f}x" if r["speedup"] else ""
        lines.append(
            f"| {name} | {_mean_std(r['mae'])} | {_mean_std(r['rmse'])} | {rel:+.1%} | {sp} |"
        )
    for name, b in base.items():
        lines.append(
            f"| {name} baseline | {b['mae']:.3f} | {b['rmse']:.3f} | "
            f"{b['mae'] / dense_mae - 1:+.1%} | |"
        )
    cmd = " ".join(
        [
            "python -m bench.studies.accuracy_graph",
            *[
                f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                for k, v in vars(args).items()
                if v is not None
            ],
        ]
    )
    lines += ["", f"Reproduce: `{cmd}`", "", f"Total time {time.perf_counter() - started:.0f} s."]
    write_atomic(f"{args.out}.md", "\n".join(lines) + "\n")
    write_json(f"{args.out}.json", {"args": vars(args), "rows": rows, "baselines": base})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
