"""onnxruntime latency of compacted vs dense exports, beside PyTorch, for the same runs.

For each run directory, exports the compacted and the dense model (both verified by
``dynst export``), then times four things interleaved in one process on real test
windows: PyTorch dense, PyTorch compacted, onnxruntime dense, onnxruntime compacted.
The figure of merit is ``ort_speedup / torch_speedup`` (goal: >= 0.9). Each engine's
dense/compact pair is interleaved on its own, one engine after the other.

    dynst run --data ../shared/data/los_loop --horizon 3 --sparsity 0.3 --out runs/ll_s0.3
    dynst run --data ../shared/data/los_loop --horizon 3 --sparsity 0.5 --out runs/ll_s0.5
    python -m bench.studies.onnx_latency runs/ll_s0.3 runs/ll_s0.5 --out bench/results/onnx_latency

Image runs (``dynst run --data ../shared/data/era5_uk_t2m --model vit ...``) work the
same way; their inputs are the active patch tiles.

onnxruntime uses as many intra-op threads as torch (``torch.get_num_threads()``). The
measurement is ``dynst_fast.latency.measure``, which ``dynst bench RUN_DIR`` runs for one
run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dynst_fast.files import write_atomic, write_json
from dynst_fast.latency import machine_line, measure


def _table(rows: list[dict]) -> str:
    head = (
        "| run | model | sparsity | K/N | batch | torch dense / compact ms | torch speedup "
        "| ort dense / compact ms | ort speedup | ort / torch speedup |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r['run']} | {r['model']} | {r['sparsity']:.2f} | {r['num_active']}/{r['num_sensors']}"
        f" | {r['batch']} | {r['torch_dense_ms']:.3f} / {r['torch_compact_ms']:.3f}"
        f" | {r['torch_speedup']:.2f}x | {r['ort_dense_ms']:.3f} / {r['ort_compact_ms']:.3f}"
        f" | {r['ort_speedup']:.2f}x | {r['ort_over_torch_speedup']:.0%} |\n"
        for r in rows
    )
    return head + body


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="`dynst run` directories")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--out", default="bench/results/onnx_latency")
    args = p.parse_args()
    rows = []
    for run_dir in args.runs:
        rows += measure(run_dir, tuple(args.batches), args.repeats)
        for r in rows[-len(args.batches) :]:
            print(
                f"{r['run']} batch {r['batch']}: torch {r['torch_speedup']:.2f}x, onnxruntime "
                f"{r['ort_speedup']:.2f}x ({r['ort_over_torch_speedup']:.0%} of torch's)"
            )
    machine = machine_line()
    text = (
        "# onnxruntime vs PyTorch: compacted over dense latency\n\n"
        f"Machine: {machine}. "
        f"Median of {args.repeats} interleaved repeats after 5 warm-up calls, one process; "
        "torch's dense/compact pair and onnxruntime's are interleaved separately.\n\n"
        f"Command: `python -m bench.studies.onnx_latency {' '.join(args.runs)} "
        f"--out {args.out}`\n\n" + _table(rows)
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out.with_suffix(".md"), text)
    write_json(out.with_suffix(".json"), {"machine": machine, "rows": rows})
    print(text)


if __name__ == "__main__":
    main()
