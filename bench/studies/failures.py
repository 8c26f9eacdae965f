"""Forecasts with failed and stuck sensors: whole-field MAE when a share of the active
sensors stops reporting (switched off through ``alive``, or filled with the training
mean, what a plain model would be given) or gets stuck (holds one reading at
every step: fed as it is, or found by the sidecar's suspect rules and switched off, as
``dynst predict --on-suspect drop`` does), for DynST fine-tuned at several
``--failure-rate``s.

Trains the dense model once and DynST to the sparsity once per failure rate; for each
share of failed active sensors draws that many at random (``--draws`` times, seeded) and
scores the compacted model on the validation split (which chooses the failure rate: the
lowest validation MAE at 5% failed) and on the test split (reported). Writes a Markdown
table, a JSON file and a picture.

    python -m bench.studies.failures --data ../shared/data/los_loop --horizon 3 --sparsity 0.5 \\
        --failure-rates 0 0.05 0.1 0.2 --out bench/results/los_loop_failures
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from bench.studies.runs import add_run_flags, dense_run, plan_from, sparse_plan, sparse_train
from dynst_fast.data.windows import eval_loader
from dynst_fast.deploy import suspect_rules
from dynst_fast.files import write_atomic, write_json
from dynst_fast.run import compacted
from dynst_fast.suspect import SuspectRules

SHARES = (0.0, 0.05, 0.10, 0.20)
CHOOSE_AT = 0.05  # the share of failed sensors whose validation MAE picks the failure rate
CASES = ("off", "mean_fill", "stuck_kept", "stuck_found")


def split_mae(compact, splits, space, split: str, failed: torch.Tensor, case: str,
              rules: SuspectRules | None = None) -> float:  # fmt: skip
    """Whole-field MAE (original units) on ``split`` of ``compact`` with the active
    sensors where ``failed`` is True failed as ``case`` says: ``off`` (``alive`` 0),
    ``mean_fill`` (their inputs the training mean), ``stuck_kept`` (the window's first
    reading held at every step, fed as it is) or ``stuck_found`` (the same, then every
    window checked by ``rules`` and what they flag switched off, false alarms included)."""
    preds, targets = [], []
    k = compact.num_active
    alive = (~failed).to(torch.float32)
    with torch.inference_mode():
        for x, y in eval_loader(getattr(splits, split)):
            xa = compact.gather_input(x)  # graph input [B, T, K, C], normalised
            if case == "off":
                pred = compact(xa, alive)
            elif case == "mean_fill":
                pred = compact(xa * alive[None, None, :, None])
            else:
                xa = xa.clone()
                xa[:, :, failed] = xa[:, :1, failed]  # stuck since the window began
                if case == "stuck_kept":
                    pred = compact(xa)
                else:
                    pred = _with_checks(compact, splits, space, xa, x, rules, k)
            preds.append(pred)
            targets.append(y)
    pred, y = torch.cat(preds), torch.cat(targets)
    return float(space.metrics(splits.denormalize(pred), splits.denormalize(y))["mae"])


def _with_checks(compact, splits, space, xa, x, rules, k) -> torch.Tensor:
    """Run each group of windows that the rules flag alike with the flagged sensors off."""
    c = splits.mean.shape[-1]
    full = x.clone()
    full[:, :, compact.index] = xa  # the stuck readings, back in the full input
    raw = space.serving_input(splits.denormalize_input(full), compact.index)[..., :c].numpy()
    f = rules.flags(raw, "graph")
    flags = f["stuck"] | f["out of range"]
    patterns, group = np.unique(flags, axis=0, return_inverse=True)
    out = None
    for g, pattern in enumerate(patterns):
        rows = torch.from_numpy(np.nonzero(group.reshape(-1) == g)[0])
        a = torch.from_numpy(~pattern).to(torch.float32)
        y = compact(xa[rows], a)
        if out is None:
            out = y.new_empty((xa.shape[0], *y.shape[1:]))
        out[rows] = y
    return out


def summarize(paths: list[str], out: Path) -> None:
    """The mean over seeds (one JSON of this study per seed) of the cost of failures:
    whole-field test MAE at each share failed against none, for every fine-tuning they
    share."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    common = [k for k in runs[0]["results"] if all(k in r["results"] for r in runs)]
    seeds = [r["args"]["seed"] for r in runs]
    epochs = {r["args"]["epochs"] for r in runs}
    lines = [
        f"# Failed and stuck sensors, mean over seeds {', '.join(map(str, seeds))}",
        "",
        f"Whole-field test MAE against no failure of the same model, {'/'.join(map(str, epochs))} "
        f"epochs per training; each seed's draws as in its own table ({', '.join(paths)}).",
        "",
        "| fine-tuned with | failed | test, off: vs no failure | stuck, found: vs no failure |"
        " stuck, fed: vs no failure |",
        "|---|---|---|---|---|",
    ]
    for key in common:
        rows = [r["results"][key]["rows"] for r in runs]
        for i, row in enumerate(rows[0]):
            cost = {
                c: statistics.fmean(
                    statistics.fmean(rs[i][c]) / statistics.fmean(rs[0]["off"]) - 1 for rs in rows
                )
                for c in ("off", "stuck_found", "stuck_kept")
            }
            lines.append(
                f"| failure rate {key} | {row['failed']}/{runs[0]['results'][key]['active']} "
                f"({row['share']:.0%}) | {cost['off']:+.2%} | {cost['stuck_found']:+.2%} | "
                f"{cost['stuck_kept']:+.2%} |"
            )
    lines += ["", f"Reproduce: `python -m bench.studies.failures --summarize {' '.join(paths)} "
              f"--out {out}`", ""]  # fmt: skip
    write_atomic(out.with_suffix(".md"), "\n".join(lines))


def main() -> None:
    import sys

    if "--summarize" in sys.argv:
        s = argparse.ArgumentParser()
        s.add_argument("--summarize", nargs="+", required=True, help="the JSON of each seed")
        s.add_argument("--out", required=True)
        a = s.parse_args()
        summarize(a.summarize, Path(a.out))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_flags(p)
    p.add_argument("--failure-rates", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2])
    p.add_argument(
        "--stuck-shares", type=float, nargs="+", default=[0.0],
        help="--stuck-share of the fine-tunings with failures (each rate x each)",
    )  # fmt: skip
    p.add_argument("--shares", type=float, nargs="+", default=list(SHARES))
    p.add_argument("--draws", type=int, default=10)
    args = p.parse_args()
    started = time.perf_counter()
    prep = plan_from(args)
    dense, dm = dense_run(prep)
    print(f"dense MAE {dm['mae']:.4f}", flush=True)
    results: dict[str, dict] = {}
    combos = [(r, s) for r in args.failure_rates for s in args.stuck_shares if r > 0 or s == 0]
    for rate, stuck in combos:
        plan = sparse_plan(prep, "dynst", failure_rate=rate, stuck_share=stuck)
        trained = sparse_train(plan, dense)
        compact = compacted({"dynst": trained})["dynst"]
        k = compact.num_active
        rules = suspect_rules(prep.splits, prep.space, compact.index,
                              prep.splits.mean.shape[-1], "graph")  # fmt: skip
        gen = torch.Generator().manual_seed(1000 + args.seed)  # the same draws for every rate
        rows = []
        for share in args.shares:
            failed_n = int(round(share * k))
            draws = 1 if failed_n == 0 else args.draws
            row = {"share": share, "failed": failed_n, "val": [], "val_stuck": [],
                   **{c: [] for c in CASES}}  # fmt: skip
            for _ in range(draws):
                failed = torch.zeros(k, dtype=torch.bool)
                failed[torch.randperm(k, generator=gen)[:failed_n]] = True
                for key, case in (("val", "off"), ("val_stuck", "stuck_kept")):
                    row[key].append(
                        split_mae(compact, prep.splits, prep.space, "val", failed, case)
                    )
                for case in CASES:
                    row[case].append(
                        split_mae(compact, prep.splits, prep.space, "test", failed, case, rules)
                    )
            rows.append(row)
            print(
                f"failure-rate {rate:g}, stuck share {stuck:g}: {failed_n}/{k} failed: "
                f"val {statistics.fmean(row['val']):.4f}"
                + "".join(f", {c} {statistics.fmean(row[c]):.4f}" for c in CASES),
                flush=True,
            )
        results[f"{rate:g}" + (f", stuck share {stuck:g}" if stuck else "")] = {
            "active": k,
            "rows": rows,
            "failure_rate": rate,
            "stuck_share": stuck,
        }
    seconds = time.perf_counter() - started
    _write(args, prep, dm, results, seconds)


def chosen_rate(results: dict) -> str:
    """The failure rate with the lowest validation MAE at ``CHOOSE_AT`` failed."""

    def at(r: dict) -> float:
        row = min(r["rows"], key=lambda row: abs(row["share"] - CHOOSE_AT))
        return statistics.fmean(row["val"])

    return min(results, key=lambda rate: at(results[rate]))


def _ms(v: list[float]) -> str:
    if not v:
        return "-"
    return f"{statistics.fmean(v):.4f}" + (f" ± {statistics.stdev(v):.4f}" if len(v) > 1 else "")


def _write(args, prep, dm, results, seconds: float) -> None:
    out = Path(args.out)
    units = f" ({prep.dataset.units})" if prep.dataset.units else ""
    best = chosen_rate(results)
    lines = [
        f"# Failed and stuck sensors on {prep.dataset.name}: DynST at sparsity "
        f"{args.sparsity:g}, {prep.config.data.t_in} -> {args.horizon} steps",
        "",
        f"Whole-field MAE{units}, seed {args.seed}, {args.epochs} epochs per training. Each "
        f"row fails that share of the K active sensors, drawn at random {args.draws} times "
        "(mean ± std; the same draws for every failure rate). *val, off*: validation MAE "
        "with the failed sensors switched off (`alive` 0), which chooses the failure rate "
        f"(lowest at {CHOOSE_AT:.0%} failed: **{best}**); *val, stuck fed*: with them "
        "stuck and fed as they are (what `--stuck-share` would improve). The test columns: "
        "*off*; "
        "*mean-filled* (their inputs the training mean, what a model without `alive` is "
        "given); *stuck, fed* (the window's first reading held at every step, fed as it is: "
        "`--on-suspect keep`); *stuck, found* (the same, every window checked by the "
        "sidecar's suspect rules and what they flag switched off, false alarms included: "
        f"`dynst predict`'s default). Dense test MAE {dm['mae']:.4f}.",
        "",
        "| fine-tuned with | failed | val, off | val, stuck fed | test, off | vs no failure | "
        "mean-filled | stuck, fed | stuck, found | vs no failure |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rate, r in results.items():
        base = statistics.fmean(r["rows"][0]["off"])
        mark = " (chosen)" if rate == best else ""
        for row in r["rows"]:
            off, found = statistics.fmean(row["off"]), statistics.fmean(row["stuck_found"])
            lines.append(
                f"| failure rate {rate}{mark} | {row['failed']}/{r['active']} "
                f"({row['share']:.0%}) | {_ms(row['val'])} | {_ms(row.get('val_stuck', []))} | "
                f"{_ms(row['off'])} | "
                f"{off / base - 1:+.1%} | {_ms(row['mean_fill'])} | {_ms(row['stuck_kept'])} | "
                f"{_ms(row['stuck_found'])} | {found / base - 1:+.1%} |"
            )
    rates = " ".join(f"{r:g}" for r in args.failure_rates)
    lines += [
        "",
        f"Reproduce: `python -m bench.studies.failures --data {args.data} --horizon {args.horizon} "
        f"--sparsity {args.sparsity:g} --failure-rates {rates} --stuck-shares "
        f"{' '.join(f'{v:g}' for v in args.stuck_shares)} --draws {args.draws} "
        f"--epochs {args.epochs} --seed {args.seed} --out {args.out}`",
        "",
        f"Total time {seconds:.0f} s.",
        "",
    ]
    write_atomic(out.with_suffix(".md"), "\n".join(lines))
    write_json(out.with_suffix(".json"), {"dense_mae": dm["mae"], "results": results,
                                          "chosen_failure_rate": best, "args": vars(args),
                                          "seconds": seconds})  # fmt: skip
    _picture(out.with_suffix(".png"), results, best, dm["mae"], units)


def _picture(path: Path, results: dict, best: str, dense_mae: float, units: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.8, 4.4), dpi=120)
    styles = {
        "off": ("switched off", "-"),
        "mean_fill": ("mean-filled", "--"),
        "stuck_kept": ("stuck, fed as is", ":"),
        "stuck_found": ("stuck, found", "-."),
    }
    shown = {"0": results.get("0"), best: results[best]}
    for (rate, r), color in zip(shown.items(), ("tab:blue", "tab:orange"), strict=False):
        if r is None:
            continue
        shares = [100 * row["share"] for row in r["rows"]]
        for key, (name, ls) in styles.items():
            mean = [statistics.fmean(row[key]) for row in r["rows"]]
            std = [statistics.stdev(row[key]) if len(row[key]) > 1 else 0 for row in r["rows"]]
            ax.errorbar(shares, mean, yerr=std, ls=ls, marker="o", ms=3, capsize=2, color=color,
                        label=f"{name}, failure rate {rate}")  # fmt: skip
    ax.axhline(dense_mae, color="gray", lw=1, ls=":", label="dense, no failure")
    ax.set_xlabel("active sensors failed (%)")
    ax.set_ylabel(f"whole-field test MAE{units}")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


if __name__ == "__main__":
    main()
