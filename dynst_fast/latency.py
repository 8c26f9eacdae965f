"""``dynst bench RUN_DIR``: latency and throughput of a run's dense and compacted models,
in PyTorch and in onnxruntime, at several batch sizes, measured side by side.

The models are the deployable ones (``deploy.py``: original units in and out), the same
through the inference fast path (``fast_path.FastPath``: compiled once per batch size,
dense and compacted alike), and their verified ONNX exports. Each engine's pair (eager
torch, fast path, onnxruntime) is interleaved on its own: one engine's thread pool keeps
spinning after a call and would slow another's call that follows at once. The figures
are medians (``timing.side_by_side``).
"""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch

from .artifacts import load_run
from .deploy import deployable, example_inputs
from .export import export_bundle
from .fast_path import FastPath
from .files import write_atomic, write_json
from .serve import make_session
from .timing import side_by_side

BATCHES = (1, 8, 64)


def measure(
    run_dir: str | os.PathLike,
    batches: tuple[int, ...] = BATCHES,
    repeats: int = 30,
    warmup: int = 5,
    threads: int | None = None,
    optimization: str = "all",
    fast: str | None = "aoti",
) -> list[dict[str, Any]]:
    """One row per batch size: ms per call of torch (eager, and through the fast path
    with backend ``fast`` unless None) and onnxruntime, dense / compacted, the
    speedups, microseconds per forecast and forecasts per second. onnxruntime gets
    ``threads`` intra-op threads (default: torch's thread count)."""
    for b in batches:
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ValueError(f"--batches must be positive integers, got {b!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"--repeats must be a positive integer, got {repeats!r}")
    bundle = load_run(run_dir)  # once: both exports and every timing use it
    threads = threads or torch.get_num_threads()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = {kind: Path(tmp) / f"{kind}.onnx" for kind in ("dense", "compact")}
        export_bundle(bundle, paths["compact"])
        export_bundle(bundle, paths["dense"], dense=True)
        sessions = {k: make_session(p, threads, optimization) for k, p in paths.items()}
        models = {kind: deployable(bundle, dense=kind == "dense") for kind in paths}
        for b in batches:
            xs = {k: _batch(bundle, m.index, b) for k, m in models.items()}
            fns: dict[str, dict] = {"torch": {}, "fast": {}, "ort": {}}
            for kind in ("dense", "compact"):
                module, x = models[kind].module, xs[kind]
                feed = {"x": x.numpy()}
                fns["torch"][f"torch_{kind}"] = lambda m=module, x=x: m(x)
                if fast is not None:
                    f = FastPath(module, (x,), backend=fast)
                    fns["fast"][f"fast_{kind}"] = lambda f=f, x=x: f(x)
                fns["ort"][f"ort_{kind}"] = lambda s=sessions[kind], f=feed: s.run(None, f)
            t = {  # each engine on its own: thread pools of another would still be spinning
                **side_by_side(fns["torch"], repeats, warmup),
                **(side_by_side(fns["fast"], repeats, warmup) if fns["fast"] else {}),
                **side_by_side(fns["ort"], repeats, warmup, threads=threads),
            }
            torch_speedup = t["torch_dense"] / t["torch_compact"]
            ort_speedup = t["ort_dense"] / t["ort_compact"]
            extra = {}
            if fast is not None:
                extra = {"fast_backend": fast, "fast_speedup": t["fast_dense"] / t["fast_compact"]}
            rows.append(
                {
                    "run": Path(run_dir).name,
                    "model": bundle.checkpoint["model"]["name"],
                    "sparsity": round(1 - bundle.active_index.numel() / bundle.theta.numel(), 3),
                    "num_active": int(bundle.active_index.numel()),
                    "num_sensors": int(bundle.theta.numel()),
                    "batch": b,
                    **{f"{k}_ms": v for k, v in t.items()},
                    **{f"{k}_us_per_forecast": 1e3 * v / b for k, v in t.items()},
                    **{f"{k}_per_s": 1e3 * b / v for k, v in t.items()},
                    "torch_speedup": torch_speedup,
                    "ort_speedup": ort_speedup,
                    "ort_over_torch_speedup": ort_speedup / torch_speedup,
                    **extra,
                }
            )
    return rows


def _batch(bundle, index: torch.Tensor, b: int) -> torch.Tensor:
    """``b`` real test windows as the deployable model takes them (repeated when the
    test split has fewer complete ones)."""
    x = example_inputs(bundle, index, max_windows=b)
    reps = -(-b // x.shape[0])
    return x.repeat(reps, *([1] * (x.dim() - 1)))[:b].contiguous()


def machine_line(threads: int | None = None) -> str:
    import onnxruntime as ort

    threads = threads or torch.get_num_threads()
    return (
        f"{platform.processor() or platform.machine()}, {threads} threads; onnxruntime "
        f"{ort.__version__}, torch {torch.__version__}"
    )


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of :func:`measure`'s rows."""
    fast = "fast_speedup" in rows[0]
    head = (
        "| batch | torch dense / compact µs per forecast | torch speedup | "
        + ("fast path dense / compact µs | fast path speedup | " if fast else "")
        + "ort dense / compact µs per forecast | ort speedup | ort / torch speedup | "
        "compact forecasts/s (torch, ort) |\n" + "|---" * (9 if fast else 7) + "|\n"
    )
    body = "".join(
        f"| {r['batch']} | {r['torch_dense_us_per_forecast']:.1f} / "
        f"{r['torch_compact_us_per_forecast']:.1f} | {r['torch_speedup']:.2f}x | "
        + (
            f"{r['fast_dense_us_per_forecast']:.1f} / {r['fast_compact_us_per_forecast']:.1f} "
            f"| {r['fast_speedup']:.2f}x | "
            if fast
            else ""
        )
        + f"{r['ort_dense_us_per_forecast']:.1f} / {r['ort_compact_us_per_forecast']:.1f} | "
        f"{r['ort_speedup']:.2f}x | {r['ort_over_torch_speedup']:.0%} | "
        f"{r['torch_compact_per_s']:.0f}, {r['ort_compact_per_s']:.0f} |\n"
        for r in rows
    )
    return head + body


def write(out: str | os.PathLike, rows: list[dict[str, Any]], note: str) -> list[Path]:
    """``<out>.md``, ``<out>.json`` and ``<out>.png`` (µs per forecast against batch)."""
    out = Path(out)
    r0 = rows[0]
    text = (
        f"# Latency of {r0['run']}: {r0['model']}, {r0['num_active']} of {r0['num_sensors']} "
        f"sensors (sparsity {r0['sparsity']:.2f})\n\n{note}\n\n{table(rows)}"
    )
    md, js, png = (out.with_name(out.name + s) for s in (".md", ".json", ".png"))
    write_atomic(md, text)
    write_json(js, {"note": note, "rows": rows})
    _picture(png, rows)
    return [md, js, png]


def _picture(path: Path, rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=120)
    b = [r["batch"] for r in rows]
    for key, label, style in (
        ("torch_dense", "PyTorch dense", ("tab:blue", "--")),
        ("torch_compact", "PyTorch compacted", ("tab:blue", "-")),
        ("fast_dense", "PyTorch fast path dense", ("tab:green", "--")),
        ("fast_compact", "PyTorch fast path compacted", ("tab:green", "-")),
        ("ort_dense", "onnxruntime dense", ("tab:orange", "--")),
        ("ort_compact", "onnxruntime compacted", ("tab:orange", "-")),
    ):
        if f"{key}_us_per_forecast" not in rows[0]:
            continue
        us = [r[f"{key}_us_per_forecast"] for r in rows]
        ax.plot(b, us, marker="o", color=style[0], ls=style[1], label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch (windows per call)")
    ax.set_ylabel("µs per forecast (median)")
    ax.set_title(f"{rows[0]['run']}: sparsity {rows[0]['sparsity']:.2f}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
