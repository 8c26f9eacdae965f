"""Which sensors to keep: every sparse scheme against the classical placements.

For each data set and seed the dense model is trained once (and cached); then a copy is
fine-tuned under every scheme at every sparsity, exactly as ``dynst run`` does it (the
same backbone, split, schedule and fine-tuning), and scored on the test split: the whole
field (the headline), the kept and the dropped sensors apart, and the validation MAE the
run selected its epoch by. Each result is cached as one JSON file, so an interrupted
bench continues where it stopped, and two processes (``--shard 0/2``, ``--shard 1/2``, one
thread each) can share the work; ``--report`` only gathers the cache into the table, the
JSON and the picture.

    python -m bench.studies.selection --out bench/results/selection          # everything
    python -m bench.studies.selection --quick --out /tmp/selection_quick     # a few minutes
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench.studies.runs import cached_dense, plan, sparse_plan, sparse_train
from dynst_fast.config import SPARSE_SCHEMES, RunConfig, TimingConfig
from dynst_fast.data import shared_data_dir
from dynst_fast.evaluation import evaluate_model
from dynst_fast.files import write_atomic, write_json
from dynst_fast.plan import RunPlan
from dynst_fast.run import time_run, timing_batch
from dynst_fast.selection import GREEDY_RIDGES, lagged, sensor_series
from dynst_fast.stages import Trained
from dynst_fast.train import first_windows

SCHEMES = ("dynst", "iterative", "one-shot", "fixed", "random", "qr", "greedy")
# Every set runs `dynst run`'s defaults (the pruning signal too: taylor on the graph sets,
# theta on the grid, which is what prune_by auto picks).
SETS: dict[str, dict[str, Any]] = {
    "los_loop": dict(data="los_loop", t_in=12, horizon=3),
    "era5": dict(
        data="era5_uk_t2m", model="vit", patch=4, t_in=12, horizon=12,
        option={"dim": 64, "depth": 4, "heads": 4, "decoder_dim": 32},
    ),
    "synthetic": dict(data=None, t_in=12, horizon=12),
}  # fmt: skip
TITLES = {
    "los_loop": "Los-loop, STGCN, 12 -> 3",
    "era5": "ERA5 UK t2m, ViT (patch 4), 12 -> 12",
    "synthetic": "planted network (80 sensors), STGCN, 12 -> 12",
}


def config(name: str, seed: int, epochs: int, extra: dict[str, Any]) -> RunConfig:
    spec = dict(SETS[name])
    if spec["data"] is not None:
        spec["data"] = str(shared_data_dir() / spec["data"])
    return RunConfig.from_flags(seed=seed, epochs=epochs, quiet=True, **spec, **extra)


def key_of(cfg: RunConfig, *parts: Any, dense: bool = False) -> str:
    """A cache key: the resolved config (minus the run directory; for the dense model
    minus the sparse schedule too) and ``parts``."""
    d = cfg.to_dict()
    d.pop("out", None)
    if dense:
        d.pop("schedule", None)
    blob = json.dumps([d, *parts], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


class Cache:
    """Dense weights (``torch.save``, read back with ``weights_only=True``) and one JSON per
    sparse result, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def dense(self, p: RunPlan, label: str) -> Trained:
        return cached_dense(
            p, self.root / f"dense_{label}_{key_of(p.config, 'dense', dense=True)}.pt"
        )

    def result_path(self, label: str, cfg: RunConfig, scheme: str, sparsity: float) -> Path:
        return self.root / f"{label}_{scheme}_{sparsity:g}_{key_of(cfg, scheme, sparsity)}.json"

    def results(self) -> list[dict[str, Any]]:
        return [self.read(f) for f in sorted(self.root.glob("*.json"))]

    @staticmethod
    def read(path: Path) -> dict[str, Any]:
        return json.loads(path.read_text())


def sparse_result(base: RunPlan, dense: Trained, scheme: str, sparsity: float) -> dict[str, Any]:
    """Fine-tune ``dense`` under ``scheme`` at ``sparsity``; its test and validation scores.
    (The plans share ``base``'s orders: one greedy order, for the largest K, serves every
    sparsity, as greedy's orders are nested.)"""
    p = sparse_plan(base, scheme, sparsity)
    trained = sparse_train(p, dense)
    sp = trained.fit.sparsifier
    index = sp.active_index()
    compact = trained.model.compact(index, sp.theta.detach()).eval()
    test = evaluate_model(compact, p.splits, p.space, active_index=index)
    dense_m = evaluate_model(dense.model, p.splits, p.space, kept=index)
    out = {
        "scheme": scheme,
        "sparsity": sparsity,
        "num_active": int(index.numel()),
        "val_mae": trained.fit.best_val_mae,
        "test": test,
        "dense_on_same_sets": dense_m,
        "active": index.tolist(),
        "train_seconds": trained.fit.seconds,
    }
    if p.space.planted is not None:
        out["planted_recall"] = float(
            torch.isin(torch.as_tensor(p.space.planted), index).float().mean()
        )
    return out


def ridge_on_dropped(p: RunPlan, active: list[int], split: str = "test") -> float | None:
    """MAE on ``split`` (original units) on the dropped sensors of a ridge forecast from the kept
    sensors' last ``t_in`` values, fitted on the training split with the ridge of
    ``GREEDY_RIDGES`` that scores best on validation: a linear reference for what the kept set
    tells about the rest. Graph data of one channel only (else None)."""
    if p.space.kind != "graph" or p.dataset.num_channels != 1 or len(active) == p.space.num_sensors:
        return None
    t_in, t_out = p.splits.t_in, p.splits.t_out
    kept = torch.zeros(p.space.num_sensors, dtype=torch.bool)
    kept[active] = True
    std = torch.as_tensor(p.splits.std[:, 0], dtype=torch.float64)[~kept]
    train = sensor_series(p.splits.train, p.space)
    x, _ = lagged(train[:, kept], t_in, t_out)
    _, y = lagged(train[:, ~kept], t_in, t_out)
    gram, rhs = x.T @ x, x.T @ y

    def mae(split: str, w: torch.Tensor) -> float:
        raw = getattr(p.splits, split).part()[..., 0].to(torch.float64)  # [L, N], NaN kept
        xs, _ = lagged(torch.nan_to_num(raw[:, kept]), t_in, t_out)
        _, ys = lagged(raw[:, ~kept], t_in, t_out)
        err = ((xs @ w - ys).view(len(xs), -1, t_out) * std[None, :, None]).abs()
        return float(err.nan_to_num(0).sum() / (~torch.isnan(err)).sum())

    scale = float(gram.diagonal().mean())
    fits = [
        torch.linalg.solve(gram + r * scale * torch.eye(len(gram), dtype=gram.dtype), rhs)
        for r in GREEDY_RIDGES
    ]
    best = min(fits, key=lambda w: mae("val", w))
    return mae(split, best)


def add_ridge_bounds(data: dict[str, Any], args: argparse.Namespace) -> None:
    """Each sparse result's ``ridge_dropped_mae`` (``ridge_on_dropped`` of its set)."""
    for name, rows in data.items():
        for seed in args.seeds:
            p = None
            for key, rs in rows.items():
                for r in rs:
                    if key == "dense" or r["seed"] != seed or "ridge_dropped_mae" in r:
                        continue
                    p = p or plan(config(name, seed, args.epochs_of[name], {}))
                    r["ridge_dropped_mae"] = ridge_on_dropped(p, r["active"])


def add_speedups(data: dict[str, Any], args: argparse.Namespace) -> None:
    """The first seed's set of every scheme x sparsity: dense against compacted inference
    on the first test windows, side by side (``dynst run``'s timing; the batch of
    ``TimingConfig``). The times depend on the set and the architecture only, so the models
    are built fresh, not trained. Run in a quiet process (``--report`` after the shards)."""
    seed = args.seeds[0]
    for name, rows in data.items():
        p = plan(config(name, seed, args.epochs_of[name], {}))
        dense = Trained("dense", p.build_model(), None)
        firsts = {key: r for key, rs in rows.items() if key != "dense"
                  for r in rs if r["seed"] == seed}  # fmt: skip
        compacts = {key: dense.model.compact(torch.as_tensor(r["active"])).eval()
                    for key, r in firsts.items()}  # fmt: skip
        xb, _ = first_windows(p.splits.test, timing_batch(p))
        for key, t in time_run(p, dense, compacts).items():
            threads = torch.get_num_threads()
            firsts[key]["timing"] = {"dense_ms": t.dense_ms, "compact_ms": t.compact_ms,
                                     "batch": len(xb), "threads": threads}  # fmt: skip
            print(f"[{name}] {key}: speedup {t.dense_ms / t.compact_ms:.2f}x",
                  file=sys.stderr, flush=True)  # fmt: skip


def bench(args: argparse.Namespace, cache: Cache) -> None:
    jobs = [(d, seed) for seed in args.seeds for d in args.datasets]  # seed by seed
    shard, shards = args.shard
    for i, (name, seed) in enumerate(jobs):
        if i % shards != shard:
            continue
        epochs = args.epochs_of[name]
        p = plan(config(name, seed, epochs, {}))
        label = f"{name}_seed{seed}"
        started = time.perf_counter()
        dense = cache.dense(p, label)
        dense_test = evaluate_model(dense.model, p.splits, p.space)
        dense_val = evaluate_model(dense.model, p.splits, p.space, "val")["mae"]
        write_json(
            cache.root / f"{label}_dense_{key_of(p.config, 'dense', dense=True)}.json",
            {"dataset": name, "seed": seed, "scheme": "dense", "sparsity": 0.0,
             "epochs": epochs, "val_mae": dense_val, "test": dense_test},
        )  # fmt: skip
        print(f"[{label}] dense: test MAE {dense_test['mae']:.4f}", file=sys.stderr, flush=True)
        for s in sorted(args.sparsities):  # the largest K first: one greedy order for all
            for scheme in args.schemes:
                path = cache.result_path(label, p.config, scheme, s)
                if path.exists():
                    continue
                t0 = time.perf_counter()
                r = sparse_result(p, dense, scheme, s)
                r.update(dataset=name, seed=seed, epochs=epochs)
                write_json(path, r)
                print(
                    f"[{label}] {scheme} {s:g}: val {r['val_mae']:.4f} test {r['test']['mae']:.4f}"
                    f" (kept {r['test']['kept']['mae']:.4f}, dropped "
                    f"{r['test'].get('dropped', {}).get('mae', float('nan')):.4f}) "
                    f"{time.perf_counter() - t0:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
        print(f"[{label}] {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- report
def _ms(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def gather(results: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """``{dataset: {"dense": [...], (scheme, sparsity): [...]}}`` of the requested runs."""
    out: dict[str, Any] = {}
    for r in results:
        if r["dataset"] not in args.datasets or r["seed"] not in args.seeds:
            continue
        if r.get("epochs") != args.epochs_of.get(r["dataset"]):
            continue
        if r["scheme"] != "dense" and (
            r["scheme"] not in args.schemes or r["sparsity"] not in args.sparsities
        ):
            continue
        k = "dense" if r["scheme"] == "dense" else f"{r['scheme']} {r['sparsity']:g}"
        out.setdefault(r["dataset"], {}).setdefault(k, []).append(r)
    return out


def table(name: str, rows: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> list[str]:
    dense = statistics.fmean(r["test"]["mae"] for r in rows["dense"])
    lines = [
        f"### {TITLES[name]}",
        "",
        f"{args.epochs_of[name]} epochs per training.",
        "",
        "| scheme | sparsity | test MAE | vs dense | kept MAE | dropped MAE | ridge on dropped "
        "| val MAE | seeds | speedup |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| dense | 0 | {_ms([r['test']['mae'] for r in rows['dense']])} | | | | | "
        f"{_ms([r['val_mae'] for r in rows['dense']])} | {len(rows['dense'])} | 1 |",
    ]
    for s in args.sparsities:
        found = {k: rows[f"{k} {s:g}"] for k in args.schemes if f"{k} {s:g}" in rows}
        means = {k: statistics.fmean(r["test"]["mae"] for r in rs) for k, rs in found.items()}
        best = min(means, key=means.get) if means else None
        for scheme, rs in found.items():
            drop = [r["test"]["dropped"]["mae"] for r in rs if "dropped" in r["test"]]
            ridge = [r["ridge_dropped_mae"] for r in rs if r.get("ridge_dropped_mae") is not None]
            shown = f"**{scheme}**" if scheme == best else scheme
            t = next((r["timing"] for r in rs if "timing" in r), None)
            speedup = f"{t['dense_ms'] / t['compact_ms']:.2f}x" if t else ""
            lines.append(
                f"| {shown} | {s:g} | {_ms([r['test']['mae'] for r in rs])} | "
                f"{means[scheme] / dense - 1:+.1%} | "
                f"{_ms([r['test']['kept']['mae'] for r in rs])} | "
                f"{_ms(drop) if drop else ''} | {_ms(ridge) if ridge else ''} | "
                f"{_ms([r['val_mae'] for r in rs])} | {len(rs)} | {speedup} |"
            )
    return [*lines, ""]


def picture(data: dict[str, Any], args: argparse.Namespace, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in args.datasets if n in data]
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 4.2), dpi=120, squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        rows = data[name]
        d = [r["test"]["mae"] for r in rows["dense"]]
        ax.axhline(statistics.fmean(d), color="black", lw=1.2, ls="--", label="dense")
        for scheme in args.schemes:
            xs, ys, es = [], [], []
            for s in args.sparsities:
                rs = rows.get(f"{scheme} {s:g}", [])
                if rs:
                    v = [r["test"]["mae"] for r in rs]
                    xs.append(s)
                    ys.append(statistics.fmean(v))
                    es.append(statistics.stdev(v) if len(v) > 1 else 0.0)
            if xs:
                lw = 2.4 if scheme == "dynst" else 1.2
                ax.errorbar(xs, ys, yerr=es, marker="o", ms=4, lw=lw, capsize=2, label=scheme)
        ax.set_title(TITLES[name], fontsize=10)
        ax.set_xlabel("sparsity (share of sensors switched off)")
        ax.set_ylabel("whole-field test MAE")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def report(args: argparse.Namespace, cache: Cache, wall: float | None) -> None:
    data = gather(cache.results(), args)
    add_ridge_bounds(data, args)
    add_speedups(data, args)
    argv = sys.argv[1:]
    if "--notes" in argv:  # a remark about the run, not a part of the command
        i = argv.index("--notes")
        argv = argv[:i] + argv[i + 2 :]
    cmd = "python -m bench.studies.selection " + " ".join(a for a in argv if a != "--report")
    lines = [
        "# Sensor selection: every scheme, test split, whole field",
        "",
        f"Seeds {args.seeds}; the epochs per training (dense, then each scheme fine-tuned "
        "from it) are under each data set's title. Test MAE in original units over the whole "
        "field, mean ± std over seeds; kept / dropped MAE: the same forecasts on the sensors "
        "the scheme keeps on (the paper's view) and on those it switches off; val MAE: the "
        "validation score each run selected its epoch by; ridge on dropped: the test MAE on "
        "the dropped sensors of a ridge regression from the kept sensors' last t_in values "
        "(graph data; a linear reference for what the kept set tells about the rest); "
        f"speedup: dense over compacted inference of seed {args.seeds[0]}'s set, side by side "
        f"on the first {TimingConfig.batch} test windows (fewer if the split has fewer), "
        f"{torch.get_num_threads()} threads, the gather of the kept sensors' input included. "
        "Bold: the lowest test MAE at that sparsity.",
        "",
    ]
    for name in args.datasets:
        if name in data and "dense" in data[name]:
            lines += table(name, data[name], args)
    lines += ["![MAE against sparsity](selection.png)", "", f"Reproduce: `{cmd}`", ""]
    if wall is not None:
        lines.append(f"Wall time of this invocation: {wall:.0f} s.")
    if args.notes:
        lines += ["", args.notes]
    write_atomic(f"{args.out}.md", "\n".join(lines) + "\n")
    write_json(f"{args.out}.json", {"args": vars(args), "results": data})
    picture(data, args, f"{args.out}.png")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(SETS), choices=list(SETS))
    p.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=SPARSE_SCHEMES)
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument(
        "--epochs-for",
        nargs="+",
        default=[],
        metavar="SET=EPOCHS",
        help="fewer (or more) epochs for some data sets, e.g. era5=5 synthetic=5",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="Los-loop and synthetic, seed 0, sparsity 0.5, 3 epochs",
    )
    p.add_argument("--shard", default="0/1", help="I/K: run every K-th (data set, seed) job")
    p.add_argument("--report", action="store_true", help="only gather the cache")
    p.add_argument(
        "--train-only",
        action="store_true",
        help="fill the cache, no report (the report times models: run it with --report "
        "when nothing else runs)",
    )
    p.add_argument("--notes", default="", help="a paragraph for the report (how it was run)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--cache", default=None, help="default: bench/.cache/selection")
    p.add_argument("--out", required=True, help="output path without extension")
    args = p.parse_args()
    if args.quick:
        args.datasets, args.seeds, args.sparsities, args.epochs = (
            ["los_loop", "synthetic"], [0], [0.5], 3
        )  # fmt: skip
    try:
        i, k = (int(v) for v in args.shard.split("/"))
        assert 0 <= i < k
    except (ValueError, AssertionError):
        p.error(f"--shard: expected I/K with 0 <= I < K, got {args.shard!r}")
    args.shard = (i, k)
    args.epochs_of = {name: args.epochs for name in SETS}
    for item in args.epochs_for:
        name, _, n = item.partition("=")
        if name not in SETS or not n.isdigit() or int(n) <= 0:
            p.error(f"--epochs-for: expected SET=EPOCHS with SET in {list(SETS)}, got {item!r}")
        args.epochs_of[name] = int(n)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.cache or Path(__file__).parents[1] / ".cache" / "selection")
    cache = Cache(root)
    started = time.perf_counter()
    if not args.report:
        bench(args, cache)
        if args.train_only:
            return
        if k > 1:  # the report times models: not while another shard trains
            print("this shard is done: run with --report once every shard is",
                  file=sys.stderr)  # fmt: skip
            return
    report(args, cache, None if args.report else time.perf_counter() - started)


if __name__ == "__main__":
    main()
