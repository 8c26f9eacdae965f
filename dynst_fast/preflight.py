"""What a run checks before it trains: that every schedule reaches its target with the
given epochs and batch size, and that the data can be trained on and scored.

Each check raises one ``ValueError`` that names the flag or the file it is about and,
where there is one, the fix. The run plan (``plan.resolve``) calls them after loading the
data and before the first training step; :func:`check_schedule` also builds the schedule
it checks, the only place a run's schedules are built.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .config import ScheduleConfig, TrainConfig
from .data import Dataset, WindowSplits
from .data.windows import CHUNK_STEPS
from .schedule import Schedule, active_count
from .schemes import Scheme
from .schemes import scheme as lookup_scheme

# Beyond this, squared errors overflow float32 (the models and metrics compute in it).
MAX_ABS_VALUE = 1e18
MAX_EPOCHS_SEARCHED = 100_000


def _build(
    sched: ScheduleConfig, scheme: Scheme, sparsity: float, n: int, total_steps: int
) -> Schedule:
    return Schedule.from_config(sched, n, total_steps, scheme=scheme, sparsity=sparsity)


def _steps(num_windows: int, batch: int, world: int) -> int:
    return math.ceil(num_windows / (batch * world))


def _fits(s: Schedule, total_steps: int) -> bool:
    return not s.uses_rounds or s.rounds_end <= total_steps


def check_schedule(
    train: TrainConfig,
    sched: ScheduleConfig,
    scheme: Scheme | str,
    sparsity: float,
    num_sensors: int,
    num_windows: int,
    world: int = 1,
) -> Schedule:
    """The step schedule of ``scheme`` over ``train.epochs`` epochs of ``num_windows``
    training windows in global batches of ``train.batch_size`` x ``world``; ``ValueError``
    if it leaves no sensor or if training ends before its last round (the sparsity would
    stop short of the target), naming the fixes (``--batch-size`` per process)."""
    scheme = lookup_scheme(scheme)
    n, b = num_sensors, train.batch_size
    steps = _steps(num_windows, b, world)
    total = train.epochs * steps
    k = active_count(num_sensors, sparsity)
    if not scheme.dense and k < 1:
        most = (num_sensors - 1) / num_sensors
        raise ValueError(
            f"--sparsity {sparsity:g} leaves no sensor active out of {n} (K = 0): use "
            f"--sparsity {math.floor(most * 1000) / 1000:g} or less"
        )
    s = _build(sched, scheme, sparsity, n, total)
    if _fits(s, total):
        return s
    done = 0 if total < s.warmup_steps else (total - s.warmup_steps) // s.round_steps
    reached = 1.0 - s.active_after_round(min(done, s.num_rounds)) / n
    fixes = []
    epochs = next(
        (
            e
            for e in range(train.epochs + 1, MAX_EPOCHS_SEARCHED)
            if _fits(_build(sched, scheme, sparsity, n, e * steps), e * steps)
        ),
        None,
    )
    if epochs is not None:
        fixes.append(f"--epochs {epochs}")

    def fits_batch(bb: int) -> bool:
        total_bb = train.epochs * _steps(num_windows, bb, world)
        return _fits(_build(sched, scheme, sparsity, n, total_bb), total_bb)

    batch = _largest(fits_batch, min(b - 1, num_windows))
    if batch is not None:
        fixes.append(f"--batch-size {batch}")
    if s.num_rounds > 1:
        rounds = next(
            (
                r
                for r in range(s.num_rounds - 1, 0, -1)
                if _fits(_build(_with_rounds(sched, r), scheme, sparsity, n, total), total)
            ),
            None,
        )
        if rounds is not None:
            fixes.append(f"--rounds {rounds}")
    if sched.warmup_frac + sched.prune_frac > 1:
        fixes.append("--warmup-frac + --prune-frac at most 1")
    what = (
        f"it would stop at sparsity {reached:.2f} of the target {sparsity:g}"
        if s.prunes
        else f"only {done} of its {s.num_rounds} swap rounds would run"
    )
    raise ValueError(
        f"the {scheme.name} schedule needs {s.rounds_end} optimizer steps for its "
        f"{s.num_rounds} round(s) but training has {total} ({train.epochs} epoch(s) x "
        f"{steps} batch(es) of {b * world} windows), so {what}: use "
        + (" or ".join(fixes) if fixes else "more training windows")
    )


def _largest(ok, hi: int) -> int | None:
    """The largest ``v`` in ``[1, hi]`` with ``ok(v)``, for an ``ok`` that holds up to
    some value and not above it (a smaller batch only adds steps); None if none does."""
    if hi < 1 or not ok(1):
        return None
    lo = 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _with_rounds(sched: ScheduleConfig, rounds: int) -> ScheduleConfig:
    return dataclasses.replace(sched, rounds=rounds)


def check_data(ds: Dataset, splits: WindowSplits, need_range: bool = False) -> None:
    """The data can be trained on and scored: no infinite value, values float32 can
    square, a field that is not constant, an observed target for every horizon step of
    every split, and (``need_range``: metrics such as PSNR that scale by the target's
    range) a test split that is not constant."""
    name = ds.name
    vals = np.asarray(ds.values)  # may be a memory map: read in time chunks
    lo, hi, big = math.inf, -math.inf, 0.0
    for t0 in range(0, vals.shape[0], CHUNK_STEPS):
        chunk = vals[t0 : t0 + CHUNK_STEPS]
        inf = np.isinf(chunk)
        if inf.any():
            at = tuple(int(i) for i in np.argwhere(inf)[0])
            raise ValueError(
                f"{name}: the values hold an infinite value (step {t0 + at[0]}, "
                f"{ds.cell_name(at[1:])}): mark a missing value as NaN"
            )
        finite = chunk[np.isfinite(chunk)]
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
            big = max(big, float(np.abs(finite).max()))
    if lo > hi:
        raise ValueError(f"{name}: the values hold no observed (finite) number")
    if big > MAX_ABS_VALUE:
        raise ValueError(
            f"{name}: values reach {big:.3g}, beyond what float32 can square "
            f"({MAX_ABS_VALUE:g}): rescale the data (its units are free)"
        )
    if lo == hi:
        raise ValueError(f"{name}: every value is {lo:g}: a constant field has nothing to forecast")
    for split in ("train", "val", "test"):
        part = getattr(splits, split)
        targets = part.target_steps()
        label = {"val": "validation"}.get(split, split)
        steps = f"steps {part.start + part.t_in}..{part.start + targets.shape[0] + part.t_in - 1}"
        seen = np.zeros(targets.shape[0], dtype=bool)  # [L - t_in] steps with an observation
        y_lo, y_hi = math.inf, -math.inf
        for t0 in range(0, targets.shape[0], CHUNK_STEPS):
            y = splits.denormalize(targets[t0 : t0 + CHUNK_STEPS]).numpy()  # original units
            ok = np.isfinite(y)
            seen[t0 : t0 + len(y)] = ok.reshape(len(y), -1).any(axis=1)
            if need_range and split == "test" and ok.any():
                y_lo, y_hi = min(y_lo, float(y[ok].min())), max(y_hi, float(y[ok].max()))
        if not seen.any():
            raise ValueError(
                f"{name}: the {label} split ({steps}) has no observed target value, so it "
                "cannot be scored: give data with observations there"
            )
        for h in range(part.t_out):
            if not seen[h : h + len(part)].any():
                raise ValueError(
                    f"{name}: no window of the {label} split ({steps}) has an observed "
                    f"target at horizon step {h + 1}, so it cannot be scored there"
                )
        if need_range and split == "test" and y_lo == y_hi:
            raise ValueError(
                f"{name}: the test split ({steps}) is constant, so its error metrics are undefined"
            )
