"""Benchmark of ``select_swap`` / ``prune_lowest`` against ``torch.topk`` and a full sort.

    nice python bench/bench_select.py [--device cpu|cuda] [--repeats R] [--threads T]

N in {207, 16384, 2^20}, sparsity in {0.3, 0.5} (a random active set of (1 - s) N),
k in {1% of N, 10% of N} (capped by the smaller set), float32 scores from ``rand``.

* ``op``: ``torch.ops.dynst_fast.select_swap`` / ``prune_lowest`` (what the public ops run
  after their checks): the C++ nth_element kernel on CPU, the Triton radix select on CUDA.
* ``public``: ``dynst_fast.ops.select_swap`` with its argument checks (count of the active
  set, NaN check).
* ``topk``: ``masked_fill`` of the other set with -/+inf, then ``torch.topk`` (what most
  code writes; its ties are not guaranteed to go to the lower index).
* ``sort``: a full ``torch.sort`` of the masked scores, then the first k, as RigL
  implementations do (``torch.sort(score, descending=True)``).

select_swap runs both selections (k lowest active, k highest inactive); the compositions
do the same two. Results go to ``bench/results/select_<device>.md``.
"""

from __future__ import annotations

import itertools

import torch
from _timing import machine, parse_args, write_result

from dynst_fast import ops
from dynst_fast.timing import side_by_side

NS = (207, 16384, 2**20)
SPARSITIES = (0.3, 0.5)
K_FRACTIONS = (0.01, 0.1)


def bench_one(n: int, s: float, kf: float, device: str, repeats: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(n)
    score = torch.rand(n, generator=g).to(device)
    active = torch.zeros(n, dtype=torch.bool)
    active[torch.randperm(n, generator=g)[: round((1 - s) * n)]] = True
    active = active.to(device)
    n_act = int(active.sum())
    k = max(1, min(round(kf * n), n_act, n - n_act))
    lib = torch.ops.dynst_fast
    inf = float("inf")

    def topk_swap():
        drop = torch.topk(score.masked_fill(~active, inf), k, largest=False).indices
        grow = torch.topk(score.masked_fill(active, -inf), k).indices
        return drop, grow

    def sort_swap():
        drop = torch.sort(score.masked_fill(~active, inf)).indices[:k]
        grow = torch.sort(score.masked_fill(active, -inf), descending=True).indices[:k]
        return drop, grow

    mag = score.abs()
    times = side_by_side(
        {
            "op": lambda: lib.select_swap(score, active, k),
            "public": lambda: ops.select_swap(score, active, k),
            "topk": topk_swap,
            "sort": sort_swap,
            "prune_op": lambda: lib.prune_lowest(score, active, k),
            "prune_topk": lambda: torch.topk(mag.masked_fill(~active, inf), k, largest=False),
            "prune_sort": lambda: torch.sort(mag.masked_fill(~active, inf)).indices[:k],
        },
        repeats,
    )
    times["k"] = k
    return times


def main() -> None:
    args = parse_args(__doc__.split("\n")[0])
    dev = args.device
    ops.select_swap(torch.rand(4, device=dev), torch.tensor([True, False] * 2, device=dev), 1)
    head = (
        "| N | s | k | op | public | topk | sort | vs topk | vs sort | prune op | "
        "prune topk | prune sort | prune vs topk | prune vs sort |"
    )
    lines = [
        f"# select_swap / prune_lowest on {dev}",
        "",
        f"machine: {machine(dev)}; float32 scores; median ms of {args.repeats} interleaved "
        "repeats; ratio = composition time / op time.",
        f"command: `nice python bench/bench_select.py --device {dev} --repeats {args.repeats}"
        + (f" --threads {args.threads}`" if args.threads else "`"),
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for n, s, kf in itertools.product(NS, SPARSITIES, K_FRACTIONS):
        r = bench_one(n, s, kf, dev, args.repeats)
        row = (
            f"| {n} | {s} | {r['k']} | {r['op']:.3f} | {r['public']:.3f} | {r['topk']:.3f} | "
            f"{r['sort']:.3f} | {r['topk'] / r['op']:.2f} | {r['sort'] / r['op']:.2f} | "
            f"{r['prune_op']:.3f} | {r['prune_topk']:.3f} | {r['prune_sort']:.3f} | "
            f"{r['prune_topk'] / r['prune_op']:.2f} | {r['prune_sort'] / r['prune_op']:.2f} |"
        )
        lines.append(row)
        print(row, flush=True)
    path = write_result(f"select_{dev}.md", "\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
