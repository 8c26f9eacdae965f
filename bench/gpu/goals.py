"""The GPU goals of issue 15, checked against the suite's tables.

Each goal reads the rows it is about and says ``met``, ``not met`` or ``not measured``;
on a CPU run the status says so, since the goals are about a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Rows = list[dict[str, Any]]


def _rows(data: dict, section: str, table: str) -> Rows:
    return data["sections"].get(section, {}).get("tables", {}).get(table, [])


def _vals(rows: Rows, key: str) -> list[float]:
    return [r[key] for r in rows if isinstance(r.get(key), (int, float))]


def _bandwidth(table: str) -> Callable[[dict], tuple[str, bool | None]]:
    def check(data: dict) -> tuple[str, bool | None]:
        rows = _rows(data, "ops", table)
        pct, ratio = _vals(rows, "pct_of_copy"), _vals(rows, "vs_torch")
        if not pct or not ratio:
            return "–", None
        ok = min(pct) >= 80 and min(ratio) >= 2
        return f"min {min(pct):.0f}% of copy, min {min(ratio):.2f}x torch", ok

    return check


def _patchify(data: dict) -> tuple[str, bool | None]:
    ratio = _vals(_rows(data, "ops", "patchify_compact"), "vs_torch")
    return (f"min {min(ratio):.2f}x", min(ratio) >= 3) if ratio else ("–", None)


def _select(data: dict) -> tuple[str, bool | None]:
    rows = [r for r in _rows(data, "ops", "select_swap") if r.get("N") == 2**20]
    ratio = _vals(rows, "vs_topk")
    return (f"{min(ratio):.2f}x topk at N = 2^20", min(ratio) > 1) if ratio else ("–", None)


def _spmm(data: dict) -> tuple[str, bool | None]:
    rows = [r for r in _rows(data, "ops", "gated_spmm") if r.get("F", 0) >= 64]
    ratio = _vals(rows, "op_vs_cusparse")
    if not ratio:
        return "–", None
    return f"worst {max(ratio):.2f}x cuSPARSE's time (F >= 64)", max(ratio) <= 1.3


def _stgcn(data: dict) -> tuple[str, bool | None]:
    rows = [
        r
        for r in _rows(data, "models", "inference")
        if r.get("model") == "stgcn"
        and r.get("N") == 16384
        and r.get("s") == 0.5
        and r.get("batch") == 64
    ]
    ratio = _vals(rows, "vs_dense")
    return (f"{ratio[0]:.2f}x dense", ratio[0] >= 1.8) if ratio else ("–", None)


GOALS: list[tuple[str, Callable[[dict], tuple[str, bool | None]]]] = [
    ("compact: >= 80% of copy bandwidth and >= 2x the torch composition", _bandwidth("compact")),
    ("expand: >= 80% of copy bandwidth and >= 2x the torch composition", _bandwidth("expand")),
    ("patchify_compact: >= 3x patchify-then-gather", _patchify),
    ("select_swap: faster than torch.topk at N = 2^20", _select),
    ("gated_spmm: within 1.3x of cuSPARSE (or faster) for F >= 64", _spmm),
    ("compacted STGCN, 16,384 nodes, s = 0.5, batch 64: >= 1.8x dense", _stgcn),
]


def evaluate_goals(data: dict) -> list[dict[str, str]]:
    on_cpu = data["meta"].get("device") != "cuda"
    out = []
    for goal, check in GOALS:
        figure, ok = check(data)
        status = "not measured" if ok is None else ("met" if ok else "not met")
        if on_cpu and ok is not None:
            status += " (CPU run: not the GPU goal)"
        out.append({"goal": goal, "figure": figure, "status": status})
    return out
