"""``dynst run``: train dense and sparse models on one dataset, evaluate, time, and
write the run directory (DESIGN.md section 8)."""

from __future__ import annotations

import copy
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from .artifacts import CHECKPOINT, save_checkpoint, write_atomic, write_json
from .data import GraphDataset, load_graph_dataset, make_windows, synthetic_sensor_network
from .models import build_graph_model
from .morph import select_sensors
from .plot import draw_sensors
from .report import format_table, render_report
from .schedule import SCHEMES
from .train import TrainConfig, evaluate, fit, time_side_by_side


@dataclass
class RunConfig:
    """Everything ``dynst run`` takes; see ``dynst run --help``."""

    data: str | None = None
    model: str = "stgcn"
    sparsity: float | None = None
    scheme: str = "dynst"
    also: list[str] = field(default_factory=list)
    epochs: int = 30
    seed: int = 0
    out: str | None = None
    t_in: int = 12
    horizon: int = 12
    batch_size: int = 32
    hidden: int = 32
    lr: float = 2e-3
    time_batch: int = 64
    quiet: bool = False

    def validate(self) -> None:
        if self.sparsity is not None and not (0.0 <= self.sparsity < 1.0):
            raise ValueError(f"--sparsity must be in [0, 1), got {self.sparsity}")
        for s in [self.scheme, *self.also]:
            if s not in SCHEMES or s == "dense":
                raise ValueError(
                    f"unknown sparse scheme {s!r}; choose from "
                    f"{', '.join(x for x in SCHEMES if x != 'dense')} (dense always runs)"
                )
        for name in ("epochs", "t_in", "horizon", "batch_size", "hidden", "time_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")


def load_dataset(cfg: RunConfig) -> GraphDataset:
    if cfg.data is None:
        return synthetic_sensor_network(seed=cfg.seed)
    return load_graph_dataset(cfg.data)


def _train_config(cfg: RunConfig, scheme: str, sparsity: float) -> TrainConfig:
    return TrainConfig(
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=cfg.seed,
        scheme=scheme,
        sparsity=sparsity,
    )


class _Progress:
    """One tqdm bar per training, showing phase, round and sparsity."""

    def __init__(self, label: str, total: int, quiet: bool) -> None:
        self.bar = tqdm(total=total, desc=label, unit="epoch", disable=quiet, leave=True)

    def __call__(self, info: dict[str, Any]) -> None:
        post = {
            "phase": info["phase"],
            "sparsity": f"{info['sparsity']:.2f}",
            "loss": f"{info['loss']:.4f}",
        }
        if info["round"]:
            post["round"] = info["round"]
        if info["val_mae"] == info["val_mae"]:
            post["val_mae"] = f"{info['val_mae']:.4f}"
        self.bar.set_postfix(post)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _fit(model, splits, tcfg: TrainConfig, label: str, quiet: bool):
    bar = _Progress(label, tcfg.epochs, quiet)
    try:
        return fit(model, splits, tcfg, progress=bar)
    finally:
        bar.close()


def train_dense(cfg: RunConfig, ds: GraphDataset, splits) -> tuple[Any, dict[str, Any]]:
    """Build the backbone and train it with every sensor on; returns (model, test metrics)."""
    torch.manual_seed(cfg.seed)
    dense = build_graph_model(
        cfg.model, ds.adjacency, cfg.t_in, cfg.horizon, ds.num_channels, **model_kwargs(cfg)
    )
    fr = _fit(dense, splits, _train_config(cfg, "dense", 0.0), "dense", cfg.quiet)
    metrics = evaluate(dense, splits)
    metrics["train_seconds"] = fr.seconds
    return dense, metrics


def model_kwargs(cfg: RunConfig) -> dict[str, Any]:
    return {"hidden": cfg.hidden}


def train_sparse(
    cfg: RunConfig, dense, ds: GraphDataset, splits, scheme: str, sparsity: float
) -> dict[str, Any]:
    """Fine-tune a copy of the dense model under ``scheme`` to ``sparsity``; evaluate the
    compacted model and time it against the dense one side by side.

    Returns ``{"metrics", "model", "sparsifier"}``.
    """
    model = copy.deepcopy(dense)
    fr = _fit(model, splits, _train_config(cfg, scheme, sparsity), scheme, cfg.quiet)
    sp = fr.sparsifier
    idx = sp.active_index()
    compact = model.compact(idx, sp.theta.detach()).eval()
    metrics = evaluate(compact, splits, active_index=idx)
    x_test, _ = splits.test.tensors()
    xb = x_test[: cfg.time_batch].contiguous()
    xa = select_sensors(xb, idx)
    dense.eval()
    times = time_side_by_side({"dense": lambda: dense(xb), "compact": lambda: compact(xa)})
    metrics.update(
        infer_ms=times["compact"],
        dense_infer_ms=times["dense"],
        speedup=times["dense"] / times["compact"],
        gives_speedup=getattr(compact, "gives_speedup", True),
        num_active=int(idx.numel()),
        train_seconds=fr.seconds,
        swaps=sum(len(h.get("dropped", [])) for h in sp.history),
    )
    if ds.planted is not None:
        metrics["planted_recall"] = float(np.isin(ds.planted, idx.numpy()).mean())
    return {"metrics": metrics, "model": model, "sparsifier": sp, "fit": fr}


def run(cfg: RunConfig) -> dict[str, Any]:
    """Run the main job and write the run directory; returns the metrics dict."""
    cfg.validate()
    t_start = time.perf_counter()
    ds = load_dataset(cfg)
    sparsity = cfg.sparsity
    if sparsity is None:
        sparsity = ds.planted_sparsity if ds.planted_sparsity is not None else 0.5
    out = Path(cfg.out or f"runs/{ds.name}_{cfg.model}_{cfg.scheme}_s{sparsity:g}_seed{cfg.seed}")
    splits = make_windows(ds, t_in=cfg.t_in, t_out=cfg.horizon)
    dense, dense_metrics = train_dense(cfg, ds, splits)
    results: dict[str, Any] = {"dense": dense_metrics}
    sparse = {
        scheme: train_sparse(cfg, dense, ds, splits, scheme, sparsity)
        for scheme in [cfg.scheme, *cfg.also]
    }
    main = sparse[cfg.scheme]
    m = main["metrics"]
    results["dense"]["infer_ms"] = m["dense_infer_ms"]
    sp = main["sparsifier"]
    idx = sp.active_index()
    metrics_json: dict[str, Any] = {
        "dataset": ds.name,
        "model": cfg.model,
        "scheme": cfg.scheme,
        "num_sensors": ds.num_sensors,
        "sparsity": sp.sparsity,
        "target_sparsity": sparsity,
        "num_active": int(idx.numel()),
        "active_sensors": [ds.sensor_ids[i] for i in idx.tolist()],
        "units": ds.units,
        "t_in": cfg.t_in,
        "t_out": cfg.horizon,
        "dense": results["dense"],
        "dynst": m,
        "speedup": m["speedup"],
        "others": {k: v["metrics"] for k, v in sparse.items() if k != cfg.scheme},
        "baselines": _baselines(splits),
        "timing": {
            "batch": min(cfg.time_batch, len(splits.test)),
            "threads": torch.get_num_threads(),
            "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
            "method": "median of 30 interleaved repeats after 5 warm-up calls, one process",
        },
        "config": asdict(cfg),
        "version": __version__,
        "seconds": time.perf_counter() - t_start,
    }
    if ds.planted is not None:
        metrics_json["planted_recall"] = m["planted_recall"]
        metrics_json["planted_sensors"] = [ds.sensor_ids[i] for i in ds.planted.tolist()]
    _write_run_dir(out, cfg, ds, splits, main, metrics_json, model_kwargs(cfg), dense)
    metrics_json["out"] = str(out)
    return metrics_json


def _baselines(splits) -> dict[str, Any]:
    from .baselines import run_baselines

    return run_baselines(splits)


def _write_run_dir(out: Path, cfg, ds, splits, main, metrics_json, kwargs, dense) -> None:
    out.mkdir(parents=True, exist_ok=True)
    sp, model = main["sparsifier"], main["model"]
    theta = sp.theta.detach().numpy()
    active = sp.active.numpy()
    write_json(out / "metrics.json", metrics_json)
    write_json(
        out / "mask.json",
        {
            "sensor_ids": ds.sensor_ids,
            "theta": theta,
            "active": active,
            "active_index": np.nonzero(active)[0],
            "scheme": cfg.scheme,
            "sparsity": sp.sparsity,
        },
    )
    save_checkpoint(
        out / CHECKPOINT,
        {
            "format": 1,
            "version": __version__,
            "model_name": cfg.model,
            "model_kwargs": kwargs,
            "model_state": model.state_dict(),
            "dense_model_state": dense.state_dict(),
            "sparsifier": sp.state_dict(),
            "optimizer_state": main["fit"].optimizer_state,
            "train_config": asdict(main["fit"].config),
            "graph": ds.adjacency.state_dict(),
            "sensor_ids": ds.sensor_ids,
            "num_channels": ds.num_channels,
            "t_in": cfg.t_in,
            "t_out": cfg.horizon,
            "mean": splits.mean,
            "std": splits.std,
            "units": ds.units,
            "dataset": ds.name,
            "run_config": asdict(cfg),
        },
    )
    draw_sensors(
        out / "sensors.png",
        ds.adjacency,
        active,
        coords=ds.coords,
        planted=ds.planted,
        theta=theta,
        geographic=ds.geographic,
        title=f"{ds.name}: {int(active.sum())} of {ds.num_sensors} sensors kept "
        f"({cfg.scheme}, sparsity {sp.sparsity:.2f})",
    )
    write_atomic(out / "report.md", render_report(metrics_json, sp.history))


__all__ = ["RunConfig", "run", "format_table"]
