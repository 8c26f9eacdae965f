"""The suite's state and its results file.

``Suite`` carries the device, the size setting and the deadline, and records tables,
facts, errors and skipped cases. After every record it rewrites ``DIR/gpu_suite.json``
and ``DIR/gpu_suite.md`` (each through a temporary file and a rename), so a run that is
cut off still leaves every figure it measured.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .goals import evaluate_goals

NAME = "gpu_suite"


def _atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _plain(v: Any) -> Any:
    """JSON-safe: non-finite floats become None."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v == 0 or 0.01 <= abs(v) < 1e5:
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return f"{v:.2e}"
    return str(v)


class Suite:
    """One run of the suite: where it writes, what it runs on, until when."""

    def __init__(self, out: str | Path, device: str, quick: bool, limit_s: float, meta: dict):
        self.dir = Path(out)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.device, self.quick = device, quick
        self.start = time.monotonic()
        self.deadline = self.start + limit_s
        self.data: dict[str, Any] = {
            "meta": {**meta, "device": device, "quick": quick, "time_limit_s": limit_s},
            "sections": {},
            "errors": [],
            "skipped": [],
        }
        self.write()

    # ------------------------------------------------------------ recording
    def section(self, name: str, method: str) -> None:
        """Open section ``name``; ``method`` says how its figures were measured."""
        self.data["sections"].setdefault(name, {"method": method, "facts": {}, "tables": {}})
        self.write()

    def fact(self, section: str, key: str, value: Any) -> None:
        self.data["sections"][section]["facts"][key] = value
        self.write()

    def add(self, section: str, table: str, row: dict[str, Any]) -> None:
        """Append one row to a table of a section (and print it)."""
        self.data["sections"][section]["tables"].setdefault(table, []).append(row)
        print(f"[{section}/{table}] " + ", ".join(f"{k}={_cell(v)}" for k, v in row.items()))
        self.write()

    def error(self, section: str, what: str, exc: BaseException | str) -> None:
        if isinstance(exc, BaseException):
            tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
            text, detail = f"{type(exc).__name__}: {exc}".splitlines()[0], "".join(tb[-3:])
        else:
            text, detail = exc, ""
        self.data["errors"].append({"section": section, "what": what, "error": text})
        print(f"[{section}] ERROR {what}: {text}\n{detail}", flush=True)
        self.write()

    def left(self) -> float:
        """Seconds until the deadline."""
        return self.deadline - time.monotonic()

    def out_of_time(self, section: str, what: str, need_s: float = 0.0) -> bool:
        """True (and the case recorded as skipped) when less than ``need_s`` is left."""
        if self.left() > need_s:
            return False
        self.data["skipped"].append({"section": section, "what": what, "why": "time limit"})
        self.write()
        return True

    @contextmanager
    def guard(self, section: str, what: str) -> Iterator[None]:
        """Run one case; an exception is recorded as that case's error, and the suite
        goes on with the next case."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001  (every failure is a result here)
            self.error(section, what, exc)

    # ------------------------------------------------------------ writing
    def write(self) -> None:
        self.data["meta"]["elapsed_s"] = round(time.monotonic() - self.start, 1)
        self.data["goals"] = evaluate_goals(self.data)
        _atomic(self.dir / f"{NAME}.json", json.dumps(_plain(self.data), indent=1) + "\n")
        _atomic(self.dir / f"{NAME}.md", self.markdown())

    def markdown(self) -> str:
        d, m = self.data, self.data["meta"]
        lines = [f"# dynst_fast GPU suite on {m.get('device_name', self.device)}", ""]
        lines += [f"- {k}: {_cell(v)}" for k, v in m.items() if k != "device_name"]
        lines += ["", "## Goals", ""]
        lines += ["| goal | figure | status |", "|---|---|---|"]
        lines += [f"| {g['goal']} | {g['figure']} | {g['status']} |" for g in d["goals"]]
        for name, sec in d["sections"].items():
            lines += ["", f"## {name}", "", sec["method"], ""]
            lines += [f"- {k}: {_cell(v)}" for k, v in sec["facts"].items()]
            for table, rows in sec["tables"].items():
                cols = list(dict.fromkeys(k for r in rows for k in r))
                lines += ["", f"### {table}", "", "| " + " | ".join(cols) + " |"]
                lines += ["|" + "---|" * len(cols)]
                lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
        for key in ("errors", "skipped"):
            if d[key]:
                lines += ["", f"## {key}", ""]
                lines += ["- " + "; ".join(f"{k}: {v}" for k, v in e.items()) for e in d[key]]
        return "\n".join(lines) + "\n"
