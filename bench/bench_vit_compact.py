"""Compacted vs dense inference of the gated ViT on CPU, side by side in one process.

For each sparsity, an encoder-heavy ViT (deep, wide encoder; one narrow decoder block) on
ERA5-sized frames (33 x 49, patch 4: 117 patches, 12 steps in and out) is timed three
ways on the same batch: ``dense`` (``model(x)``, no gate), ``gated`` (``model(x, gate)``,
the training-time form), and ``compact`` (``compact(compact.gather_input(x))``: reading
the K active patches with ``ops.patchify_compact`` included). Medians of interleaved
repeats after warm-up; weights are random (speed does not depend on them).

    OMP_NUM_THREADS=1 python bench/bench_vit_compact.py --out bench/results/vit_compact_cpu
"""

from __future__ import annotations

import argparse
import platform

import torch

from dynst_fast.artifacts import write_atomic, write_json
from dynst_fast.models import GatedViT
from dynst_fast.morph import PatchGrid
from dynst_fast.timing import side_by_side

CONFIGS = {
    "encoder-heavy": {"dim": 128, "depth": 6, "heads": 4, "decoder_dim": 32, "decoder_depth": 1},
    "era5-accuracy": {"dim": 64, "depth": 4, "heads": 4, "decoder_dim": 32, "decoder_depth": 1},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.3, 0.5])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--out", required=True, help="output path without extension")
    args = p.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch, 12, 1, 33, 49)
    rows = []
    for name, opts in CONFIGS.items():
        model = GatedViT(PatchGrid(33, 49, 4), 12, 12, 1, **opts).eval()
        n = model.num_sensors
        for s in args.sparsities:
            k = round((1 - s) * n)
            idx = torch.randperm(n)[:k].sort().values
            gate = torch.zeros(n)
            gate[idx] = 1.0
            comp = model.compact(idx)
            t = side_by_side(
                {
                    "dense": lambda m=model: m(x),
                    "gated": lambda m=model, g=gate: m(x, g),
                    "compact": lambda c=comp: c(c.gather_input(x)),
                },
                repeats=args.repeats,
            )
            row = {
                "config": name,
                "sparsity": s,
                "active": k,
                **{f"{key}_ms": v for key, v in t.items()},
                "speedup_vs_dense": t["dense"] / t["compact"],
                "speedup_vs_gated": t["gated"] / t["compact"],
            }
            rows.append(row)
            print(row, flush=True)
    lines = [
        "# Gated ViT: compacted vs dense inference on CPU",
        "",
        f"Batch {args.batch} of 12 frames 33 x 49 (patch 4, 117 patches), "
        f"{torch.get_num_threads()} thread(s), {platform.machine()}, torch "
        f"{torch.__version__}; median of {args.repeats} interleaved rounds after 5 warm-up "
        "calls (torch.utils.benchmark), in one process (a shared machine: ratios, not "
        "absolute times, are the result).",
        "",
        "| config | sparsity | active | dense ms | gated ms | compact ms | vs dense | vs gated |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['sparsity']:g} | {r['active']}/117 | {r['dense_ms']:.1f} | "
            f"{r['gated_ms']:.1f} | {r['compact_ms']:.1f} | {r['speedup_vs_dense']:.2f}x | "
            f"{r['speedup_vs_gated']:.2f}x |"
        )
    lines += ["", "Configs: " + "; ".join(f"{k}: {v}" for k, v in CONFIGS.items()), ""]
    lines += [f"Reproduce: `OMP_NUM_THREADS=1 python bench/bench_vit_compact.py --out {args.out}`"]
    write_atomic(f"{args.out}.md", "\n".join(lines) + "\n")
    write_json(f"{args.out}.json", {"args": vars(args), "configs": CONFIGS, "rows": rows})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
