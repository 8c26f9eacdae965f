"""The model cases: a backbone as `dynst run` builds it, dense, gated and compacted."""

from __future__ import annotations

import torch

from .base import Case, active_index

# The model cases' backbones: (name, data, backbone options) as `dynst run` builds them.
MODELS = {
    "stgcn": {},
    "stgcn-1hop": {"attention": False},  # the read-out before attention: what it costs
    "vit": {},
    "vit-encoder-heavy": {"dim": 128, "depth": 6, "heads": 4, "decoder_dim": 32,
                          "decoder_depth": 1},
}  # fmt: skip


def model_setup(model: str, dataset, device: str):
    """The backbone ``model`` of :data:`MODELS` built for ``dataset`` as ``dynst run``
    builds it (the run plan: resolved options, seeded weights) and the plan's windows."""
    from dynst_fast.config import RunConfig
    from dynst_fast.plan import resolve

    name = model.split("-")[0]
    cfg = RunConfig.from_flags(model=name, option=MODELS[model], quiet=True)
    plan = resolve(cfg, dataset=dataset)
    return plan.build_model().to(device).eval(), plan.splits


def model_case(model, splits, label: str, s: float, batch: int, device: str) -> Case:
    """A gated backbone at sparsity ``s`` on the first ``batch`` test windows: ``dense``
    ``model(x)``, ``gated`` ``model(x, gate)`` and the compacted ``c(c.gather_input(x))``
    (reading the active sensors from the full input included). ``info["max_abs_diff"]``:
    compacted against gated forecast (the equivalence rule)."""
    from dynst_fast.train import first_windows

    n = model.num_sensors
    idx = active_index(n, s, device, n)
    gate = torch.zeros(n, device=device)
    gate[idx] = 1.0
    comp = model.compact(idx).eval()
    xb = first_windows(splits.test, batch)[0].to(device)
    with torch.inference_mode():
        diff = float((comp(comp.gather_input(xb)) - model(xb, gate)).abs().max())
    info = {"model": label, "N": n, "s": s, "K": idx.numel(), "batch": int(xb.shape[0])}
    return Case(
        "model",
        f"{label} s={s} batch {int(xb.shape[0])}",
        {
            "compact": lambda: comp(comp.gather_input(xb)),
            "dense": lambda: model(xb),
            "gated": lambda: model(xb, gate),
        },
        {**info, "max_abs_diff": diff},
    )
