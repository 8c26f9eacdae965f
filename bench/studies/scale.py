"""Paper-scale sensor networks: epoch time, peak memory and batch-8 latency against N.

For each planted network size N (``--sizes``), in a fresh process (so that its peak RSS
is its own): the default STGCN trains one epoch on the first ``--windows`` training
windows, dense (``scheme dense``) and compacted at sparsity 0.5 (``scheme random``, which
trains the compacted model from the start); then dense and compacted inference at batch
8 are timed side by side (``dynst_fast.timing``). ``--ddp`` instead compares the training
throughput of 2 gloo processes with 1 thread each (per-process batch b) against 1 process
with 1 thread (batch 2b), on the same windows (the fastest of 3 epochs each).

    python -m bench.studies.scale --sizes 1024 4096 16384 --out bench/results/scale
    python -m bench.studies.scale --ddp --sizes 1024 --out bench/results/scale_ddp

Writes ``OUT.md``, ``OUT.json`` and (sizes) the log-log picture ``OUT.png``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MODULE = "bench.studies.scale"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _setup(n: int, steps: int, windows: int):
    """The default run's plan on a planted network of ``n`` sensors over ``steps`` steps,
    its windows cut to the first ``windows`` of each split, and its model."""
    import dataclasses

    from dynst_fast.config import RunConfig
    from dynst_fast.data import synthetic_sensor_network
    from dynst_fast.plan import resolve

    ds = synthetic_sensor_network(num_sensors=n, num_planted=max(1, n // 5), num_steps=steps)
    plan = resolve(RunConfig(quiet=True), dataset=ds)
    s = plan.splits
    splits = dataclasses.replace(  # a fixed number of windows; validation and test as many
        s, train=s.train.head(windows), val=s.val.head(windows), test=s.test.head(windows)
    )
    return plan, splits, plan.build_model()


def _epoch(plan, model, splits, scheme: str, batch: int) -> tuple[float, object]:
    """Seconds of one training epoch over ``splits.train`` (validation excluded): the
    dense model, or ``scheme`` at sparsity 0.5."""
    from dynst_fast.config import TrainConfig
    from dynst_fast.plan import make_stage
    from dynst_fast.train import fit

    seen = {}
    train = TrainConfig(epochs=1, batch_size=batch)
    stage = make_stage(
        scheme,
        train=train,
        settings=plan.config.schedule,
        sparsity=0.5,
        num_sensors=model.num_sensors,
        num_windows=len(splits.train),
        seed=0,
    )
    result = fit(model, splits, train, stage.sparsifier(), seed=0, progress=seen.update)
    return len(splits.train) / seen["windows_per_s"], result


def one_size(n: int, steps: int, windows: int, batch: int, repeats: int) -> dict:
    """Everything measured for one N (run in its own process)."""
    import torch

    import dynst_fast.run  # noqa: F401  (imported before the base RSS is read)
    import dynst_fast.train  # noqa: F401
    from bench.kernels.cases import model_case
    from dynst_fast.timing import side_by_side

    base = rss_mb()
    plan, splits, model = _setup(n, steps, windows)
    values_mb = plan.dataset.values.nbytes / 2**20
    model_mb = sum(t.nbytes for t in [*model.parameters(), *model.buffers()]) / 2**20
    dense_s, _ = _epoch(plan, model, splits, "dense", batch)
    compact_s, _ = _epoch(plan, copy.deepcopy(model), splits, "random", batch)
    case = model_case(model.eval(), splits, "stgcn", 0.5, 8, "cpu")
    times = side_by_side({m: case.fns[m] for m in ("dense", "compact")}, repeats, warmup=2)
    return {
        "n": n,
        "windows": len(splits.train),
        "batch": batch,
        "steps": steps,
        "threads": torch.get_num_threads(),
        "num_active": int(case.info["K"]),
        "dense_epoch_s": dense_s,
        "compact_epoch_s": compact_s,
        "dense_ms_b8": times["dense"],
        "compact_ms_b8": times["compact"],
        "speedup_b8": times["dense"] / times["compact"],
        "values_mb": values_mb,
        "model_mb": model_mb,
        "base_rss_mb": base,
        "peak_rss_mb": peak_mb(),
        "peak_over_values_model": (peak_mb() - base) / (values_mb + model_mb),
    }


def ddp_worker(n: int, steps: int, windows: int, batch: int) -> None:
    """The fastest of 3 dense epochs (under torchrun: each rank on its share), after a
    warm-up epoch; rank 0 prints it."""
    import torch

    from dynst_fast import distributed

    torch.set_num_threads(1)
    distributed.init_from_env()
    plan, splits, model = _setup(n, steps, windows)
    _epoch(plan, copy.deepcopy(model), splits, "dense", batch)  # warm-up epoch
    t = time.perf_counter()
    seconds = min(_epoch(plan, copy.deepcopy(model), splits, "dense", batch)[0] for _ in range(3))
    wall = (time.perf_counter() - t) / 3
    if distributed.is_main():
        print("RESULT", json.dumps({"world": distributed.world_size(), "epoch_s": seconds,
                                    "wall_s": wall, "windows": len(splits.train)}))  # fmt: skip
    distributed.shutdown()


def _child(args: list[str], nproc: int = 0) -> dict:
    """Run this script with ``args`` (under torchrun with ``nproc`` ranks, one thread
    each); its ``RESULT`` line."""
    env, cmd = dict(os.environ), [sys.executable, "-m", MODULE, *args]
    if nproc:
        env["OMP_NUM_THREADS"] = "1"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(nproc), "-m", MODULE, *args]  # fmt: skip
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{MODULE}: {' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    line = next(x for x in r.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def slope(xs: list[float], ys: list[float]) -> float:
    """The least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def write(out: Path, rows: list[dict], command: str, ddp: list[dict] | None) -> None:
    from dynst_fast.artifacts import write_atomic, write_json

    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"Command: `{command}`", ""]
    summary: dict = {}
    if rows:
        ns = [r["n"] for r in rows]
        if len(ns) > 1:
            summary = {
                "dense_epoch_slope": slope(ns, [r["dense_epoch_s"] for r in rows]),
                "compact_epoch_slope": slope(ns, [r["compact_epoch_s"] for r in rows]),
            }
        lines += [
            "| N | dense epoch (s) | compacted epoch (s) | dense batch 8 (ms) | "
            "compacted batch 8 (ms) | speedup | values (MB) | model (MB) | "
            "peak RSS (MB) | peak - base (MB) | (peak - base) / (values + model) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['n']:,} | {r['dense_epoch_s']:.2f} | {r['compact_epoch_s']:.2f} | "
                f"{r['dense_ms_b8']:.1f} | {r['compact_ms_b8']:.1f} | {r['speedup_b8']:.2f}x | "
                f"{r['values_mb']:.1f} | {r['model_mb']:.2f} | {r['peak_rss_mb']:.0f} | "
                f"{r['peak_rss_mb'] - r['base_rss_mb']:.0f} | {r['peak_over_values_model']:.1f} |"
            )
        r0 = rows[0]
        lines += [
            "",
            f"Epoch: {r0['windows']} training windows, batch {r0['batch']}, "
            f"{r0['threads']} threads; the compacted model at sparsity 0.5. "
            + (
                "Log-log slope of epoch time against N: dense "
                f"{summary['dense_epoch_slope']:.2f}, compacted "
                f"{summary['compact_epoch_slope']:.2f}. "
                if summary
                else ""
            )
            + "Base RSS (the interpreter, torch and "
            f"dynst_fast) is about {r0['base_rss_mb']:.0f} MB; the values are "
            f"{r0['steps']} steps of float32.",
        ]
    if ddp:
        one, two = ddp
        ratio = one["epoch_s"] / two["epoch_s"]
        summary["ddp_throughput_ratio"] = ratio
        lines += [
            "",
            "| processes x threads | epoch (s) | windows/s |",
            "|---|---|---|",
            f"| 1 x 1 | {one['epoch_s']:.2f} | {one['windows'] / one['epoch_s']:.1f} |",
            f"| 2 x 1 (gloo) | {two['epoch_s']:.2f} | {two['windows'] / two['epoch_s']:.1f} |",
            "",
            f"DDP throughput ratio: {ratio:.2f} (same global batch, same windows).",
        ]
    write_atomic(out.with_suffix(".md"), "\n".join(lines) + "\n")
    write_json(out.with_suffix(".json"), {"command": command, "sizes": rows, "ddp": ddp,
                                          "summary": summary})  # fmt: skip
    if len(rows) > 1:
        _picture(out.with_suffix(".png"), rows)


def _picture(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["n"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    a.loglog(ns, [r["dense_epoch_s"] for r in rows], "o-", label="dense")
    a.loglog(ns, [r["compact_epoch_s"] for r in rows], "s-", label="compacted, s = 0.5")
    ref = [rows[0]["dense_epoch_s"] * n / ns[0] for n in ns]
    a.loglog(ns, ref, ":", color="grey", label="linear in N")
    a.set(xlabel="sensors N", ylabel="epoch time (s)", title="training epoch")
    b.loglog(ns, [r["dense_ms_b8"] for r in rows], "o-", label="dense")
    b.loglog(ns, [r["compact_ms_b8"] for r in rows], "s-", label="compacted, s = 0.5")
    b.set(xlabel="sensors N", ylabel="ms per call", title="inference, batch 8")
    for ax in (a, b):
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".partial.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 16384])
    p.add_argument("--steps", type=int, default=3000, help="time steps of the series")
    p.add_argument("--windows", type=int, default=64, help="training windows per epoch")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=10, help="timed rounds at batch 8")
    p.add_argument("--ddp", action="store_true", help="the DDP throughput comparison")
    p.add_argument("--out", default="bench/results/scale")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    p.add_argument("--ddp-worker", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print("RESULT", json.dumps(one_size(a.one, a.steps, a.windows, a.batch, a.repeats)))
        return
    if a.ddp_worker:
        ddp_worker(a.ddp_worker, a.steps, a.windows, a.batch)
        return
    command = f"python -m {MODULE} " + " ".join(sys.argv[1:])
    common = ["--steps", str(a.steps), "--windows", str(a.windows)]
    rows, ddp = [], None
    if a.ddp:
        n = a.sizes[0]
        one = _child(["--ddp-worker", str(n), *common, "--batch", str(2 * a.batch)])
        two = _child(["--ddp-worker", str(n), *common, "--batch", str(a.batch)], nproc=2)
        ddp = [one, two]
    else:
        for n in a.sizes:
            t = time.perf_counter()
            row = _child(["--one", str(n), *common, "--batch", str(a.batch),
                          "--repeats", str(a.repeats)])  # fmt: skip
            rows.append(row)
            print(f"N = {n:,}: {json.dumps(row)} ({time.perf_counter() - t:.0f} s)", flush=True)
    write(Path(a.out), rows, command, ddp)
    print(Path(a.out).with_suffix(".md").read_text())
    if rows and not all(math.isfinite(r["speedup_b8"]) for r in rows):
        raise SystemExit(f"{MODULE}: a timing is not finite")


if __name__ == "__main__":
    main()
