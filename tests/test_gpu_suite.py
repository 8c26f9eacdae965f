"""The GPU suite cannot rot: its CPU quick mode runs every part's code path (build check,
tests, op and model benchmarks, results file, goals) in CI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ["-m", "bench.gpu.suite"]


def _run(out: Path, *flags: str) -> tuple[subprocess.CompletedProcess, dict]:
    p = subprocess.run(
        [sys.executable, *SUITE, "--device", "cpu", "--quick", "--out", str(out), *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    data = json.loads((out / "gpu_suite.json").read_text())
    return p, data


@pytest.mark.slow
@pytest.mark.data
def test_quick_suite_runs_every_part_on_cpu(tmp_path, los_loop_dir):
    p, data = _run(tmp_path)
    assert data["errors"] == [] and data["skipped"] == [], (data["errors"], data["skipped"])
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    secs = data["sections"]
    assert list(secs) == ["build", "tests", "ops", "models"]
    assert secs["build"]["facts"]["torch"] and secs["build"]["tables"]["CUDA kernel of each op"]
    assert all(r["rc"] == 0 for r in secs["tests"]["tables"]["files"])
    ops = secs["ops"]["tables"]
    for table in ("compact", "expand", "patchify_compact", "select_swap", "prune_lowest"):
        assert ops[table] and all(r["op_ms"] > 0 for r in ops[table]), table
    spmm = ops["gated_spmm"]
    assert {r["graph"] for r in spmm} == {"Los-loop", "RGG 1e+03"}
    assert all(r["max_rel_err"] < 1e-5 for r in spmm if r["dtype"] == "float32")
    inference = secs["models"]["tables"]["inference"]
    assert {(r["model"], r["data"]) for r in inference} == {
        ("stgcn", "Los-loop"),
        ("stgcn", "planted 256"),
        ("vit", "ERA5"),
    }
    assert all(r["max_abs_diff"] < 1e-4 for r in inference)  # compacted == gated
    assert len(secs["models"]["tables"]["train_step"]) == 3
    assert len(data["goals"]) == 6
    assert all("CPU run" in g["status"] or g["status"] == "not measured" for g in data["goals"])
    md = (tmp_path / "gpu_suite.md").read_text()
    assert "## Goals" in md and "### gated_spmm" in md and "### inference" in md


@pytest.mark.slow
def test_time_limit_leaves_a_valid_partial_result(tmp_path):
    p, data = _run(tmp_path, "--only", "ops", "--time-limit", "0.5")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert list(data["sections"]) == ["build", "ops"]
    assert data["skipped"] and all(s["why"] == "time limit" for s in data["skipped"])
    assert not data["sections"]["ops"]["tables"]
    assert "## skipped" in (tmp_path / "gpu_suite.md").read_text()


def test_bad_flags_exit_2(tmp_path):
    for flags in (["--time-limit", "0"], ["--only", "nothing"]):
        p = subprocess.run(
            [sys.executable, *SUITE, "--out", str(tmp_path), *flags],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert p.returncode == 2 and "error" in p.stderr
