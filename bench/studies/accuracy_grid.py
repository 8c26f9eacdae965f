"""Accuracy of dense vs sparse schemes on a grid data set with an image backbone.

Trains the dense model once per seed, then fine-tunes a copy under each scheme and
sparsity (exactly what ``dynst run --model vit|simvp`` does), and writes a Markdown table
and a JSON file of whole-field test MAE / RMSE (original units), SSIM / PSNR (data range =
the test targets' max - min) and the compacted inference speedup (CPU, side by side in one
process; ``simvp`` runs through ``InputMasked`` and has none by construction).

    python -m bench.studies.accuracy_grid --data ../shared/data/era5_uk_t2m --model vit --patch 4 \\
        --sparsities 0.3 0.5 --schemes dynst random --seeds 0 --epochs 30 \\
        --option dim=64 depth=4 heads=4 decoder_dim=32 \\
        --out bench/results/era5_vit_accuracy
"""

from __future__ import annotations

import argparse
import ast
import platform
import statistics
import time

import torch

from bench.studies.runs import dense_run, plan, sparse_run
from dynst_fast.baselines import run_baselines
from dynst_fast.config import SPARSE_SCHEMES, RunConfig
from dynst_fast.files import write_atomic, write_json

FIELDS = ("mae", "rmse", "ssim", "psnr", "speedup", "measured_ratio")


def _mean_std(values: list[float], digits: int = 3) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _options(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = ast.literal_eval(value)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None)
    p.add_argument("--model", default="vit", choices=["vit", "simvp"])
    p.add_argument("--patch", type=int, default=4)
    p.add_argument("--horizon", type=int, default=12)
    p.add_argument("--t-in", type=int, default=12)
    p.add_argument("--sparsities", type=float, nargs="*", default=[0.3, 0.5])
    p.add_argument("--schemes", nargs="*", default=["dynst", "random"], choices=SPARSE_SCHEMES)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--option", nargs="*", default=[], help="backbone options key=value")
    p.add_argument("--out", required=True, help="output path without extension")
    args = p.parse_args()

    rows: dict[str, dict[str, list[float]]] = {}
    started = time.perf_counter()
    ds = splits = None
    for seed in args.seeds:
        cfg = RunConfig.from_flags(
            data=args.data,
            model=args.model,
            patch=args.patch,
            epochs=args.epochs,
            seed=seed,
            t_in=args.t_in,
            horizon=args.horizon,
            batch_size=args.batch_size,
            lr=args.lr,
            option=_options(args.option),
        )
        prep = plan(cfg)
        ds, splits = prep.dataset, prep.splits
        dense, dm = dense_run(prep)
        r = rows.setdefault("dense", {k: [] for k in FIELDS})
        for k in ("mae", "rmse", "ssim", "psnr"):
            r[k].append(dm[k])
        print(f"seed {seed} dense: MAE {dm['mae']:.4f} RMSE {dm['rmse']:.4f}", flush=True)
        for s in args.sparsities:
            for scheme in args.schemes:
                m = sparse_run(prep, dense, scheme, s)
                r = rows.setdefault(f"{scheme} {s:g}", {k: [] for k in FIELDS})
                for k in FIELDS:
                    if m.get(k) is not None:
                        r[k].append(m[k])
                speed = f"{m['speedup']:.2f}x" if m["speedup"] is not None else "none (masked)"
                print(
                    f"seed {seed} {scheme} {s:g}: MAE {m['mae']:.4f} RMSE {m['rmse']:.4f} "
                    f"SSIM {m['ssim']:.4f} PSNR {m['psnr']:.2f} speedup {speed} "
                    f"(dense MAE {dm['mae']:.4f})",
                    flush=True,
                )
    base = run_baselines(splits, prep.space)
    units = f" ({ds.units})" if ds.units else ""
    g = ds.patch_grid(args.patch)
    lines = [
        f"# {args.model} on {ds.name}: {args.t_in} steps in, {args.horizon} out, 8:1:1 split",
        "",
        f"Seeds {args.seeds}, {args.epochs} epochs per training, backbone options "
        f"{_options(args.option) or 'default'}; {g.height} x {g.width} field, patch "
        f"{g.patch} (padded to {g.rows * g.patch} x {g.cols * g.patch}, {g.num_patches} "
        "patches). Whole-field test metrics in original units (padding excluded), mean ± "
        "std over seeds; SSIM / PSNR with data range = test targets' max - min "
        f"({base['last_value']['data_range']:.2f}). Speedup = dense / compacted inference "
        f"time (batch 64, {torch.get_num_threads()} threads, {platform.machine()}, side by "
        "side in one process, compacted time includes patchify_compact of the frames).",
        "",
        f"| model | MAE{units} | RMSE{units} | SSIM | PSNR dB | MAE vs dense | speedup |",
        "|---|---|---|---|---|---|---|",
    ]
    dense_mae = statistics.fmean(rows["dense"]["mae"])
    for name, r in rows.items():
        rel = statistics.fmean(r["mae"]) / dense_mae - 1
        if r["speedup"]:
            sp = f"{statistics.fmean(r['speedup']):.2f}x"
        elif r["measured_ratio"]:
            sp = f"none (InputMasked; time ratio {statistics.fmean(r['measured_ratio']):.2f})"
        else:
            sp = ""
        lines.append(
            f"| {name} | {_mean_std(r['mae'])} | {_mean_std(r['rmse'])} | "
            f"{_mean_std(r['ssim'], 4)} | {_mean_std(r['psnr'], 2)} | {rel:+.1%} | {sp} |"
        )
    for name, b in base.items():
        lines.append(
            f"| {name} baseline | {b['mae']:.3f} | {b['rmse']:.3f} | {b['ssim']:.4f} | "
            f"{b['psnr']:.2f} | {b['mae'] / dense_mae - 1:+.1%} | |"
        )
    cmd = ["python -m bench.studies.accuracy_grid"]
    for k, v in vars(args).items():
        if v is None or v == []:
            continue
        cmd.append(f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}")
    lines += [
        "",
        f"Reproduce: `{' '.join(cmd)}`",
        "",
        f"Total time {time.perf_counter() - started:.0f} s.",
    ]
    write_atomic(f"{args.out}.md", "\n".join(lines) + "\n")
    write_json(f"{args.out}.json", {"args": vars(args), "rows": rows, "baselines": base})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
