"""Data-parallel training (``dynst_fast.distributed``): 2 gloo processes on CPU, each
with one thread, started by torchrun. Every rank makes the same sparsifier decisions;
2 processes with batch b train like 1 process with batch 2b; a failing rank ends the
job with its rank named instead of hanging, and ``--resume`` continues its run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dynst_fast import distributed, rundir
from dynst_fast.config import RunConfig, ScheduleConfig, TrainConfig

WORKERS = Path(__file__).parent / "workers"
sys.path.insert(0, str(WORKERS))
import dist_worker  # noqa: E402

TIMEOUT = 240  # seconds: a hung job fails the test instead of stalling CI


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(WORKERS), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1",
            "DYNST_DIST_TIMEOUT": "60"}  # fmt: skip


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc-per-node", "2", "-m", "dist_worker", *args]  # fmt: skip
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)


def _dynst(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "dynst_fast", *args]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)


# ---------------------------------------------------------------- in one process
@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 13])
def test_rank_share_splits_a_batch_in_order(world, size):
    batch = list(range(100, 100 + size))
    shares = [distributed.rank_share(batch, r, world) for r in range(world)]
    assert all(shares), "no rank may get an empty share"
    if size >= world:
        assert sum(shares, []) == batch  # contiguous, in order, each window once
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
    else:
        assert all(len(s) == 1 and s[0] in batch for s in shares)


def test_one_process_is_not_distributed():
    assert not distributed.active()
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    t = torch.arange(3.0)
    assert distributed.all_reduce_mean(t) is t


def test_bad_timeout_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("DYNST_DIST_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="DYNST_DIST_TIMEOUT must be a number"):
        distributed.timeout()


def test_resuming_on_another_number_of_processes_is_refused(tmp_path):
    """The training state records the number of processes; resuming it on another
    number is refused (checked once, where progress.pt is read)."""
    from dynst_fast.records import ProgressRecord
    from dynst_fast.stages import load_progress, save_progress

    cfg = RunConfig(out=str(tmp_path / "run"))
    rundir.staging_dir(cfg.out).mkdir(parents=True)
    save_progress(cfg.out, ProgressRecord(cfg.to_dict(), world_size=2))
    with pytest.raises(ValueError, match="trained on 2 process.*resume it with --nproc 2"):
        load_progress(cfg.out)


# ---------------------------------------------------------------- 2 gloo processes
@pytest.fixture(scope="module")
def two_rank_job(tmp_path_factory) -> Path:
    """One torchrun job of 2 ranks: the own loop, then ``fit`` with per-rank batch 4."""
    out = tmp_path_factory.mktemp("ddp")
    r = _torchrun("both", str(out), "4")
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.mark.slow
def test_every_rank_makes_the_same_decisions(two_rank_job):
    """Each rank trains on other windows; the all-reduced gate gradient keeps theta, the
    active set and the swap history identical on both after every round."""
    tmp_path = two_rank_job
    a, b = (torch.load(tmp_path / f"rank{i}.pt", weights_only=True) for i in (0, 1))
    assert len(a) == len(b) >= 3  # every round end was recorded
    assert any(s["history"] and s["history"][-1].get("dropped") for s in a)  # swaps happened
    for sa, sb in zip(a, b, strict=True):
        assert sa["step"] == sb["step"]
        assert torch.equal(sa["theta"], sb["theta"])
        assert torch.equal(sa["active"], sb["active"])
        assert sa["history"] == sb["history"]


@pytest.mark.slow
def test_two_ranks_with_batch_b_train_like_one_with_batch_2b(two_rank_job):
    """With missing targets and a last batch that the ranks share 2 + 1: the loss is the
    mean over the global batch's observed targets, as in one process."""
    splits, _ = dist_worker.data_and_model()
    assert len(splits.train) % 8 == 3 and torch.isnan(splits.train[list(range(40))][1]).any()
    two = torch.load(two_rank_job / "fit.pt", weights_only=True)
    splits, model = dist_worker.data_and_model()
    from dynst_fast.train import fit

    torch.set_num_threads(1)
    train = TrainConfig(epochs=1, batch_size=8, lr=3e-3)
    stage = dist_worker.dynst_stage(splits, train, ScheduleConfig(rounds=2))
    one = fit(model, splits, train, stage.sparsifier(), seed=0)
    assert torch.equal(one.sparsifier.active, two["active"])
    torch.testing.assert_close(one.sparsifier.theta.detach(), two["theta"], atol=1e-5, rtol=1e-4)
    for name, p in model.state_dict().items():
        torch.testing.assert_close(p, two["model"][name], atol=1e-5, rtol=1e-4, msg=name)
    assert one.losses == pytest.approx(two["losses"], rel=1e-5)


RUN = ["run", "--data", "synthetic:40:500", "--epochs", "2", "--rounds", "2", "--hidden", "8",
       "--horizon", "3",
       "--time-repeats", "2", "--time-warmup", "1", "--quiet"]  # fmt: skip


@pytest.mark.slow
def test_dynst_run_nproc_and_resume_under_ddp(tmp_path):
    """``dynst run --nproc 2`` writes one run directory (rank 0). A rank that raises ends
    the job, named, without a hang; the run it leaves resumes under DDP and ends identical
    to the run never stopped."""
    ref = tmp_path / "ref"
    r = _dynst(*RUN, "--nproc", "2", "--out", str(ref))
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((ref / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["num_active"] >= 1
    assert r.stdout.count("run directory:") == 1  # rank 0 alone reports

    cut = tmp_path / "cut"  # rank 0 fails after an epoch while rank 1 waits for it
    code = (
        "import sys; from dynst_fast.distributed import launch; "
        "sys.exit(launch(2, sys.argv[1:], module='dist_worker'))"
    )
    r = subprocess.run([sys.executable, "-c", code, "interrupt", *RUN[1:], "--out", str(cut)],
                       env=_env(), capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    assert r.returncode != 0 and not (cut / "metrics.json").exists()
    assert "dynst run: error (rank 0 of 2): rank 0 fails on purpose" in r.stderr
    assert "dynst run: error: rank 0 of 2 failed" in r.stderr  # the launcher names it
    r = _dynst("run", "--resume", str(cut), "--nproc", "2", "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("mask.json",):
        assert (ref / name).read_text() == (cut / name).read_text()
    ca, cb = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (ref, cut))
    for (key, u), v in zip(ca["model_state"].items(), cb["model_state"].values(), strict=True):
        assert torch.equal(u, v), key
    assert torch.equal(ca["sparsifier"]["theta"], cb["sparsifier"]["theta"])
