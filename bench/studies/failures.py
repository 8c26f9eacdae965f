"""Forecasts with failed sensors: whole-field test MAE when a share of the active sensors
stops reporting, switched off through ``alive`` or filled with the training mean (what a
plain model would be given), for models fine-tuned without and with ``--failure-rate``.

Trains the dense model once, fine-tunes DynST to the sparsity twice (failure rate 0 and
``--failure-rate``), then, for each share of failed active sensors, draws that many
sensors at random (``--draws`` times, seeded) and scores the compacted model on the test
split. Writes a Markdown table, a JSON file and a picture.

    python -m bench.studies.failures --data ../shared/data/los_loop --horizon 3 --sparsity 0.5 \\
        --failure-rate 0.1 --out bench/results/los_loop_failures
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from bench.studies.runs import add_run_flags, dense_run, plan_from, sparse_plan, sparse_train
from dynst_fast.data.windows import eval_loader
from dynst_fast.files import write_atomic, write_json
from dynst_fast.run import compacted

SHARES = (0.0, 0.01, 0.05, 0.10, 0.20)


def test_mae(compact, splits, space, alive: torch.Tensor | None, mean_fill: bool) -> float:
    """Whole-field test MAE (original units) of ``compact`` with the sensors where
    ``alive`` is 0 failed: switched off (``mean_fill`` False) or given the training mean
    (normalised 0) as if it were a reading."""
    preds, targets = [], []
    with torch.inference_mode():
        for x, y in eval_loader(splits.test):
            xa = compact.gather_input(x)
            if alive is None:
                pred = compact(xa)
            elif mean_fill:
                pred = compact(xa * alive[None, None, :, None])  # graph input [B, T, K, C]
            else:
                pred = compact(xa, alive)
            preds.append(pred)
            targets.append(y)
    pred, y = torch.cat(preds), torch.cat(targets)
    return float(space.metrics(splits.denormalize(pred), splits.denormalize(y))["mae"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_flags(p)
    p.add_argument("--failure-rate", type=float, default=0.1)
    p.add_argument("--shares", type=float, nargs="+", default=list(SHARES))
    p.add_argument("--draws", type=int, default=20)
    args = p.parse_args()
    started = time.perf_counter()
    prep = plan_from(args)
    dense, dm = dense_run(prep)
    print(f"dense MAE {dm['mae']:.4f}", flush=True)
    results: dict[str, dict] = {}
    for rate in (0.0, args.failure_rate):
        trained = sparse_train(sparse_plan(prep, "dynst", failure_rate=rate), dense)
        compact = compacted({"dynst": trained})["dynst"]
        k = compact.num_active
        gen = torch.Generator().manual_seed(1000 + args.seed)
        rows = []
        for share in args.shares:
            failed = int(round(share * k))
            draws = 1 if failed == 0 else args.draws
            off, fill = [], []
            for _ in range(draws):
                alive = torch.ones(k)
                alive[torch.randperm(k, generator=gen)[:failed]] = 0.0
                off.append(test_mae(compact, prep.splits, prep.space, alive, mean_fill=False))
                fill.append(test_mae(compact, prep.splits, prep.space, alive, mean_fill=True))
            rows.append({"share": share, "failed": failed, "off": off, "mean_fill": fill})
            print(
                f"failure-rate {rate:g}: {failed}/{k} failed: switched off "
                f"{statistics.fmean(off):.4f}, mean-filled {statistics.fmean(fill):.4f}",
                flush=True,
            )
        results[f"{rate:g}"] = {"active": k, "rows": rows}
    seconds = time.perf_counter() - started
    _write(args, prep, dm, results, seconds)


def _ms(v: list[float]) -> str:
    return f"{statistics.fmean(v):.4f}" + (f" ± {statistics.stdev(v):.4f}" if len(v) > 1 else "")


def _write(args, prep, dm, results, seconds: float) -> None:
    out = Path(args.out)
    units = f" ({prep.dataset.units})" if prep.dataset.units else ""
    lines = [
        f"# Failed sensors on {prep.dataset.name}: DynST at sparsity {args.sparsity:g}, "
        f"{prep.config.data.t_in} -> {args.horizon} steps",
        "",
        f"Whole-field test MAE{units}, seed {args.seed}, {args.epochs} epochs per training. "
        f"Each row fails that share of the K active sensors, drawn at random {args.draws} "
        "times (mean ± std). *Switched off*: the failed sensors' `alive` is 0, the gated "
        "model's definition of a missing sensor. *Mean-filled*: their inputs are the "
        "training mean, which is what a model without `alive` is given. Dense MAE "
        f"{dm['mae']:.4f}.",
        "",
        "| fine-tuned with | failed | switched off | vs no failure | mean-filled | vs no failure |",
        "|---|---|---|---|---|---|",
    ]
    for rate, r in results.items():
        base = statistics.fmean(r["rows"][0]["off"])
        for row in r["rows"]:
            off, fill = statistics.fmean(row["off"]), statistics.fmean(row["mean_fill"])
            lines.append(
                f"| failure rate {rate} | {row['failed']}/{r['active']} ({row['share']:.0%}) | "
                f"{_ms(row['off'])} | {off / base - 1:+.1%} | {_ms(row['mean_fill'])} | "
                f"{fill / base - 1:+.1%} |"
            )
    lines += [
        "",
        f"Reproduce: `python -m bench.studies.failures --data {args.data} --horizon {args.horizon} "
        f"--sparsity {args.sparsity:g} --failure-rate {args.failure_rate:g} --draws "
        f"{args.draws} --epochs {args.epochs} --seed {args.seed} --out {args.out}`",
        "",
        f"Total time {seconds:.0f} s.",
        "",
    ]
    write_atomic(out.with_suffix(".md"), "\n".join(lines))
    write_json(out.with_suffix(".json"), {"dense_mae": dm["mae"], "results": results,
                                          "args": vars(args), "seconds": seconds})  # fmt: skip
    _picture(out.with_suffix(".png"), results, dm["mae"], units)


def _picture(path: Path, results: dict, dense_mae: float, units: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    styles = {"off": ("switched off (alive = 0)", "-"), "mean_fill": ("mean-filled", "--")}
    for (rate, r), color in zip(results.items(), ("tab:blue", "tab:orange"), strict=False):
        shares = [100 * row["share"] for row in r["rows"]]
        for key, (name, ls) in styles.items():
            mean = [statistics.fmean(row[key]) for row in r["rows"]]
            std = [statistics.stdev(row[key]) if len(row[key]) > 1 else 0 for row in r["rows"]]
            label = f"{name}, fine-tuned at failure rate {rate}"
            ax.errorbar(
                shares, mean, yerr=std, ls=ls, marker="o", ms=4, capsize=3, color=color,
                label=label,
            )  # fmt: skip
    ax.axhline(dense_mae, color="gray", lw=1, ls=":", label="dense, no failure")
    ax.set_xlabel("active sensors failed (%)")
    ax.set_ylabel(f"whole-field test MAE{units}")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


if __name__ == "__main__":
    main()
