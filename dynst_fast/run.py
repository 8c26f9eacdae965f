"""``dynst run``: train dense and sparse models on one dataset, evaluate, time, and
write the run directory (DESIGN.md section 8).

Graph data (sensor networks) run the graph backbones (``stgcn``, ``masked-stgcn``); grid
data run the image backbones (``vit``, ``simvp``) with one sensor per ``p x p`` patch.
The default data set is the matching synthetic one with planted informative sensors.
"""

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
from .data import (
    GraphDataset,
    GridDataset,
    is_grid_data,
    load_graph_dataset,
    load_grid_dataset,
    make_windows,
    synthetic_grid,
    synthetic_sensor_network,
)
from .graph import CSRGraph
from .models import GRAPH_MODELS, IMAGE_MODELS, build_graph_model, build_image_model
from .morph import PatchGrid
from .plot import draw_patches, draw_sensors
from .report import format_table, render_report
from .schedule import SCHEMES
from .train import TrainConfig, evaluate, fit, gather_active, time_side_by_side


@dataclass
class RunConfig:
    """Everything ``dynst run`` takes; see ``dynst run --help``."""

    data: str | None = None
    model: str | None = None  # None: stgcn for graph data, vit for grid data
    patch: int = 4  # p: image models' patch size (one sensor per p x p patch)
    sparsity: float | None = None
    scheme: str = "dynst"
    also: list[str] = field(default_factory=list)
    epochs: int = 30
    seed: int = 0
    out: str | None = None
    t_in: int = 12
    horizon: int = 12
    batch_size: int = 32
    hidden: int | None = None  # width: stgcn hidden (32), vit dim (64), simvp hidden (16)
    lr: float = 2e-3
    time_batch: int = 64
    quiet: bool = False
    model_options: dict[str, Any] = field(default_factory=dict)  # more backbone kwargs (API)

    def validate(self) -> None:
        if self.model is not None and self.model not in (*GRAPH_MODELS, *IMAGE_MODELS):
            raise ValueError(
                f"unknown model {self.model!r}; choose one of "
                f"{', '.join((*GRAPH_MODELS, *IMAGE_MODELS))}"
            )
        if isinstance(self.patch, bool) or not isinstance(self.patch, int) or self.patch < 1:
            raise ValueError(f"--patch must be a positive integer, got {self.patch!r}")
        if self.hidden is not None and self.hidden < 1:
            raise ValueError("--hidden must be >= 1")
        if self.sparsity is not None and not (0.0 <= self.sparsity < 1.0):
            raise ValueError(f"--sparsity must be in [0, 1), got {self.sparsity}")
        for s in [self.scheme, *self.also]:
            if s not in SCHEMES or s == "dense":
                raise ValueError(
                    f"unknown sparse scheme {s!r}; choose from "
                    f"{', '.join(x for x in SCHEMES if x != 'dense')} (dense always runs)"
                )
        for name in ("epochs", "t_in", "horizon", "batch_size", "time_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")


def load_dataset(cfg: RunConfig) -> GraphDataset | GridDataset:
    """The data of ``cfg``; sets ``cfg.model`` if it was None (stgcn for graph data, vit
    for grid data). Image models default to the synthetic planted grid."""
    grid = cfg.model in IMAGE_MODELS if cfg.data is None else is_grid_data(cfg.data)
    if cfg.model is None:
        cfg.model = "vit" if grid else "stgcn"
    image = cfg.model in IMAGE_MODELS
    if cfg.data is not None and image != grid:
        kind, need = ("graph", "grid (.npy [T, H, W])") if image else ("grid", "graph")
        raise ValueError(
            f"{cfg.data!r} is {kind} data but --model {cfg.model} needs {need} data; "
            f"models for {kind} data: {', '.join(IMAGE_MODELS if grid else GRAPH_MODELS)}"
        )
    if not image:
        if cfg.data is None:
            return synthetic_sensor_network(seed=cfg.seed)
        return load_graph_dataset(cfg.data)
    ds = synthetic_grid(patch=cfg.patch, seed=cfg.seed) if cfg.data is None else None
    ds = ds or load_grid_dataset(cfg.data)
    ds.patch_grid(cfg.patch)  # clear error now if the field is smaller than a patch
    return ds


@dataclass
class Sensors:
    """The sensors of a data set as a run sees them (graph nodes or image patches)."""

    num: int
    ids: list[str]
    planted: np.ndarray | None
    grid: PatchGrid | None  # image patches; None for graphs


def sensors_of(ds: GraphDataset | GridDataset, cfg: RunConfig) -> Sensors:
    if isinstance(ds, GridDataset):
        grid = ds.patch_grid(cfg.patch)
        return Sensors(grid.num_patches, grid.patch_ids(), ds.planted_for(cfg.patch), grid)
    return Sensors(ds.num_sensors, ds.sensor_ids, ds.planted, None)


def build_model(cfg: RunConfig, ds: GraphDataset | GridDataset) -> Any:
    """The backbone named by ``cfg.model`` for this data (weights from ``torch`` RNG)."""
    if isinstance(ds, GridDataset):
        return build_image_model(
            cfg.model,
            ds.patch_grid(cfg.patch),
            cfg.t_in,
            cfg.horizon,
            ds.num_channels,
            **model_kwargs(cfg),
        )
    return build_graph_model(
        cfg.model, ds.adjacency, cfg.t_in, cfg.horizon, ds.num_channels, **model_kwargs(cfg)
    )


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


def train_dense(cfg: RunConfig, ds, splits) -> tuple[Any, dict[str, Any]]:
    """Build the backbone and train it with every sensor on; returns (model, test metrics)."""
    torch.manual_seed(cfg.seed)
    dense = build_model(cfg, ds)
    fr = _fit(dense, splits, _train_config(cfg, "dense", 0.0), "dense", cfg.quiet)
    metrics = evaluate(dense, splits)
    metrics["train_seconds"] = fr.seconds
    return dense, metrics


def model_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """Backbone keyword arguments: ``--hidden`` (the ViT's ``dim``) and ``model_options``."""
    kwargs: dict[str, Any] = {}
    if cfg.model in GRAPH_MODELS:
        kwargs["hidden"] = 32 if cfg.hidden is None else cfg.hidden
    elif cfg.hidden is not None:
        kwargs["dim" if cfg.model == "vit" else "hidden"] = cfg.hidden
    return {**kwargs, **cfg.model_options}


def train_sparse(
    cfg: RunConfig, dense, ds: GraphDataset | GridDataset, splits, scheme: str, sparsity: float
) -> dict[str, Any]:
    """Fine-tune a copy of the dense model under ``scheme`` to ``sparsity``; evaluate the
    compacted model and time it against the dense one side by side.

    The compacted time includes gathering the active sensors' data from the full input
    (for images, ``ops.patchify_compact`` of the frames). A model that gives no speedup
    (``InputMasked``) reports ``speedup`` None and the plain time ratio as
    ``measured_ratio``. Returns ``{"metrics", "model", "sparsifier", "fit"}``.
    """
    model = copy.deepcopy(dense)
    fr = _fit(model, splits, _train_config(cfg, scheme, sparsity), scheme, cfg.quiet)
    sp = fr.sparsifier
    idx = sp.active_index()
    compact = model.compact(idx, sp.theta.detach()).eval()
    metrics = evaluate(compact, splits, active_index=idx)
    x_test, _ = splits.test.tensors()
    xb = x_test[: cfg.time_batch].contiguous()
    dense.eval()
    times = time_side_by_side(
        {"dense": lambda: dense(xb), "compact": lambda: compact(gather_active(compact, xb, idx))}
    )
    gives_speedup = getattr(compact, "gives_speedup", True)
    ratio = times["dense"] / times["compact"]
    metrics.update(
        infer_ms=times["compact"],
        dense_infer_ms=times["dense"],
        speedup=ratio if gives_speedup else None,
        gives_speedup=gives_speedup,
        num_active=int(idx.numel()),
        train_seconds=fr.seconds,
        swaps=sum(len(h.get("dropped", [])) for h in sp.history),
    )
    if not gives_speedup:
        metrics["measured_ratio"] = ratio
    planted = sensors_of(ds, cfg).planted
    if planted is not None:
        metrics["planted_recall"] = float(np.isin(planted, idx.numpy()).mean())
    return {"metrics": metrics, "model": model, "sparsifier": sp, "fit": fr}


def run(cfg: RunConfig) -> dict[str, Any]:
    """Run the main job and write the run directory; returns the metrics dict."""
    cfg.validate()
    t_start = time.perf_counter()
    ds = load_dataset(cfg)
    sensors = sensors_of(ds, cfg)
    sparsity = cfg.sparsity
    if sparsity is None:
        sparsity = ds.planted_sparsity if sensors.planted is not None else 0.5
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
        "num_sensors": sensors.num,
        "sparsity": sp.sparsity,
        "target_sparsity": sparsity,
        "num_active": int(idx.numel()),
        "active_sensors": [sensors.ids[i] for i in idx.tolist()],
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
    if sensors.grid is not None:
        g = sensors.grid
        metrics_json["grid"] = {
            "height": g.height,
            "width": g.width,
            "patch": g.patch,
            "rows": g.rows,
            "cols": g.cols,
            "pad_bottom": g.pad_h,
            "pad_right": g.pad_w,
        }
    if sensors.planted is not None:
        metrics_json["planted_recall"] = m["planted_recall"]
        metrics_json["planted_sensors"] = [sensors.ids[i] for i in sensors.planted.tolist()]
    _write_run_dir(out, cfg, ds, sensors, splits, main, metrics_json, model_kwargs(cfg), dense)
    metrics_json["out"] = str(out)
    return metrics_json


def _baselines(splits) -> dict[str, Any]:
    from .baselines import run_baselines

    return run_baselines(splits)


def _write_run_dir(
    out: Path, cfg, ds, sensors: Sensors, splits, main, metrics_json, kwargs, dense
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    sp, model = main["sparsifier"], main["model"]
    theta = sp.theta.detach().numpy()
    active = sp.active.numpy()
    write_json(out / "metrics.json", metrics_json)
    write_json(
        out / "mask.json",
        {
            "sensor_ids": sensors.ids,
            "theta": theta,
            "active": active,
            "active_index": np.nonzero(active)[0],
            "scheme": cfg.scheme,
            "sparsity": sp.sparsity,
        },
    )
    layout: dict[str, Any]
    if sensors.grid is None:
        layout = {"graph": ds.adjacency.state_dict()}
    else:
        g = sensors.grid
        layout = {"grid": {"height": g.height, "width": g.width, "patch": g.patch}}
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
            **layout,
            "sensor_ids": sensors.ids,
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
    title = (
        f"{ds.name}: {int(active.sum())} of {sensors.num} "
        f"{'patches' if sensors.grid else 'sensors'} kept "
        f"({cfg.scheme}, sparsity {sp.sparsity:.2f})"
    )
    if sensors.grid is None:
        draw_sensors(
            out / "sensors.png",
            ds.adjacency,
            active,
            coords=ds.coords,
            planted=ds.planted,
            theta=theta,
            geographic=ds.geographic,
            title=title,
        )
    else:
        draw_patches(
            out / "sensors.png",
            ds.values[-1, 0],
            sensors.grid,
            active,
            planted=sensors.planted,
            theta=theta,
            latitude=ds.latitude,
            longitude=ds.longitude,
            units=ds.units,
            title=title,
        )
    write_atomic(out / "report.md", render_report(metrics_json, sp.history))


def rebuild_model(
    checkpoint: dict[str, Any],
    ds: GraphDataset | GridDataset | None = None,
    state: str = "model_state",
):
    """The trained backbone of a run's checkpoint (``artifacts.load_checkpoint``), in eval
    mode. With ``ds``, first checks that the data fits it (channels, sensors, grid size)
    and raises one clear ``ValueError`` if not. ``state="dense_model_state"`` gives the
    run's dense model instead of the sparse one."""
    ck = checkpoint
    name, c = ck["model_name"], int(ck["num_channels"])
    if ds is not None:
        if ds.num_channels != c:
            raise ValueError(
                f"the data has {ds.num_channels} channel(s) but the checkpoint's model was "
                f"trained on {c}"
            )
        if "grid" in ck:
            if not isinstance(ds, GridDataset):
                raise ValueError("the checkpoint holds an image model but the data is a graph")
            want = (ck["grid"]["height"], ck["grid"]["width"])
            if (ds.height, ds.width) != want:
                raise ValueError(
                    f"the data's frames are {ds.height}x{ds.width} but the checkpoint's model "
                    f"was trained on {want[0]}x{want[1]}"
                )
        elif not isinstance(ds, GraphDataset) or ds.num_sensors != len(ck["sensor_ids"]):
            raise ValueError(
                f"the checkpoint's model has {len(ck['sensor_ids'])} graph sensors; the data "
                "does not match"
            )
    if "grid" in ck:
        grid = PatchGrid(**ck["grid"])
        model = build_image_model(name, grid, ck["t_in"], ck["t_out"], c, **ck["model_kwargs"])
    else:
        graph = CSRGraph.from_state_dict(ck["graph"])
        model = build_graph_model(name, graph, ck["t_in"], ck["t_out"], c, **ck["model_kwargs"])
    if state not in ck:
        raise ValueError(
            f"the checkpoint has no {state!r} (written by an older version): re-run `dynst run`"
        )
    model.load_state_dict(ck[state])
    return model.eval()


__all__ = ["RunConfig", "run", "format_table", "rebuild_model", "load_dataset", "build_model"]
