"""Paper-scale sensor networks on one machine: a 16,384-sensor planted run trains,
evaluates and writes its run directory without ever holding an N x N dense tensor: its
peak memory grows, beyond the interpreter and libraries, by less than one N x N float32
matrix alone would take (1 GiB)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

N = 16_384
N_BY_N_KB = N * N * 4 // 1024  # one dense float32 N x N matrix: 1 GiB

CHILD = """
import resource, sys
import dynst_fast.run, dynst_fast.plot, matplotlib.pyplot
from dynst_fast.cli import main
from dynst_fast.graph import CSRGraph

def no_dense(self):  # a dense form of a large graph is a bug, even one never touched
    if self.num_rows > 4096:
        raise AssertionError(f"an N x N dense matrix of {self.num_rows} sensors")
    return CSRGraph._to_dense(self)

CSRGraph._to_dense, CSRGraph.to_dense = CSRGraph.to_dense, no_dense
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the interpreter and libraries
code = main(sys.argv[1:])
print("BASE_KB", base, "MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""


@pytest.mark.slow
def test_16384_sensor_run_without_n_by_n_memory(tmp_path):
    out = tmp_path / "big"
    argv = ["run", "--data", f"synthetic:{N}:80", "--t-in", "6", "--horizon", "2",
            "--epochs", "1", "--rounds", "1", "--batch-size", "4", "--hidden", "8",
            "--time-batch", "2", "--time-repeats", "1", "--time-warmup", "1",
            "--quiet", "--out", str(out)]  # fmt: skip
    r = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True,
                       timeout=900)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    base_kb = int(r.stdout.split("BASE_KB")[1].split()[0])
    peak_kb = int(r.stdout.split("MAXRSS_KB")[1].split()[0])
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_sensors"] == N and 1 <= m["num_active"] < N
    assert (out / "sensors.png").stat().st_size > 0
    # The data, the model and a few batches take less than one N x N matrix would.
    grew = peak_kb - base_kb
    assert grew < N_BY_N_KB, f"peak RSS grew by {grew / 1024:.0f} MiB"
