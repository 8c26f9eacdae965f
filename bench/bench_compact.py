"""Benchmark of ``compact`` / ``expand`` against the plain PyTorch compositions.

    nice python bench/bench_compact.py [--device cpu|cuda] [--repeats R] [--budget-gb G]
        [--threads T]

Grid: N in {207, 16384, 2^20}, F in {12, 24, 96}, B in {1, 32}, sparsity in {0.3, 0.5}
(K = round((1 - s) N) active sensors, a sorted random set), float32. Configurations
whose x ([B, N, F]) is larger than ``--budget-gb`` are skipped and listed.

Methods (times are medians of interleaved repeats, ms):

* ``op``: ``torch.ops.dynst_fast.compact`` (what ``dynst_fast.ops.compact`` runs after its
  argument checks): the C++ kernel on CPU, the Triton kernel on CUDA.
* ``index*``: ``x[:, idx] * theta[idx, None]``.
* ``nz+isel``: ``nonzero`` of the mask, ``index_select``, in-place ``mul_`` (a composition
  that starts from the mask, as a caller holding only the mask would write it).
* ``fwd+bwd``: forward with x and theta requiring grad, then backward of a fixed
  gradient (dx and dtheta), ``op`` against ``index*`` under autograd.
* ``expand``: ``torch.ops.dynst_fast.expand`` against ``new_full`` + ``index_copy``.

On CUDA it also prints GB/s of ``op`` (bytes read + written: K rows in, K rows out) and
that as a fraction of the device copy bandwidth measured in the same run. Results go to
``bench/results/compact_<device>.md``.
"""

from __future__ import annotations

import argparse
import itertools

import torch
from _timing import copy_gbps, machine, parse_args, write_result

import dynst_fast.ops  # noqa: F401  (registers torch.ops.dynst_fast.compact / expand)
from dynst_fast.timing import side_by_side

NS = (207, 16384, 2**20)
FS = (12, 24, 96)
BS = (1, 32)
SPARSITIES = (0.3, 0.5)


def bench_one(b: int, n: int, f: int, s: float, device: str, repeats: int) -> dict[str, float]:
    ops = torch.ops.dynst_fast
    g = torch.Generator().manual_seed(n + f + b)
    k = max(1, round((1 - s) * n))
    idx = torch.randperm(n, generator=g)[:k].sort().values.to(device)
    mask = torch.zeros(n, dtype=torch.bool, device=device)
    mask[idx] = True
    x = torch.randn(b, n, f, device=device)
    theta = torch.randn(n, device=device)
    y = torch.randn(b, k, f, device=device)

    def nz_isel():
        i = mask.nonzero().squeeze(1)
        return x.index_select(1, i).mul_(theta.index_select(0, i)[None, :, None])

    with torch.no_grad():
        fwd = side_by_side(
            {
                "op": lambda: ops.compact(x, theta, idx),
                "index*": lambda: x[:, idx] * theta[idx, None],
                "nz+isel": nz_isel,
                "expand_op": lambda: ops.expand(y, idx, n, 0.0),
                "expand_ref": lambda: y.new_zeros(b, n, f).index_copy(1, idx, y),
            },
            repeats,
            warmup=2,
            grad=True,
        )
    xg, tg = x.clone().requires_grad_(), theta.clone().requires_grad_()

    def op_bwd():
        ops.compact(xg, tg, idx).backward(y)

    def ref_bwd():
        (xg[:, idx] * tg[idx, None]).backward(y)

    bwd = side_by_side({"op": op_bwd, "index*": ref_bwd}, repeats, warmup=2, grad=True)
    out = {f"fwd_{key}": v for key, v in fwd.items()}
    out.update({f"fb_{key}": v for key, v in bwd.items()})
    out["k"] = k
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget-gb", type=float, default=None, help="max size of x (GB)")
    args = parse_args(ap.description, ap)
    dev = args.device
    budget = args.budget_gb if args.budget_gb is not None else (8.0 if dev == "cuda" else 1.0)
    cuda = dev == "cuda"
    head = (
        "| B | N | F | s | K | x MB | op | index* | nz+isel | fwd ratio vs index* | "
        "vs nz+isel | fwd+bwd op | fwd+bwd index* | fwd+bwd ratio | expand op | "
        "expand ref | expand ratio |" + (" op GB/s | % of copy |" if cuda else "")
    )
    lines = [
        f"# compact / expand on {dev}",
        "",
        f"machine: {machine(dev)}; float32; median ms of {args.repeats} interleaved repeats;",
        "ratio = composition time / op time (> 1: the op is faster).",
        "command: `nice python bench/bench_compact.py --device "
        f"{dev} --repeats {args.repeats} --budget-gb {budget}"
        + (f" --threads {args.threads}`" if args.threads else "`"),
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    skipped = []
    big_ratios = []
    for n, f, b, s in itertools.product(NS, FS, BS, SPARSITIES):
        mb = b * n * f * 4 / 1e6
        if mb / 1e3 > budget:
            skipped.append(f"B={b} N={n} F={f} s={s} (x = {mb / 1e3:.1f} GB)")
            continue
        r = bench_one(b, n, f, s, dev, args.repeats)
        row = (
            f"| {b} | {n} | {f} | {s} | {r['k']} | {mb:.1f} | {r['fwd_op']:.3f} | "
            f"{r['fwd_index*']:.3f} | {r['fwd_nz+isel']:.3f} | "
            f"{r['fwd_index*'] / r['fwd_op']:.2f} | {r['fwd_nz+isel'] / r['fwd_op']:.2f} | "
            f"{r['fb_op']:.3f} | {r['fb_index*']:.3f} | {r['fb_index*'] / r['fb_op']:.2f} | "
            f"{r['fwd_expand_op']:.3f} | {r['fwd_expand_ref']:.3f} | "
            f"{r['fwd_expand_ref'] / r['fwd_expand_op']:.2f} |"
        )
        if cuda:
            moved = 2 * b * r["k"] * f * 4
            gbps = moved / (r["fwd_op"] * 1e-3) / 1e9
            row += f" {gbps:.0f} | {100 * gbps / copy_gbps(moved, dev):.0f} |"
        if mb > 10:
            big_ratios.append(r["fwd_index*"] / r["fwd_op"])
        lines.append(row)
        print(row, flush=True)
    if big_ratios:
        lines += [
            "",
            f"x over 10 MB: forward ratio vs index* min {min(big_ratios):.2f}, "
            f"median {sorted(big_ratios)[len(big_ratios) // 2]:.2f} over {len(big_ratios)} "
            "configurations.",
        ]
    if skipped:
        lines += ["", f"skipped (x over the {budget} GB budget): " + "; ".join(skipped)]
    path = write_result(f"compact_{dev}.md", "\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
