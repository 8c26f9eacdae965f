"""Attempts at forecasting the switched-off sensors better, scored on the validation split
only (the test split is never looked at).

Each attempt is a run (dense model, then DynST fine-tuned from it, as ``dynst run`` does)
with some backbone options and training settings changed: the read-out by attention over
the nearest active sensors, calendar inputs, sensor dropout while the dense model trains,
distillation of the dense forecasts, the pruning signal. The table gives the validation
MAE of the whole field, of the kept and of the switched-off sensors, and a ridge
reference on the switched-off ones. Dense models and results are cached (a dense model is
shared by every attempt that trains it the same way), so adding an attempt reruns only it.

    python -m bench.studies.readout_attempts --out bench/results/readout_attempts
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.studies import selection
from bench.studies.runs import cached_dense, plan, sparse_plan, sparse_train
from bench.studies.selection import ridge_on_dropped
from dynst_fast.config import RunConfig
from dynst_fast.evaluation import evaluate_model
from dynst_fast.files import write_atomic, write_json
from dynst_fast.plan import RunPlan
from dynst_fast.stages import Trained

OFF = {"attention": False, "calendar": False}  # the read-out and inputs before this study
GRAPH_CAL = {"attention": True, "calendar": True, "near": "graph"}
# name: (backbone options, train settings, schedule settings)
ATTEMPTS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "graph read-out (before)": (OFF, {}, {}),
    "+ calendar": ({**OFF, "calendar": True}, {}, {}),
    "+ attention (geo)": ({**OFF, "attention": True, "near": "geo"}, {}, {}),
    "+ attention (graph)": ({**OFF, "attention": True, "near": "graph"}, {}, {}),
    "+ attention (geo) + calendar": ({"attention": True, "calendar": True, "near": "geo"}, {},
                                     {}),
    "+ attention (graph) + calendar": (GRAPH_CAL, {}, {}),
    "+ attention (graph) + calendar, dense sensor dropout 0.2": (
        GRAPH_CAL, {"sensor_dropout": 0.2}, {}
    ),
    "+ attention (graph) + calendar, dense sensor dropout 0.33": (
        GRAPH_CAL, {"sensor_dropout": 0.33}, {}
    ),
    "+ attention (graph) + calendar, distill 1": (GRAPH_CAL, {"distill": 1.0}, {}),
    "+ attention (graph) + calendar, prune by taylor": (GRAPH_CAL, {}, {"prune_by": "taylor"}),
    "+ attention (graph) + calendar, 16 neighbours": ({**GRAPH_CAL, "neighbours": 16}, {}, {}),
    "+ attention (graph) + calendar, taylor, distill 1": (
        GRAPH_CAL, {"distill": 1.0}, {"prune_by": "taylor"}
    ),
    "+ attention (graph) + calendar, taylor, distill 0.5": (
        GRAPH_CAL, {"distill": 0.5}, {"prune_by": "taylor"}
    ),
    # the defaults, with fewer swaps per round, or none (the iterative scheme)
    "defaults, swap fraction 0.02": (GRAPH_CAL, {}, {"prune_by": "taylor", "swap_fraction": 0.02}),
    "defaults, iterative (no swaps)": (
        GRAPH_CAL, {}, {"prune_by": "taylor", "scheme": "iterative"}
    ),
}  # fmt: skip

BEFORE_SCHEDULE = {"prune_by": "theta"}  # the pruning signal before this study, unless named
SETS = {name: selection.SETS[name] for name in ("los_loop", "synthetic")}


def config(name: str, seed: int, epochs: int, options: dict, train: dict) -> RunConfig:
    """The data set's run with backbone ``options`` and ``train`` settings."""
    return selection.config(name, seed, epochs, {"option": options, **train})


def _key(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Cache:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def dense(self, p: RunPlan) -> Trained:
        """The plan's dense model, trained once per configuration of the dense training."""
        d = p.config.to_dict()
        for section in ("schedule", "constraints", "timing"):
            d.pop(section)
        d.pop("out")
        d["train"].pop("distill")
        d["train"].pop("failure_rate")
        return cached_dense(p, self.root / f"dense_{_key(d)}.pt")


def attempt(cache: Cache, which: str, name: str, seed: int, epochs: int, sparsity: float):
    options, train, sched = ATTEMPTS[which]
    path = cache.root / f"{name}_{_key(which, ATTEMPTS[which], seed, epochs, sparsity)}.json"
    if path.exists():
        r = json.loads(path.read_text())
        if "ridge_val" not in r:  # results cached before the reference was recorded
            base = plan(config(name, seed, epochs, *ATTEMPTS[which][:2]))
            r["ridge_val"] = ridge_on_dropped(base, r["active"], "val")
            write_json(path, r)
        return r
    started = time.perf_counter()
    base = plan(config(name, seed, epochs, options, train))
    dense = cache.dense(base)
    sched = {**BEFORE_SCHEDULE, **sched}  # "scheme": the attempt's scheme, not dynst
    p = sparse_plan(base, sched.pop("scheme", "dynst"), sparsity, **sched)
    trained = sparse_train(p, dense)
    sp = trained.fit.sparsifier
    index = sp.active_index()
    compact = trained.model.compact(index, sp.theta.detach()).eval()
    val = evaluate_model(compact, p.splits, p.space, "val", active_index=index)
    dense_val = evaluate_model(dense.model, p.splits, p.space, "val", kept=index)
    r = {
        "attempt": which, "dataset": name, "seed": seed, "epochs": epochs,
        "sparsity": sparsity, "val": _scores(val), "dense_val": _scores(dense_val),
        "active": index.tolist(), "seconds": time.perf_counter() - started,
        "ridge_val": ridge_on_dropped(p, index.tolist(), "val"),
    }  # fmt: skip
    write_json(path, r)
    return r


def _scores(m: dict[str, Any]) -> dict[str, float]:
    out = {"mae": m["mae"]}
    for part in ("kept", "dropped"):
        if part in m:
            out[part] = m[part]["mae"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=["los_loop"], choices=list(SETS))
    p.add_argument("--attempts", nargs="+", default=list(ATTEMPTS), choices=list(ATTEMPTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--cache", default=None, help="default: bench/.cache/readout")
    p.add_argument("--notes", default="", help="a paragraph for the report (what it found)")
    p.add_argument("--out", required=True, help="output path without extension")
    args = p.parse_args()
    cache = Cache(Path(args.cache or Path(__file__).parents[1] / ".cache" / "readout"))
    rows: dict[str, dict[str, list[dict]]] = {}
    for which in args.attempts:
        for name in args.datasets:
            for seed in args.seeds:
                r = attempt(cache, which, name, seed, args.epochs, args.sparsity)
                rows.setdefault(which, {}).setdefault(name, []).append(r)
                v, nan = r["val"], float("nan")
                print(f"{which} / {name} seed {seed}: val MAE {v['mae']:.4f} (kept "
                      f"{v.get('kept', nan):.4f}, off {v.get('dropped', nan):.4f}); dense "
                      f"{r['dense_val']['mae']:.4f}", file=sys.stderr, flush=True)  # fmt: skip
    cols = " | ".join(f"{n}: whole / kept / off | ridge on off | dense: whole / on off"
                      for n in args.datasets)  # fmt: skip
    lines = [
        "# Attempts at forecasting the switched-off sensors (validation split only)",
        "",
        f"DynST at sparsity {args.sparsity:g}, {args.epochs} epochs per training, mean over "
        f"seeds {args.seeds}. Validation MAE (original units) of the compacted model on the "
        "whole field, the kept and the switched-off sensors; ridge on off: the validation MAE "
        "on the switched-off sensors of a ridge regression from the kept sensors' last t_in "
        "values (fitted on the training split, its ridge chosen on validation; graph data); "
        "dense: the attempt's dense model (which sees every sensor) on the whole field and on "
        "the sensors the sparse model switched off: how easy the switched-off sensors are.",
        "",
        f"| attempt | {cols} |",
        "|---|" + "---|" * (3 * len(args.datasets)),
    ]
    for which, per in rows.items():
        cells = []
        for n in args.datasets:
            rs = per[n]

            def mean(k: str, part: str = "val", rs=rs) -> float:
                return statistics.fmean(r[part].get(k, float("nan")) for r in rs)

            cells.append(f"{mean('mae'):.4f} / {mean('kept'):.4f} / {mean('dropped'):.4f}")
            ridge = [r["ridge_val"] for r in rs if r.get("ridge_val") is not None]
            cells.append(f"{statistics.fmean(ridge):.4f}" if ridge else "")
            cells.append(f"{mean('mae', 'dense_val'):.4f} / {mean('dropped', 'dense_val'):.4f}")
        lines.append(f"| {which} | {' | '.join(cells)} |")
    argv = sys.argv[1:]
    if "--notes" in argv:  # a remark about the results, not a part of the command
        i = argv.index("--notes")
        argv = argv[:i] + argv[i + 2 :]
    cmd = "python -m bench.studies.readout_attempts " + shlex.join(argv)
    lines += ["", f"Reproduce: `{cmd}`", ""]
    if args.notes:
        lines += [args.notes, ""]
    write_atomic(f"{args.out}.md", "\n".join(lines) + "\n")
    write_json(f"{args.out}.json", {"args": vars(args), "rows": rows})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
