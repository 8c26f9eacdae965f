"""Shared fixtures: small random graphs and the real-data directory."""

from __future__ import annotations

import os
from pathlib import Path

import torch

# Triton kernels run under the interpreter on a machine without a GPU. The variable is
# read when a kernel is decorated, so it must be set before dynst_fast.kernels' kernel
# modules are imported (dynst_fast imports them lazily, on the first Triton call).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Under pytest-xdist (-n 2, as the README runs the suite) each worker gets one thread, so
# that the workers' thread pools do not spin against each other on a small machine.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

import pytest  # noqa: E402

from dynst_fast.data import shared_data_dir  # noqa: E402
from dynst_fast.graph import CSRGraph  # noqa: E402


def random_graph(n: int, p: float = 0.2, seed: int = 0) -> CSRGraph:
    """Symmetric random graph with self-loops and positive weights."""
    g = torch.Generator().manual_seed(seed)
    a = (torch.rand(n, n, generator=g) < p).float() * torch.rand(n, n, generator=g)
    a = a + a.T + torch.eye(n)
    return CSRGraph.from_dense(a)


@pytest.fixture
def small_graph() -> CSRGraph:
    return random_graph(23, seed=1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data directory; skips when absent, except in CI where it must be there."""
    try:
        return shared_data_dir()
    except FileNotFoundError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the real data is missing: {exc}")
        pytest.skip(str(exc))


@pytest.fixture
def los_loop_dir(shared_data: Path) -> Path:
    d = shared_data / "los_loop"
    if not d.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {d} does not exist")
        pytest.skip(f"{d} does not exist")
    return d


@pytest.fixture(scope="session")
def tiny_dynst_run(tmp_path_factory) -> Path:
    """One finished small DynST run (synthetic planted network, sparsity 0.5, 2 epochs,
    fine-tuned with failure rate 0.1), shared by the tests that only read a run; they
    must not change it."""
    from dynst_fast.config import RunConfig
    from dynst_fast.run import run

    out = tmp_path_factory.mktemp("tiny_dynst") / "run"
    cfg = RunConfig.from_flags(
        sparsity=0.5, epochs=2, horizon=3, batch_size=64, hidden=8, failure_rate=0.1,
        time_batch=4, time_repeats=1, time_warmup=0, quiet=True, out=str(out),
    )  # fmt: skip
    run(cfg)
    return out


@pytest.fixture(scope="session")
def tiny_export(tiny_dynst_run, tmp_path_factory) -> Path:
    """``tiny_dynst_run``'s compacted model exported to ONNX (its sidecar beside it), for
    the tests that serve it; they must not change it."""
    from dynst_fast.cli import main

    model = tmp_path_factory.mktemp("tiny_export") / "m.onnx"
    assert main(["export", str(tiny_dynst_run), "--out", str(model)]) == 0
    return model
