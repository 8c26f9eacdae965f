"""Human-readable results: the terminal table and ``report.md``."""

from __future__ import annotations

import shlex
from typing import Any

from .config import RunConfig
from .flags import command_line
from .records import RunMetrics

# Metrics shown as columns when the run has them (the sensor space decides which it
# computes: SSIM and PSNR for image patches): key, header, format.
OPTIONAL_COLUMNS = (("ssim", "SSIM", "{:.4f}"), ("psnr", "PSNR dB", "{:.2f}"))


def _rows(m: RunMetrics) -> list[list[str]]:
    units = f" ({m.units})" if m.units else ""
    d = m.dense.to_dict()
    extra = [c for c in OPTIONAL_COLUMNS if c[0] in d]
    rows = [["model", f"MAE{units}", f"RMSE{units}", "active", "sparsity", "infer ms", "speedup"]]
    rows[0][3:3] = [header for _, header, _ in extra] + ["kept MAE", "dropped MAE"]
    n = m.num_sensors

    def extra_cols(r: dict[str, Any]) -> list[str]:
        parts = [f"{r[p]['mae']:.4f}" if p in r else "" for p in ("kept", "dropped")]
        return [fmt.format(r[key]) for key, _, fmt in extra] + parts

    rows.append(
        [
            "dense",
            f"{d['mae']:.4f}",
            f"{d['rmse']:.4f}",
            *extra_cols(d),
            f"{n}/{n}",
            "0.00",
            f"{d['infer_ms']:.2f}",
            "1.00x",
        ]
    )
    for name, result in m.schemes.items():
        s = result.to_dict()
        speed = f"{s['speedup']:.2f}x" if s.get("gives_speedup", True) else "none (masked)"
        rows.append(
            [
                name,
                f"{s['mae']:.4f}",
                f"{s['rmse']:.4f}",
                *extra_cols(s),
                f"{s['num_active']}/{n}",
                f"{1 - s['num_active'] / n:.2f}",
                f"{s['infer_ms']:.2f}",
                speed,
            ]
        )
    for name, b in m.baselines.items():
        rows.append(
            [
                name,
                f"{b['mae']:.4f}",
                f"{b['rmse']:.4f}",
                *extra_cols(b),
                f"{n}/{n}",
                "0.00",
                "",
                "",
            ]
        )
    return rows


def format_table(m: RunMetrics | dict[str, Any]) -> str:
    """Plain-text table: dense vs sparse MAE/RMSE, sparsity, inference time, speedup
    (of a ``metrics.json`` record, or its dict)."""
    if not isinstance(m, RunMetrics):
        m = RunMetrics.from_dict(m)
    rows = _rows(m)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    extra = []
    if m.planted_sensors is not None:
        extra.append(f"planted sensors kept: {m.main.planted_recall:.0%}")
    t = m.timing
    extra.append(f"inference timed on batch {t.batch} with {t.threads} threads, {t.method}")
    return "\n".join(lines + [""] + extra)


def _candidates(candidates: list[tuple[str, float]], units: str) -> list[str]:
    if not candidates:
        return []
    u = f" ({units})" if units else ""
    lines = [
        "## Sensors to switch back on",
        "",
        "The switched-off sensors whose return would help most, by their first-order "
        "switch-on gain (mean |dL/dg| over the last mask phase, as an estimated whole-field "
        "MAE decrease in original units; `dynst rank RUN_DIR` lists them all):",
        "",
        f"| rank | sensor | est. MAE decrease{u} |",
        "|---|---|---|",
    ]
    lines += [f"| {i} | {sid} | {g:.4g} |" for i, (sid, g) in enumerate(candidates, 1)]
    return [*lines, ""]


def _constraints_line(c: dict[str, Any]) -> str:
    """The constraints a run respected, in one paragraph."""

    def ids(key: str) -> str:
        v = c[key]
        return f"{len(v)} ({', '.join(v[:10])}{', ...' if len(v) > 10 else ''})" if v else "none"

    text = f"Constraints: sensors kept on {ids('keep')}; forbidden {ids('forbid')}"
    if "budget" in c:
        unit = "cost" if c["costed"] else "sensor count (no --cost: each costs 1)"
        text += (
            f"; budget {c['budget']:g} in {unit}, used {c['cost']:g} of the network's "
            f"{c['total_cost']:g}"
        )
    return text + "."


def _per_horizon(m: RunMetrics) -> list[str]:
    """A table of MAE per forecast step: whole field, kept and dropped, per model."""
    models = {"dense": m.dense.scores, **{k: v.scores for k, v in m.schemes.items()}}
    steps = len(m.dense.scores.get("mae_per_horizon", []))
    if not steps:
        return []
    head = "| model | part | " + " | ".join(f"+{h + 1}" for h in range(steps)) + " |"
    out = ["## MAE per forecast step", "", head, "|---|---|" + "---|" * steps]
    for name, r in models.items():
        for part, v in (("field", r), ("kept", r.get("kept")), ("dropped", r.get("dropped"))):
            if v is not None and "mae_per_horizon" in v:
                vals = " | ".join(f"{x:.4f}" for x in v["mae_per_horizon"])
                out.append(f"| {name} | {part} | {vals} |")
    return [*out, ""]


def _blind_spots(worst: list[tuple[str, float, float]], units: str) -> list[str]:
    if not worst:
        return []
    u = f" ({units})" if units else ""
    lines = [
        "## Where the sparse network is blind",
        "",
        "The switched-off sensors it forecasts worst (test MAE; `metrics.json` holds every "
        "sensor's as `mae_per_sensor`, and `sensors_error.png` shades them), beside the "
        "dense model, which still sees them:",
        "",
        f"| sensor | sparse MAE{u} | dense MAE{u} |",
        "|---|---|---|",
    ]
    lines += [f"| {sid} | {a:.4g} | {b:.4g} |" for sid, a, b in worst]
    return [*lines, ""]


def render_report(
    m: RunMetrics,
    history: list[dict[str, Any]],
    notes: list[str] = (),
    candidates: list[tuple[str, float]] = (),
    worst: list[tuple[str, float, float]] = (),
) -> str:
    """Markdown report of a run (what was trained, results, mask history); ``notes`` are
    paragraphs about the data's layout (``SensorSpace.notes``), ``candidates`` the best
    switched-off sensors to switch back on, ``(id, estimated MAE decrease)``, ``worst``
    the switched-off sensors forecast worst, ``(id, sparse MAE, dense MAE)``."""
    rows = _rows(m)
    md = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    md += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    c = m.constraints or {}
    target = (
        f"cost {c['cost']:g} of budget {c['budget']:g}"
        if "budget" in c
        else f"target {m.target_sparsity:.3f}"
    )
    lines = [
        f"# DynST run: {m.dataset}, {m.model}, {m.scheme}",
        "",
        f"{m.num_active} of {m.num_sensors} sensors kept "
        f"(sparsity {m.sparsity:.3f}, {target}); "
        f"{m.t_in} steps in, {m.t_out} out; whole-field test metrics in original units.",
        "",
        *md,
        "",
    ]
    lines += [
        "Kept / dropped MAE: the forecasts of the sensors a model keeps on (the paper's "
        "view) and of those it switches off, apart; the dense row scores the main scheme's "
        "two sets.",
        "",
        *_per_horizon(m),
    ]
    if c:
        lines += [_constraints_line(c), ""]
    if m.planted_sensors is not None:
        lines += [f"Planted informative sensors kept: **{m.main.planted_recall:.0%}**.", ""]
    for note in notes:
        lines += [note, ""]
    if not m.main.gives_speedup:
        ratio = m.main.measured_ratio
        measured = f" (measured time ratio {ratio:.2f})" if ratio is not None else ""
        lines += [
            "This model is gated through `InputMasked`: it runs the full network on a "
            "zero-filled input, so compaction gives **no speedup** by construction"
            f"{measured}; `metrics.json` reports `speedup: null`.",
            "",
        ]
    t = m.timing
    lines += [
        f"Inference timing: batch {t.batch}, {t.threads} threads on {t.machine}; {t.method}.",
        "",
        "![sensors](sensors.png)",
        "",
        *_blind_spots(list(worst), m.units),
        *_candidates(candidates, m.units),
        "## Mask history",
        "",
        "| step | round | pruned | swapped | active |",
        "|---|---|---|---|---|",
    ]
    for h in history:
        lines.append(
            f"| {h['step']} | {h['round']} | {h.get('pruned', 0)} | "
            f"{len(h.get('dropped', []))} | {h['active']} |"
        )
    lines += [
        "",
        "## Reproduce",
        "",
        f"    dynst run --config {shlex.quote(str(m.config['out']) + '/config.toml')}",
        "",
        "or, in flags,",
        "",
        f"    {command_line(RunConfig.from_dict(m.config))}",
        "",
    ]
    return "\n".join(lines)
