"""Model benchmarks: compacted against dense inference, and a short training-step
comparison, for the STGCN (Los-loop and a planted network of 16,384 sensors) and the ViT
(ERA5). Models are built as ``dynst run`` builds them (the run plan, ``cases.model_setup``);
weights are random and the active set is a seeded random one, since speed depends on
neither. Inputs are the first test windows. Before timing, the compacted model's forecast
is compared with the gated model's (the equivalence rule), and the difference recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from bench.kernels.cases import active_index, model_case, model_setup
from bench.timer import measure
from dynst_fast.data import load_dataset, shared_data_dir, synthetic_sensor_network
from dynst_fast.train import first_windows

from .results import Suite

SPARSITIES = (0.3, 0.5)
PLANTED = {False: (16384, 600), True: (256, 300)}  # sensors, steps
BATCHES = {False: (1, 64), True: (1, 4)}
TRAIN_BATCH = {False: 64, True: 4}


def _shared(name: str) -> Path:
    d = shared_data_dir() / name
    if not d.exists():
        raise FileNotFoundError(f"{d} does not exist")
    return d


def model_data(quick: bool) -> list[tuple[str, str, Callable]]:
    n, steps = PLANTED[quick]
    return [
        ("stgcn", "Los-loop", lambda: load_dataset(str(_shared("los_loop")), kind="graph")),
        (
            "stgcn",
            f"planted {n}",
            lambda: synthetic_sensor_network(num_sensors=n, num_planted=n // 5, num_steps=steps),
        ),
        ("vit", "ERA5", lambda: load_dataset(str(_shared("era5_uk_t2m")), kind="grid")),
    ]


def _active(n: int, s: float, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    idx = active_index(n, s, device, n)
    gate = torch.zeros(n, device=device)
    gate[idx] = 1.0
    return idx, gate


def bench_inference(suite: Suite, model, splits, name: str, data: str) -> None:
    for s in SPARSITIES:
        for b in BATCHES[suite.quick]:
            what = f"{name} {data} s={s} batch {b}"
            if not suite.out_of_time("models", what, 5):
                with suite.guard("models", what):
                    case = model_case(model, splits, name, s, b, suite.device)
                    t = measure(case.fns, suite.device, quick=suite.quick)
                    row = {**case.info, "data": data}
                    row.update({f"{m}_ms": t[m] for m in ("dense", "gated", "compact")})
                    row["vs_dense"] = t["dense"] / t["compact"]
                    row["max_abs_diff"] = row.pop("max_abs_diff")
                    suite.add("models", "inference", row)


def bench_train_step(suite: Suite, model, splits, name: str, data: str) -> None:
    """One optimizer step of each phase: dense, gated (the mask phases: the gate gets a
    gradient), and the fine-tune on the compacted model (what ``train.fit`` runs once the
    active set is final)."""
    dev, n, s = suite.device, model.num_sensors, 0.5
    what = f"{name} {data} train step"
    if suite.out_of_time("models", what, 10):
        return
    with suite.guard("models", what):
        xb, yb = (t.to(dev) for t in first_windows(splits.train, TRAIN_BATCH[suite.quick]))
        idx, gate = _active(n, s, dev)
        theta = gate.clone().requires_grad_()
        model.train()
        comp = model.compact(idx, theta.detach())
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(forward: Callable[[], torch.Tensor]) -> None:
            loss = (forward() - yb).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        t = measure(
            {
                "dense": lambda: step(lambda: model(xb)),
                "gated": lambda: step(lambda: model(xb, theta)),
                "finetune": lambda: step(lambda: comp(comp.gather_input(xb))),
            },
            dev,
            grad=True,
            quick=suite.quick,
        )
        model.eval()
        suite.add(
            "models",
            "train_step",
            {
                "model": name,
                "data": data,
                "N": n,
                "s": s,
                "batch": int(xb.shape[0]),
                "dense_ms": t["dense"],
                "gated_ms": t["gated"],
                "finetune_ms": t["finetune"],
                "finetune_vs_dense": t["dense"] / t["finetune"],
            },
        )


def run_models(suite: Suite) -> None:
    suite.section(
        "models",
        "Dense `model(x)`, gated `model(x, gate)` (the training-time form) and compacted "
        "`c(c.gather_input(x))` (reading the K active sensors from the full input included), "
        "side by side; vs_dense = dense / compact time. max_abs_diff: compacted against "
        "gated forecast (normalised units). Train step: forward, L1 loss, backward, AdamW.",
    )
    for name, data, load in model_data(suite.quick):
        if suite.out_of_time("models", f"{name} {data}", 10):
            continue
        model = None
        with suite.guard("models", f"{name} {data} setup"):
            model, splits = model_setup(name, load(), suite.device)
        if model is None:
            continue
        bench_inference(suite, model, splits, name, data)
        bench_train_step(suite, model, splits, name, data)
        del model
        if suite.device == "cuda":
            torch.cuda.empty_cache()
