"""``dynst run --resume``: a run killed (SIGKILL) or interrupted (Ctrl-C) in the middle of
training continues from its last epoch and ends bit-identical to a run never stopped:
the same weights, the same mask, the same metrics.json (timings aside)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dynst_fast import artifacts, rundir, stages
from dynst_fast.cli import main

ARGV = ["run", "--epochs", "2", "--rounds", "3", "--horizon", "3", "--hidden", "8",
        "--also", "random",
        "--time-repeats", "2", "--time-warmup", "1", "--quiet"]  # fmt: skip
TIMING_KEYS = {"infer_ms", "dense_infer_ms", "speedup", "measured_ratio", "train_seconds",
               "seconds", "timing"}  # fmt: skip


def _without_timings(m):
    if isinstance(m, dict):
        return {k: _without_timings(v) for k, v in m.items() if k not in TIMING_KEYS}
    return m


def _same_run(a: Path, b: Path) -> None:
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    ma["config"].pop("out"), mb["config"].pop("out")
    assert _without_timings(ma) == _without_timings(mb)
    assert (a / "mask.json").read_text() == (b / "mask.json").read_text()
    ca, cb = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (a, b))
    for key in ("model_state", "dense_model_state"):
        for (name, u), v in zip(ca[key].items(), cb[key].values(), strict=True):
            assert torch.equal(u, v), (key, name)
    assert torch.equal(ca["sparsifier"]["theta"], cb["sparsifier"]["theta"])
    assert ca["sparsifier"]["history"] == cb["sparsifier"]["history"]
    assert not (b / rundir.PROGRESS).exists()
    assert not rundir.staging_dir(b).exists()


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    assert main([*ARGV, "--out", str(out)]) == 0
    return out


def _stage_epoch(progress: Path) -> tuple[str, int] | None:
    try:
        ck = torch.load(progress, weights_only=True)
    except Exception:  # not written yet, or being replaced
        return None
    if ck["current"] is None:  # written before the first epoch
        return None
    return ck["current"]["stage"], ck["current"]["state"]["epoch"]


@pytest.mark.slow
def test_sigkill_in_the_middle_of_training_then_resume(reference_run, tmp_path) -> None:
    out = tmp_path / "killed"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
        "PYTHONWARNINGS": "ignore",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "dynst_fast", *ARGV, "--out", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 600
        seen = None
        while time.monotonic() < deadline and proc.poll() is None:
            seen = _stage_epoch(rundir.staging_dir(out) / rundir.PROGRESS)
            if seen is not None and seen[0] == "dynst":  # dense done, one sparse epoch in
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be killed: {seen}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    stage = rundir.staging_dir(out)
    assert not out.exists(), "the run directory appears only when the run is finished"
    assert (stage / rundir.PROGRESS).exists() and not (stage / "metrics.json").exists()
    with pytest.raises(FileNotFoundError, match="unfinished run.*--resume"):
        artifacts.load_checkpoint(out)
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    _same_run(reference_run, out)


@pytest.mark.slow
def test_ctrl_c_then_resume(reference_run, tmp_path, monkeypatch, capsys) -> None:
    """Ctrl-C right after the third epoch's checkpoint (the dynst training's first; the
    dense training's two come first): exit code 130, and the resumed run matches."""
    out = tmp_path / "interrupted"
    real, calls = stages.save_progress, []

    def save_then_interrupt(*args, **kwargs):
        real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 4:  # the first save is the empty state before training
            raise KeyboardInterrupt

    monkeypatch.setattr(stages, "save_progress", save_then_interrupt)
    assert main([*ARGV, "--out", str(out)]) == 130
    assert f"dynst run --resume {out}" in capsys.readouterr().err
    assert not out.exists()
    monkeypatch.setattr(stages, "save_progress", real)
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    _same_run(reference_run, out)
    assert main(["run", "--resume", str(out)]) == 2  # finished: nothing to resume
    assert "nothing to resume" in capsys.readouterr().err
