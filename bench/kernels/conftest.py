"""pytest-benchmark harness of the kernel, op and model benchmarks.

    python -m pytest bench/kernels --benchmark-only [--bench-size quick|full]
        [--bench-device D] [--bench-report FILE.md] [--benchmark-autosave]

Every test times one method of one case of ``cases.py`` (its inputs are built and
checked once per session); a case's methods share a pytest-benchmark group, so its
tables put them side by side. At the end the ratio tables are printed from the same
measurements (and written to ``--bench-report``): for each case, every method's median
and its time over the op's (> 1: the op is faster). On CUDA every timed call ends with a
synchronize. ``full`` is every grid of the published figures (about 20 minutes on 2
CPU cores); ``quick`` checks every code path in seconds.
"""

from __future__ import annotations

import gc
import os
import platform
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from bench.kernels.cases import Case

# compact: (B, N, F, s); patchify: (B, T, C, H, W, p, s); select: (N, s, k / N);
# spmm: (graph, B, F); pruned: (graph, F); nearest: (N, L, m, s); attention: (B, N, m, D, s)
# (the STGCN read-out runs attention at B = batch x heads, D = 8); model: (model, data, s,
# batch)
_COMPACT_FULL = [
    (b, n, f, s)
    for n in (207, 16384, 2**20)
    for f in (12, 24, 96)
    for b in (1, 32)
    for s in (0.3, 0.5)
]
_PATCHIFY_SHAPES = [
    (1, 12, 1, 64, 64, 4),
    (32, 12, 1, 64, 64, 4),
    (32, 10, 1, 128, 128, 8),
    (8, 4, 3, 224, 224, 16),
    (16, 12, 2, 50, 70, 8),
]
SIZES = {
    "quick": {
        "compact": [(2, 1024, 8, 0.5)],
        "patchify": [(2, 4, 1, 16, 18, 4, 0.5)],
        "select": [(1024, 0.5, 0.01)],
        "spmm": [(1000, 1, 8)],
        "pruned": [(1000, 8)],
        "nearest": [(1000, 16, 4, 0.5)],
        "attention": [(2, 500, 4, 8, 0.5)],
        "model": [("stgcn", "planted", 0.5, 4)],
    },
    "full": {
        "compact": _COMPACT_FULL,
        "patchify": [(*shape, s) for shape in _PATCHIFY_SHAPES for s in (0.3, 0.5)],
        "select": [
            (n, s, kf) for n in (207, 16384, 2**20) for s in (0.3, 0.5) for kf in (0.01, 0.1)
        ],
        "spmm": [
            *[("los_loop", b, f) for b in (1, 32) for f in (16, 64, 128)],
            *[(n, 1, f) for n in (10_000, 100_000) for f in (16, 64, 128)],
            *[(1_000_000, 1, f) for f in (16, 64)],
        ],
        "pruned": [("los_loop", 64), (10_000, 64), (100_000, 64), (1_000_000, 64)],
        "nearest": [(n, 64, 8, s) for n in (207, 16384, 2**20) for s in (0.3, 0.7)],
        "attention": [(b, n, 8, 8, 0.5) for b, n in ((4, 207), (256, 207), (4, 16384),
                                                    (1, 2**20))],
        "model": [
            *[(m, d, s, 64) for m, d in (("stgcn", "Los-loop"), ("vit", "ERA5"))
              for s in (0.3, 0.5)],
            *[("vit-encoder-heavy", "ERA5", s, 64) for s in (0.3, 0.5)],
            ("stgcn-1hop", "Los-loop", 0.5, 64),
        ],
    },
}  # fmt: skip
_RESULTS = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dynst_fast benchmarks")
    group.addoption("--bench-size", choices=tuple(SIZES), default="full", help="case sizes")
    group.addoption("--bench-device", default=None, help="default: cuda if torch sees one")
    group.addoption("--bench-report", default=None, help="write the ratio tables here (.md)")
    group.addoption("--bench-threads", type=int, default=None, help="torch CPU threads")
    group.addoption(
        "--bench-budget-gb", type=float, default=None,
        help="skip compact cases whose x is larger (default 1 on CPU, 8 on CUDA)",
    )  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_RESULTS] = []
    threads = config.getoption("--bench-threads", None)
    if threads:
        torch.set_num_threads(threads)
    if not torch.cuda.is_available():  # Triton kernels are not what CPU cases run, but
        os.environ.setdefault("TRITON_INTERPRET", "1")  # importing them must not fail


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    size = metafunc.config.getoption("--bench-size")
    for key, specs in SIZES[size].items():
        if f"{key}_spec" in metafunc.fixturenames:
            metafunc.parametrize(f"{key}_spec", specs, ids=[str(s) for s in specs], scope="session")


class Bench:
    """Builds each case once and times one of its methods with pytest-benchmark. Only the
    latest case is held: the tests of one case run one after another (their spec is a
    session-scoped parameter), and the full grid's inputs would not fit in memory at once."""

    def __init__(self, device: str, results: list, budget_gb: float) -> None:
        self.device, self.results, self.budget_gb = device, results, budget_gb
        self._key: tuple | None = None
        self._case: object = None

    def cases(self, key: tuple, build: Callable[[], object]):
        if key != self._key:
            self._key, self._case = None, None  # free the last case's inputs first
            gc.collect()
            self._case, self._key = build(), key
        return self._case

    def run(self, benchmark, case: Case, method: str) -> None:
        if method not in case.fns:
            why = case.info.get(method, "not a method of this case")
            pytest.skip(f"{case.name}: no {method} here ({why})")
        fn = case.fns[method]
        cuda = self.device == "cuda"

        def call():
            out = fn()
            if cuda:
                torch.cuda.synchronize()
            return out

        benchmark.group = case.name
        benchmark.extra_info.update({k: str(v) for k, v in case.info.items()}, method=method)
        with torch.inference_mode(not case.op.endswith("_backward")):
            benchmark(call)
        stats = getattr(benchmark, "stats", None)
        if stats is not None:  # the case's facts, not the case (its inputs must be freed)
            facts = Case(case.op, case.name, dict.fromkeys(case.fns), dict(case.info))
            self.results.append((facts, method, stats.stats.median * 1e3))


@pytest.fixture(scope="session")
def bench(request: pytest.FixtureRequest) -> Bench:
    dev = request.config.getoption("--bench-device")
    dev = dev or ("cuda" if torch.cuda.is_available() else "cpu")
    budget = request.config.getoption("--bench-budget-gb") or (8.0 if dev == "cuda" else 1.0)
    return Bench(dev, request.config.stash[_RESULTS], budget)


def ratio_tables(results: list) -> list[str]:
    """Markdown: per op, one row per case with its facts, each method's median ms and
    its time over the first method's (the op, or the compacted model)."""
    by_op: dict[str, dict[str, tuple[Case, dict[str, float]]]] = {}
    for case, method, ms in results:
        by_op.setdefault(case.op, {}).setdefault(case.name, (case, {}))[1][method] = ms
    lines = []
    for op, cases in by_op.items():
        methods = list(next(iter(cases.values()))[0].fns)
        for case, _ in cases.values():
            methods += [m for m in case.fns if m not in methods]
        base = methods[0]
        keys = [k for k in next(iter(cases.values()))[0].info if k != "bytes"]
        head = [*keys, *(f"{m} ms" for m in methods), *(f"{m} / {base}" for m in methods[1:])]
        lines += [f"### {op}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for case, t in cases.values():
            cells = [str(case.info.get(k, "")) for k in keys]
            cells += [f"{t[m]:.4g}" if m in t else "–" for m in methods]
            cells += [f"{t[m] / t[base]:.2f}" if m in t and base in t else "–" for m in methods[1:]]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    results = config.stash.get(_RESULTS, [])
    if not results:
        return
    tables = ratio_tables(results)
    tr = terminalreporter
    tr.section("dynst_fast ratio tables (median of the method / median of the op)")
    for line in tables:
        tr.write_line(line)
    path = config.getoption("--bench-report")
    if path:
        from bench.timer import machine
        from dynst_fast.files import write_atomic

        dev = config.getoption("--bench-device") or ("cuda" if torch.cuda.is_available() else "cpu")
        head = [
            f"# Kernel, op and model benchmarks on {dev}",
            "",
            f"Machine: {machine(dev)}, {platform.machine()}. Medians of pytest-benchmark rounds "
            "(ms per call); `x / op`: the method's time over the op's (> 1: the op is "
            "faster). Command: `python -m pytest bench/kernels --benchmark-only "
            f"--bench-size {config.getoption('--bench-size')}"
            + (f" --bench-threads {t}" if (t := config.getoption("--bench-threads")) else "")
            + f" --bench-report {path}`.",
            "",
        ]
        write_atomic(Path(path), "\n".join(head + tables) + "\n")
        tr.write_line(f"wrote {path}")
