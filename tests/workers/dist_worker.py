"""Worker of tests/test_distributed.py, started on several ranks by torchrun
(``python -m dist_worker MODE OUT [ARGS]``, with tests/workers on PYTHONPATH).

Modes:
- ``loop OUT``: a training loop of one's own (DDP + ``Sparsifier``), each rank on its own
  windows; after every step that ends a round, the rank saves theta, the active set and
  the swap history to ``OUT/rank{R}.pt``.
- ``fit OUT BATCH``: ``train.fit`` for one epoch with per-rank batch BATCH; rank 0 saves
  the weights and theta to ``OUT/fit.pt``.
- ``both OUT BATCH``: ``loop`` then ``fit``, in one job.
- ``interrupt ARGV...``: ``dynst run ARGV`` whose rank 0 raises right after saving the
  dynst stage's first epoch, while rank 1 waits for it in a collective.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from dynst_fast import distributed
from dynst_fast.config import ScheduleConfig, TrainConfig, prune_signal
from dynst_fast.data import make_windows, synthetic_sensor_network
from dynst_fast.models import build_backbone
from dynst_fast.plan import make_stage
from dynst_fast.schedule import Schedule
from dynst_fast.sparsifier import Sparsifier
from dynst_fast.train import fit, masked_weighted_l1

# 115 training windows: the last global batch of 8 holds 3, shared 2 + 1 by the ranks
SENSORS, STEPS, T_IN, T_OUT = 40, 153, 6, 2


def data_and_model():
    """A planted network with 5% of its values missing, and a small STGCN."""
    ds = synthetic_sensor_network(num_sensors=SENSORS, num_planted=8, num_steps=STEPS, seed=1)
    ds.values[np.random.default_rng(3).random(ds.values.shape) < 0.05] = np.nan
    space = ds.sensor_space(4)
    splits = make_windows(ds, T_IN, T_OUT)
    torch.manual_seed(0)
    model = build_backbone("stgcn", space, T_IN, T_OUT, 1, {"hidden": 8, "readout": 8})
    return splits, model


def loop(out: str) -> None:
    splits, model = data_and_model()
    rank = distributed.rank()
    sched = Schedule("dynst", SENSORS, 0.5, warmup_steps=2, rounds=3, network_steps=3,
                     mask_steps=2, swap_fraction=0.25)  # fmt: skip
    sp = Sparsifier(sched, seed=0)
    net = DistributedDataParallel(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    weight = torch.ones(1, 1, SENSORS, 1)
    g = torch.Generator().manual_seed(100 + rank)  # every rank draws its own windows
    saved, history = [], 0
    while not sp.done_pruning:
        idx = torch.randint(len(splits.train), (4,), generator=g).tolist()
        x, y = splits.train[idx]
        loss = masked_weighted_l1(net(x, sp.gate()), y, weight)
        opt.zero_grad()
        loss.backward()
        if sp.trains_network:
            opt.step()
        before = sp.round
        sp.step()
        if sp.round != before or len(sp.history) != history:
            history = len(sp.history)
            saved.append({"step": sp.step_count, "theta": sp.theta.detach().clone(),
                          "active": sp.active.clone(), "history": list(sp.history)})  # fmt: skip
    torch.save(saved, os.path.join(out, f"rank{rank}.pt"))


def dynst_stage(splits, train: TrainConfig, sched: ScheduleConfig):
    """The dynst stage at sparsity 0.5 of this job's runs (as a run plan builds it)."""
    sched = dataclasses.replace(sched, prune_by=prune_signal(sched.prune_by, "graph"))
    return make_stage("dynst", train=train, settings=sched, sparsity=0.5, num_sensors=SENSORS,
                      num_windows=len(splits.train), seed=0)  # fmt: skip


def run_fit(out: str, batch: int) -> None:
    splits, model = data_and_model()
    train = TrainConfig(epochs=1, batch_size=batch, lr=3e-3)
    stage = dynst_stage(splits, train, ScheduleConfig(rounds=2))
    result = fit(model, splits, train, stage.sparsifier(), seed=0)
    if distributed.is_main():
        sp = result.sparsifier
        torch.save({"model": model.state_dict(), "theta": sp.theta.detach(),
                    "active": sp.active, "losses": result.losses},
                   os.path.join(out, "fit.pt"))  # fmt: skip


def interrupt(argv: list[str]) -> None:
    from dynst_fast import stages
    from dynst_fast.cli import main

    save = stages.save_progress

    def save_then_fail(out, progress):
        save(out, progress)
        current = progress.current
        if current and current["stage"] == "dynst" and current["state"]["epoch"] == 1:
            raise OSError("rank 0 fails on purpose")  # while rank 1 waits in a collective

    stages.save_progress = save_then_fail
    sys.exit(main(["run", *argv]))


if __name__ == "__main__":
    torch.set_num_threads(1)
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "interrupt":
        interrupt(rest)
    distributed.init_from_env()
    try:
        if mode == "both":  # loop, then fit: one job for two tests
            loop(rest[0])
            run_fit(rest[0], int(rest[1]))
        else:
            {"loop": lambda: loop(rest[0]), "fit": lambda: run_fit(rest[0], int(rest[1]))}[mode]()
    finally:
        distributed.shutdown()
