"""Training of gated backbones.

``fit`` runs one scheme end to end with a :class:`~dynst_fast.sparsifier.Sparsifier` over a
seeded ``DataLoader`` of the training windows, with AdamW and a cosine
``LambdaLR`` schedule. Once the active set is final (fine-tuning, or ``random`` from the
start) it trains the *compacted* model, which shares the backbone's parameters and costs
O(K). After every epoch it can hand its whole state to a callback, and it resumes from
that state bit-identically on CPU.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DataLoader, Sampler

from . import distributed
from .config import TrainConfig
from .data import WindowDataset, WindowSplits
from .evaluation import validation_mae
from .models import GatedBackbone
from .models.base import CompactBackbone, takes_alive
from .sparsifier import Sparsifier


class TrainingDiverged(ValueError):
    """The loss or the gate gradient became NaN or infinite (the message says where)."""


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


# ---------------------------------------------------------------- data
class EpochShuffle(Sampler[int]):
    """Window order of one epoch: a fresh permutation of ``n`` from ``generator``, one
    ``randperm`` per epoch (so the order depends on the seed and the epoch only)."""

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n, self.generator = n, generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        yield from torch.randperm(self.n, generator=self.generator).tolist()


def train_loader(
    data: WindowDataset, batch_size: int, generator: torch.Generator, rank: int = 0, world: int = 1
) -> DataLoader:
    """Shuffled batches ``(x [b, t_in, ...], y [b, t_out, ...])`` in ``generator``'s order,
    each fetched at once (``WindowDataset`` takes a list of indices). With ``world`` ranks
    the global batches hold ``world * batch_size`` windows and this loader yields rank
    ``rank``'s share of each (``distributed.rank_share``)."""
    batches = BatchSampler(EpochShuffle(len(data), generator), batch_size * world, drop_last=False)
    if world > 1:
        batches = distributed.RankBatches(batches, rank, world)
    return DataLoader(
        data,
        sampler=batches,
        batch_size=None,
        generator=torch.Generator().manual_seed(0),  # seeds workers only; order is above
    )


def first_windows(data: WindowDataset, count: int) -> tuple[Tensor, Tensor]:
    """The first ``min(count, len(data))`` windows as one batch."""
    return data[list(range(min(count, len(data))))]


# ---------------------------------------------------------------- steps
def masked_weighted_l1(
    pred: Tensor, target: Tensor, weight: Tensor, count: float | None = None
) -> Tensor:
    """Mean of ``|pred - target| * weight`` over non-NaN targets; ``[B, T, N, C]`` with
    weight ``[1, 1, N, C]``, or ``[B, T, C, H, W]`` with weight ``[1, 1, C, H, W]``.
    ``count``: divide the sum by this many targets instead (those of every rank)."""
    ok = ~torch.isnan(target)
    if not bool(ok.any()) or count == 0:  # no observed target: nothing to learn, loss 0
        return (pred * 0).sum()
    diff = (pred - torch.nan_to_num(target)).abs() * weight
    return diff[ok].mean() if count is None else diff[ok].sum() / count


def rank_loss(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """This rank's term of the batch loss: `masked_weighted_l1` over every rank's targets
    times the world size, so that DDP's average of the ranks' gradients is the gradient
    of the mean over every observed target of the global batch (the loss one process
    with the whole batch computes, whatever the shares and their missing values)."""
    world = distributed.world_size()
    if world == 1:
        return masked_weighted_l1(pred, target, weight)
    seen = torch.tensor([float((~torch.isnan(target)).sum())], dtype=torch.float64)
    count = float(distributed.all_reduce_sum(seen)) / world
    return masked_weighted_l1(pred, target, weight, count)


def finite_everywhere(value: float) -> bool:
    """Whether ``value`` is finite on every rank (each rank then stops, or none)."""
    bad = torch.tensor([0.0 if math.isfinite(value) else 1.0], dtype=torch.float64)
    return float(distributed.all_reduce_sum(bad)) == 0


def random_failures(k: int, rate: float, generator: torch.Generator) -> Tensor | None:
    """``alive [K]`` with each of K sensors failed (0) with probability ``rate``, at least
    one left reporting; None when ``rate`` is 0 (nothing drawn)."""
    if rate <= 0:
        return None
    alive = (torch.rand(k, generator=generator) >= rate).to(torch.float32)
    if not bool(alive.any()):
        alive[int(torch.randint(k, (1,), generator=generator))] = 1.0
    return alive


def stuck_failures(
    x: Tensor, alive: Tensor, compact: CompactBackbone, share: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Of the active sensors ``alive`` fails, each with probability ``share`` is stuck
    instead: its data in the full inputs ``x`` held at the window's first reading, and it
    stays switched on. Returns the inputs and ``alive``."""
    stuck = (alive == 0) & (torch.rand(alive.numel(), generator=generator) < share)
    if not bool(stuck.any()):
        return x, alive
    p = compact.parent
    x = p.space.hold_first(x, compact.index[stuck.to(compact.index.device)], p.channels)
    return x, torch.where(stuck, torch.ones_like(alive), alive)


def switch_on_estimate(sp: Sparsifier, std: np.ndarray, signed: bool = False) -> np.ndarray | None:
    """The estimated whole-field MAE decrease, in original units, of switching each
    sensor back on, ``[N]`` float64 (None without a mask phase).

    First order: a sensor switched on enters at gate ``theta_bar`` (the mean ``|theta|``
    of the active ones, as a regrown sensor does), so the loss falls by about
    ``theta_bar * |dL/dg|`` (its mean over the latest mask phase). The loss is the
    weighted L1 of :func:`masked_weighted_l1` with weights ``std / mean(std)``, i.e. the
    MAE in original units divided by ``mean(std)``: hence the factor ``mean(std)``.
    ``signed``: from the mean of ``-dL/dg`` instead (``Sparsifier.switch_on_gain``).
    """
    gain = sp.switch_on_gain(signed)
    if gain is None:
        return None
    theta_bar = float(sp.theta.detach()[sp.active].abs().mean())
    return (gain * theta_bar * float(np.mean(std))).cpu().numpy()


def cosine_lr(total_steps: int) -> Callable[[int], float]:
    """The learning-rate factor at step s: cosine from 1 down to 0.1 over the training."""
    return lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / max(total_steps, 1)))


def _diverged(
    what: str, epoch: int, batch: int, phase: str, train: TrainConfig, theta_lr: float
) -> TrainingDiverged:
    return TrainingDiverged(
        f"training diverged at epoch {epoch + 1}, batch {batch + 1} ({phase} phase): {what}; "
        f"try a lower --lr (now {train.lr:g}) or --grad-clip (now {train.grad_clip:g})"
        + (f", or a lower --theta-lr (now {theta_lr:g})" if phase == "mask" else "")
    )


# ---------------------------------------------------------------- training
def _data_parallel(module: nn.Module) -> nn.Module:
    """``module`` wrapped in ``DistributedDataParallel`` under several ranks (its
    gradients averaged over them in backward), else itself."""
    if not distributed.active():
        return module
    return DistributedDataParallel(module)


def _mean_over_ranks(values: list[float]) -> float:
    """The mean of every rank's ``values`` (each rank has as many)."""
    mean = torch.tensor([statistics.fmean(values)], dtype=torch.float64)
    return float(distributed.all_reduce_mean(mean))


def fit(
    model: GatedBackbone,
    splits: WindowSplits,
    train: TrainConfig,
    sparsifier: Sparsifier,
    *,
    seed: int,
    progress: Callable[[dict[str, Any]], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    resume: dict[str, Any] | None = None,
    teacher: nn.Module | None = None,
) -> FitResult:
    """Train ``model`` (a gated backbone) with ``sparsifier`` (its scheme, schedule,
    constraints and starting set: a run plan's ``Stage.sparsifier()``); keeps the
    best-validation weights among epochs whose active set is final. Deterministic on
    CPU for a seed.

    ``train.sensor_dropout``: while the dense model trains, each step switches a random
    share of the sensors off through the gate, so that it learns to read out sensors it
    cannot see. ``teacher`` (with ``train.distill`` > 0): a sparse model also learns the
    teacher's forecasts of the same windows (L1, weight ``train.distill``).

    ``on_epoch(state)`` receives, after every epoch, the state that ``resume=state``
    continues from (weights, optimizer, sparsifier, RNGs, history).
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    failures = torch.Generator().manual_seed(seed + 1)  # which sensors fail (failure_rate)
    dropped = torch.Generator().manual_seed(seed + 2)  # which sensors drop (sensor_dropout)
    dropout = train.sensor_dropout if sparsifier.schedule.scheme.dense else 0.0
    distill = train.distill if teacher is not None else 0.0
    if teacher is not None:
        teacher.eval()
    rank, world = distributed.rank(), distributed.world_size()
    loader = train_loader(splits.train, train.batch_size, gen, rank, world)
    steps_per_epoch = len(loader)
    sp, schedule = sparsifier, sparsifier.schedule
    if sp.num_sensors != model.num_sensors:
        raise ValueError(
            f"fit: the sparsifier is for {sp.num_sensors} sensors, the model has "
            f"{model.num_sensors}"
        )
    if schedule.uses_rounds and schedule.rounds_end > train.epochs * steps_per_epoch:
        raise ValueError(
            f"fit: the {schedule.scheme.name} schedule needs {schedule.rounds_end} steps but "
            f"training has {train.epochs * steps_per_epoch} (preflight.check_schedule builds "
            "schedules that fit)"
        )
    std = torch.as_tensor(splits.std, dtype=torch.float32)
    weight = (std / std.mean())[None, None]
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    lr = torch.optim.lr_scheduler.LambdaLR(opt, cosine_lr(train.epochs * steps_per_epoch))
    result = FitResult(sparsifier=sp, best_val_mae=float("inf"), best_epoch=-1)
    best_state: dict[str, Tensor] | None = None
    start_epoch = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        lr.load_state_dict(resume["lr_scheduler"])
        sp.load_state_dict(resume["sparsifier"])
        gen.set_state(resume["batch_rng"])
        if "failure_rng" in resume:
            failures.set_state(resume["failure_rng"])
        if "dropout_rng" in resume:
            dropped.set_state(resume["dropout_rng"])
        torch.set_rng_state(resume["torch_rng"])
        best_state = resume["best_state"]
        result.best_val_mae, result.best_epoch = resume["best_val_mae"], resume["best_epoch"]
        result.losses, result.val_maes = list(resume["losses"]), list(resume["val_maes"])
        result.seconds = resume["seconds"]
        start_epoch = resume["epoch"]
    compact, compact_for = None, None
    net, compact_net = _data_parallel(model), None
    start = time.perf_counter() - result.seconds
    model.train()
    for epoch in range(start_epoch, train.epochs):
        losses = []
        epoch_start = time.perf_counter()
        for batch, (xb, yb) in enumerate(loader):
            if sp.done_pruning and not schedule.scheme.dense:
                key = tuple(sp.active_index().tolist())
                if compact_for != key:
                    compact, compact_for = model.compact(sp.active_index(), sp.theta.detach()), key
                    if train.failure_rate > 0 and not takes_alive(compact):
                        raise ValueError(
                            f"--failure-rate: {type(compact).__name__}.forward takes no alive"
                        )
                    compact_net = _data_parallel(compact)
                alive = random_failures(compact.num_active, train.failure_rate, failures)
                if alive is not None and train.stuck_share > 0:
                    xb, alive = stuck_failures(xb, alive, compact, train.stuck_share, failures)
                xa = compact.gather_input(xb)
                pred = compact_net(xa) if alive is None else compact_net(xa, alive)
            else:
                gate = sp.gate()
                if dropout > 0:
                    gate = gate * random_failures(gate.numel(), dropout, dropped).to(gate)
                pred = net(xb, gate)
            loss = rank_loss(pred, yb, weight)
            if distill > 0:
                with torch.no_grad():
                    target = teacher(xb)
                loss = loss + distill * rank_loss(pred, target, weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            value = float(loss.detach())
            phase = sp.phase
            if not finite_everywhere(value):
                what = (
                    f"the loss is {value}"
                    if not math.isfinite(value)
                    else f"rank {distributed.rank()}'s loss is finite, another rank's is not"
                )
                raise _diverged(what, epoch, batch, phase, train, sp.theta_lr)
            if sp.trains_network:
                nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
                opt.step()
            try:
                sp.step()
            except FloatingPointError:
                raise _diverged(
                    "the gate gradient is not finite", epoch, batch, phase, train, sp.theta_lr
                ) from None
            lr.step()
            losses.append(value)
        train_seconds = time.perf_counter() - epoch_start
        result.losses.append(_mean_over_ranks(losses))
        val_mae = float("nan")
        if sp.done_pruning:
            gate = None if schedule.scheme.dense else sp.gate().detach()
            val_mae = validation_mae(model, splits, gate)
            if val_mae < result.best_val_mae:
                result.best_val_mae, result.best_epoch = val_mae, epoch
                best_state = copy.deepcopy(model.state_dict())
        result.val_maes.append(val_mae)
        result.seconds = time.perf_counter() - start
        if progress is not None:
            progress(
                {
                    "epoch": epoch + 1,
                    "epochs": train.epochs,
                    "phase": sp.phase,
                    "round": sp.round,
                    "sparsity": sp.sparsity,
                    "loss": result.losses[-1],
                    "val_mae": val_mae,
                    "steps_per_s": len(losses) / max(train_seconds, 1e-9),
                    "windows_per_s": len(splits.train) / max(train_seconds, 1e-9),
                }
            )
        if on_epoch is not None:
            on_epoch(
                {
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "lr_scheduler": lr.state_dict(),
                    "sparsifier": sp.state_dict(),
                    "batch_rng": gen.get_state(),
                    "failure_rng": failures.get_state(),
                    "dropout_rng": dropped.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "best_state": best_state,
                    "best_val_mae": result.best_val_mae,
                    "best_epoch": result.best_epoch,
                    "losses": list(result.losses),
                    "val_maes": list(result.val_maes),
                    "seconds": result.seconds,
                }
            )
    if best_state is not None:
        model.load_state_dict(best_state)
    result.seconds = time.perf_counter() - start
    result.optimizer_state = opt.state_dict()
    return result
