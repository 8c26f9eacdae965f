"""onnxruntime latency of compacted vs dense exports, beside PyTorch, for the same runs.

For each run directory, exports the compacted and the dense model (both verified by
``dynst export``), then times four things interleaved in one process on real test
windows: PyTorch dense, PyTorch compacted, onnxruntime dense, onnxruntime compacted.
The figure of merit is ``ort_speedup / torch_speedup`` (goal: >= 0.9). Each engine's
dense/compact pair is interleaved on its own, one engine after the other.

    dynst run --data ../shared/data/los_loop --horizon 3 --sparsity 0.3 --out runs/ll_s0.3
    dynst run --data ../shared/data/los_loop --horizon 3 --sparsity 0.5 --out runs/ll_s0.5
    python bench/bench_onnx.py runs/ll_s0.3 runs/ll_s0.5 --out bench/results/onnx_latency

Image runs (``dynst run --data ../shared/data/era5_uk_t2m --model vit ...``) work the
same way; their inputs are the active patch tiles.

onnxruntime uses as many intra-op threads as torch (``torch.get_num_threads()``).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import onnxruntime as ort
import torch

from dynst_fast.artifacts import load_run, write_atomic, write_json
from dynst_fast.deploy import deployable, example_inputs
from dynst_fast.export import export_run
from dynst_fast.timing import side_by_side


def _session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def bench_run(run_dir: str, batches: list[int], repeats: int, tmp: Path) -> list[dict]:
    bundle = load_run(run_dir)
    name = Path(run_dir).name
    paths = {kind: tmp / f"{name}_{kind}.onnx" for kind in ("compact", "dense")}
    export_run(run_dir, paths["compact"])
    export_run(run_dir, paths["dense"], dense=True)
    sessions = {kind: _session(p) for kind, p in paths.items()}
    modules = {kind: deployable(bundle, dense=kind == "dense") for kind in paths}
    rows = []
    for b in batches:
        xs = {k: example_inputs(bundle, idx, max_windows=b) for k, (_, idx) in modules.items()}
        feeds = {k: {"x": v.numpy()} for k, v in xs.items()}
        fns: dict[str, dict] = {"torch": {}, "ort": {}}
        for kind in ("dense", "compact"):
            module, sess, x, feed = modules[kind][0], sessions[kind], xs[kind], feeds[kind]
            fns["torch"][f"torch_{kind}"] = lambda m=module, x=x: m(x)
            fns["ort"][f"ort_{kind}"] = lambda s=sess, f=feed: s.run(None, f)
        # Each engine's pair is interleaved on its own: torch's OpenMP workers keep
        # spinning after a call, which slows an onnxruntime call that follows at once.
        t = {
            **side_by_side(fns["torch"], repeats, 5),
            **side_by_side(fns["ort"], repeats, 5),
        }
        torch_speedup = t["torch_dense"] / t["torch_compact"]
        ort_speedup = t["ort_dense"] / t["ort_compact"]
        rows.append(
            {
                "run": name,
                "model": bundle.checkpoint["model"]["name"],
                "sparsity": round(1 - bundle.active_index.numel() / bundle.theta.numel(), 3),
                "num_active": int(bundle.active_index.numel()),
                "num_sensors": int(bundle.theta.numel()),
                "batch": int(xs["dense"].shape[0]),
                **{f"{k}_ms": v for k, v in t.items()},
                "torch_speedup": torch_speedup,
                "ort_speedup": ort_speedup,
                "ort_over_torch_speedup": ort_speedup / torch_speedup,
            }
        )
        print(
            f"{name} batch {b}: torch {torch_speedup:.2f}x, onnxruntime {ort_speedup:.2f}x "
            f"({ort_speedup / torch_speedup:.0%} of torch's)"
        )
    return rows


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
    with tempfile.TemporaryDirectory() as tmp:
        for run_dir in args.runs:
            rows += bench_run(run_dir, args.batches, args.repeats, Path(tmp))
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    text = (
        "# onnxruntime vs PyTorch: compacted over dense latency\n\n"
        f"Machine: {machine}; onnxruntime {ort.__version__}, torch {torch.__version__}. "
        f"Median of {args.repeats} interleaved repeats after 5 warm-up calls, one process; "
        "torch's dense/compact pair and onnxruntime's are interleaved separately.\n\n"
        f"Command: `python bench/bench_onnx.py {' '.join(args.runs)} --out {args.out}`\n\n"
        + _table(rows)
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out.with_suffix(".md"), text)
    write_json(out.with_suffix(".json"), {"machine": machine, "rows": rows})
    print(text)


if __name__ == "__main__":
    main()
