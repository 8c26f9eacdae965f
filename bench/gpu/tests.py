"""Test step: the op tests on the CUDA backends (`-k cuda`: the default CUDA kernels, the
Triton kernels on CUDA tensors, the graph ops' CUDA cases), one pytest per file with a
time cap each."""

from __future__ import annotations

import re
import subprocess
import sys
import time

from .build import ROOT, _env
from .results import Suite

FILE_CAP_S = 60
SHARE = 0.35  # of the suite's time limit, at most, for all the test files
QUICK_FILES = ("tests/ops/test_induce_subgraph.py",)


def run_tests(suite: Suite) -> None:
    suite.section(
        "tests",
        f"`python -m pytest -x -q <file> -k cuda` per file, at most {FILE_CAP_S} s each and "
        f"{SHARE:.0%} of the time limit in all"
        + (
            "; on CPU with `DYNST_CUDA_TEST_DEVICE=cpu` (the CUDA tests' own logic on the "
            "CPU kernels)"
            if suite.device != "cuda"
            else ""
        )
        + ".",
    )
    env = _env()
    if suite.device != "cuda":
        env["DYNST_CUDA_TEST_DEVICE"] = "cpu"
    files = (
        QUICK_FILES
        if suite.quick
        else sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "ops").glob("test_*.py"))
    )
    end = time.monotonic() + SHARE * (suite.deadline - suite.start)
    for f in files:
        # the quick mode checks code paths, not speed: a loaded CI machine may run one
        # small file ten times slower, so only the suite's own limit applies there
        cap = suite.left() if suite.quick else min(FILE_CAP_S, suite.left(), end - time.monotonic())
        if cap < 10 and suite.out_of_time("tests", f):
            continue
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            f,
            "-k",
            "cuda",
        ]
        t0 = time.monotonic()
        try:
            p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=cap)
        except subprocess.TimeoutExpired:
            suite.add("tests", "files", {"file": f, "result": f"timed out after {cap:.0f} s"})
            suite.error("tests", f, f"timed out after {cap:.0f} s")
            continue
        out = (p.stdout + p.stderr).strip().splitlines()
        summary = next(
            (ln for ln in reversed(out) if re.search(r"\d+ (passed|failed|skipped|error)", ln)), ""
        )
        row = {
            "file": f,
            "rc": p.returncode,
            "result": summary.strip("= "),
            "seconds": round(time.monotonic() - t0, 1),
        }
        suite.add("tests", "files", row)
        if p.returncode not in (0, 5):  # 5: nothing selected
            failed = [ln for ln in out if ln.startswith(("FAILED", "ERROR", "E "))][:6]
            suite.error("tests", f, " / ".join(failed or out[-5:]))
