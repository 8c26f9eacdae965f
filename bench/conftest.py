"""pytest-benchmark harness of the kernel, op and model benchmarks.

    python -m pytest bench --benchmark-only [--bench-size quick|full] [--bench-device D]
        [--benchmark-autosave] [--benchmark-compare]

Every test times one method of one case of ``bench/cases.py`` (its inputs are built and
checked once per session); a case's methods share a pytest-benchmark group, so its
tables put them side by side. At the end the ratio tables of the benchmark scripts are
printed from the same measurements: for each case, every other method's median over the
op's (> 1: the op is faster). On CUDA every timed call ends with a synchronize.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch
from cases import Case

SIZES = {
    "quick": {
        "compact": [(2, 1024, 8)],
        "patchify": [(2, 4, 1, 16, 18, 4)],
        "select": [1024],
        "spmm": [("RGG 1e+03", 1000, 8)],
        "model": [("stgcn", "planted", 0.5, 4)],
    },
    "full": {
        "compact": [(32, 16384, 24), (1, 2**20, 12)],
        "patchify": [(32, 12, 1, 64, 64, 4), (8, 4, 3, 224, 224, 16)],
        "select": [16384, 2**20],
        "spmm": [("Los-loop", None, 64), ("RGG 1e+05", 100_000, 64)],
        "model": [("stgcn", "Los-loop", 0.5, 64), ("vit", "ERA5", 0.5, 64)],
    },
}
_RESULTS = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dynst_fast benchmarks")
    group.addoption("--bench-size", choices=tuple(SIZES), default="full", help="case sizes")
    group.addoption("--bench-device", default=None, help="default: cuda if torch sees one")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_RESULTS] = []
    if not torch.cuda.is_available():  # Triton kernels are not what CPU cases run, but
        os.environ.setdefault("TRITON_INTERPRET", "1")  # importing them must not fail


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    size = metafunc.config.getoption("--bench-size")
    for key, specs in SIZES[size].items():
        if f"{key}_spec" in metafunc.fixturenames:
            metafunc.parametrize(f"{key}_spec", specs, ids=[str(s) for s in specs], scope="session")


class Bench:
    """Builds each case once and times one of its methods with pytest-benchmark."""

    def __init__(self, device: str, results: list) -> None:
        self.device, self.results = device, results
        self._cases: dict[tuple, object] = {}

    def cases(self, key: tuple, build: Callable[[], object]):
        if key not in self._cases:
            self._cases[key] = build()
        return self._cases[key]

    def run(self, benchmark, case: Case, method: str) -> None:
        if method not in case.fns:
            pytest.skip(f"{case.name}: no {method} here ({case.info.get('sparse.mm', '')})")
        fn = case.fns[method]
        cuda = self.device == "cuda"

        def call():
            out = fn()
            if cuda:
                torch.cuda.synchronize()
            return out

        benchmark.group = case.name
        benchmark.extra_info.update({k: str(v) for k, v in case.info.items()}, method=method)
        with torch.inference_mode():
            benchmark(call)
        stats = getattr(benchmark, "stats", None)
        if stats is not None:
            self.results.append((case.op, case.name, method, stats.stats.median * 1e3))


@pytest.fixture(scope="session")
def bench(request: pytest.FixtureRequest) -> Bench:
    dev = request.config.getoption("--bench-device")
    dev = dev or ("cuda" if torch.cuda.is_available() else "cpu")
    return Bench(dev, request.config.stash[_RESULTS])


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    results = config.stash.get(_RESULTS, [])
    if not results:
        return
    tr = terminalreporter
    tr.section("dynst_fast ratio tables (median of the method / median of the op)")
    by_case: dict[tuple[str, str], dict[str, float]] = {}
    for op, name, method, ms in results:
        by_case.setdefault((op, name), {})[method] = ms
    first = {"model": "compact"}
    for (op, name), t in by_case.items():
        base = first.get(op, "op")
        if base not in t:
            continue
        others = ", ".join(
            f"{m} {v:.3f} ms ({v / t[base]:.2f}x)" for m, v in t.items() if m != base
        )
        tr.write_line(f"{name}: {base} {t[base]:.3f} ms; {others}")
