"""Benchmark of ``patchify_compact`` against patchify (pad, reshape/permute) then gather.

    nice python bench/bench_patchify.py [--device cpu|cuda] [--repeats R] [--threads T]

Videos ``[B, T, C, H, W]`` with patch size p (``N = ceil(H/p) ceil(W/p)`` patches), at
sparsity 0.3 and 0.5 (a sorted random set of active patches), float32:

* ``op``: ``torch.ops.dynst_fast.patchify_compact`` (what the public op runs after its
  checks): the Triton kernel on CUDA; on CPU the ``cpu`` backend's implementation.
* ``compose``: ``dynst_fast.ops.reference.patchify`` (``F.pad`` when needed, reshape,
  permute, reshape) then ``[:, idx] * theta[idx, None]``.
* ``fwd+bwd``: both with frames and theta requiring grad, backward of a fixed gradient.

On CUDA it also prints the op's GB/s (active pixels read + output written) and that as
a fraction of the copy bandwidth measured in the same run. Results go to
``bench/results/patchify_<device>.md``.
"""

from __future__ import annotations

import itertools

import torch
from _timing import copy_gbps, machine, parse_args, write_result

from dynst_fast.ops import reference
from dynst_fast.timing import side_by_side

# (B, T, C, H, W, p): traffic-style grids (12 frames), an RGB ViT-size clip, and a grid
# whose sides are not multiples of p (padding).
SHAPES = (
    (1, 12, 1, 64, 64, 4),
    (32, 12, 1, 64, 64, 4),
    (32, 10, 1, 128, 128, 8),
    (8, 4, 3, 224, 224, 16),
    (16, 12, 2, 50, 70, 8),
)
SPARSITIES = (0.3, 0.5)


def bench_one(shape, s: float, device: str, repeats: int) -> dict[str, float]:
    b, t, c, h, w, p = shape
    n = -(-h // p) * -(-w // p)
    g = torch.Generator().manual_seed(h * w)
    k = max(1, round((1 - s) * n))
    idx = torch.randperm(n, generator=g)[:k].sort().values.to(device)
    frames = torch.randn(b, t, c, h, w, device=device)
    theta = torch.randn(n, device=device)
    op = torch.ops.dynst_fast.patchify_compact

    def compose(fr, th):
        return reference.patchify(fr, p)[:, idx] * th[idx, None]

    with torch.no_grad():
        fwd = side_by_side(
            {"op": lambda: op(frames, theta, idx, p), "compose": lambda: compose(frames, theta)},
            repeats,
            warmup=2,
            grad=True,
        )
    fg, tg = frames.clone().requires_grad_(), theta.clone().requires_grad_()
    dy = torch.randn(b, k, t * c * p * p, device=device)
    fb = side_by_side(
        {
            "op": lambda: op(fg, tg, idx, p).backward(dy),
            "compose": lambda: compose(fg, tg).backward(dy),
        },
        repeats,
        warmup=2,
        grad=True,
    )
    return {
        "k": k,
        "n": n,
        "fwd_op": fwd["op"],
        "fwd_compose": fwd["compose"],
        **{"fb_op": fb["op"], "fb_compose": fb["compose"]},
    }


def main() -> None:
    args = parse_args(__doc__.split("\n")[0])
    dev = args.device
    cuda = dev == "cuda"
    head = (
        "| B | T | C | H | W | p | N | s | K | frames MB | op | compose | ratio | "
        "fwd+bwd op | fwd+bwd compose | fwd+bwd ratio |"
        + (" op GB/s | % of copy |" if cuda else "")
    )
    lines = [
        f"# patchify_compact on {dev}",
        "",
        f"machine: {machine(dev)}; float32; median ms of {args.repeats} interleaved repeats;",
        "ratio = compose time / op time.",
        f"command: `nice python bench/bench_patchify.py --device {dev} --repeats {args.repeats}"
        + (f" --threads {args.threads}`" if args.threads else "`"),
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for shape, s in itertools.product(SHAPES, SPARSITIES):
        r = bench_one(shape, s, dev, args.repeats)
        b, t, c, h, w, p = shape
        mb = b * t * c * h * w * 4 / 1e6
        row = (
            f"| {b} | {t} | {c} | {h} | {w} | {p} | {r['n']} | {s} | {r['k']} | {mb:.1f} | "
            f"{r['fwd_op']:.3f} | {r['fwd_compose']:.3f} | "
            f"{r['fwd_compose'] / r['fwd_op']:.2f} | {r['fb_op']:.3f} | "
            f"{r['fb_compose']:.3f} | {r['fb_compose'] / r['fb_op']:.2f} |"
        )
        if cuda:
            moved = 2 * b * r["k"] * t * c * p * p * 4
            gbps = moved / (r["fwd_op"] * 1e-3) / 1e9
            row += f" {gbps:.0f} | {100 * gbps / copy_gbps(moved, dev):.0f} |"
        lines.append(row)
        print(row, flush=True)
    path = write_result(f"patchify_{dev}.md", "\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
