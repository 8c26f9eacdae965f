"""Training, evaluation and side-by-side inference timing for gated backbones.

``fit`` runs one scheme end to end with a :class:`~dynst_fast.sparsifier.Sparsifier`.
Once the active set is final (fine-tuning, or ``random`` from the start) it trains
the *compacted* model, which shares the backbone's parameters and costs O(K).
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .data import WindowSplits
from .metrics import evaluate as evaluate_metrics
from .metrics import image_metrics
from .morph import select_sensors
from .schedule import Schedule
from .sparsifier import Sparsifier


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (steps are optimizer steps)."""

    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    scheme: str = "dynst"
    sparsity: float = 0.5
    warmup_frac: float = 0.0
    prune_frac: float = 0.6
    rounds: int = 10
    mask_frac: float = 0.3
    swap_fraction: float = 0.05
    theta_lr: float = 2e-2
    l1: float = 1e-3
    grad_clip: float = 5.0


@dataclass
class FitResult:
    """What ``fit`` leaves behind: the sparsifier, losses and the best validation MAE."""

    sparsifier: Sparsifier
    best_val_mae: float
    best_epoch: int
    losses: list[float] = field(default_factory=list)
    val_maes: list[float] = field(default_factory=list)
    seconds: float = 0.0
    optimizer_state: dict[str, Any] = field(default_factory=dict)
    config: TrainConfig | None = None


def make_schedule(cfg: TrainConfig, num_sensors: int, steps_per_epoch: int) -> Schedule:
    """Turn epoch fractions into a step :class:`Schedule` for ``cfg.scheme``."""
    total = cfg.epochs * steps_per_epoch
    warmup = int(cfg.warmup_frac * total)
    rounds = 1 if cfg.scheme == "one-shot" else cfg.rounds
    per_round = max(2, int(cfg.prune_frac * total) // max(rounds, 1))
    mask = max(1, int(round(cfg.mask_frac * per_round)))
    return Schedule(
        scheme=cfg.scheme,
        num_sensors=num_sensors,
        sparsity=0.0 if cfg.scheme == "dense" else cfg.sparsity,
        warmup_steps=warmup,
        rounds=rounds,
        network_steps=per_round - mask,
        mask_steps=mask,
        swap_fraction=cfg.swap_fraction,
    )


def masked_weighted_l1(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Mean of ``|pred - target| * weight`` over non-NaN targets; ``[B, T, N, C]`` with
    weight ``[1, 1, N, C]``, or ``[B, T, C, H, W]`` with weight ``[1, 1, C, H, W]``."""
    ok = ~torch.isnan(target)
    diff = (pred - torch.nan_to_num(target)).abs() * weight
    return diff[ok].mean()


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[Tensor]:
    perm = torch.randperm(n, generator=gen)
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def predict(
    model: nn.Module, x: Tensor, gate: Tensor | None = None, batch_size: int = 256
) -> Tensor:
    """Run ``model(x, gate)`` (or ``model(x)`` when gate is None) in eval mode, batched."""
    was = model.training
    model.eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size]
            outs.append(model(xb) if gate is None else model(xb, gate))
    model.train(was)
    return torch.cat(outs)


def gather_active(compact: nn.Module, x: Tensor, active_index: Tensor) -> Tensor:
    """What a compacted model reads from the full input ``x``: its ``gather_input(x)``
    (e.g. the active image patches), or the graph sensors ``x[:, :, active_index]``."""
    gather = getattr(compact, "gather_input", None)
    return gather(x) if gather is not None else select_sensors(x, active_index)


def evaluate(
    model: nn.Module,
    splits: WindowSplits,
    split: str = "test",
    active_index: Tensor | None = None,
) -> dict[str, Any]:
    """Whole-field metrics in original units (plus SSIM and PSNR on grids). ``model`` is
    a compacted model if ``active_index`` is given (it then receives only those sensors'
    data, see `gather_active`), else dense."""
    x, y = getattr(splits, split).tensors()
    if active_index is not None:
        x = gather_active(model, x, active_index)
    pred = splits.denormalize(predict(model, x))
    target = splits.denormalize(y)
    out = evaluate_metrics(pred, target)
    if splits.is_grid:
        out.update(image_metrics(pred, target))
    return out


def fit(
    model: nn.Module,
    splits: WindowSplits,
    cfg: TrainConfig,
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> FitResult:
    """Train ``model`` (a gated backbone) under ``cfg.scheme``; keeps the best-validation
    weights among epochs whose active set is final. Deterministic on CPU for a seed."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    x_tr, y_tr = splits.train.tensors()
    x_va, y_va = splits.val.tensors()
    n = getattr(model, "num_sensors", x_tr.shape[2])
    steps_per_epoch = math.ceil(x_tr.shape[0] / cfg.batch_size)
    sched = make_schedule(cfg, n, steps_per_epoch)
    sp = Sparsifier(sched, theta_lr=cfg.theta_lr, l1=cfg.l1, seed=cfg.seed)
    std = torch.as_tensor(splits.std, dtype=torch.float32)
    weight = (std / std.mean())[None, None]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * steps_per_epoch
    lr_at = lambda s: cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / max(total, 1))))  # noqa: E731
    result = FitResult(sparsifier=sp, best_val_mae=float("inf"), best_epoch=-1, config=cfg)
    best_state: dict[str, Tensor] | None = None
    compact, compact_for = None, None
    start = time.perf_counter()
    model.train()
    for epoch in range(cfg.epochs):
        losses = []
        for idx in _batches(x_tr.shape[0], cfg.batch_size, gen):
            for group in opt.param_groups:
                group["lr"] = lr_at(sp.step_count)
            xb, yb = x_tr[idx], y_tr[idx]
            if sp.done_pruning and sched.scheme != "dense":
                key = tuple(sp.active_index().tolist())
                if compact_for != key:
                    compact, compact_for = model.compact(sp.active_index(), sp.theta.detach()), key
                pred = compact(gather_active(compact, xb, sp.active_index()))
            else:
                pred = model(xb, sp.gate())
            loss = masked_weighted_l1(pred, yb, weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if sp.trains_network:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
            sp.step()
            losses.append(float(loss.detach()))
        result.losses.append(statistics.fmean(losses))
        val_mae = float("nan")
        if sp.done_pruning:
            gate = None if sched.scheme == "dense" else sp.gate().detach()
            pred = splits.denormalize(predict(model, x_va, gate))
            val_mae = evaluate_metrics(pred, splits.denormalize(y_va))["mae"]
            if val_mae < result.best_val_mae:
                result.best_val_mae, result.best_epoch = val_mae, epoch
                best_state = copy.deepcopy(model.state_dict())
        result.val_maes.append(val_mae)
        if progress is not None:
            progress(
                {
                    "epoch": epoch + 1,
                    "epochs": cfg.epochs,
                    "phase": sp.phase,
                    "round": sp.round,
                    "sparsity": sp.sparsity,
                    "loss": result.losses[-1],
                    "val_mae": val_mae,
                }
            )
    if best_state is not None:
        model.load_state_dict(best_state)
    result.seconds = time.perf_counter() - start
    result.optimizer_state = opt.state_dict()
    return result


def time_side_by_side(
    fns: dict[str, Callable[[], Any]], repeats: int = 30, warmup: int = 5
) -> dict[str, float]:
    """Median wall time in ms of each function, interleaved in one process."""
    with torch.inference_mode():
        for _ in range(warmup):
            for f in fns.values():
                f()
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(repeats):
            for k, f in fns.items():
                t0 = time.perf_counter()
                f()
                times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}
