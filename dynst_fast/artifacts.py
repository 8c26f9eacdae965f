"""A finished run directory's contents, both ways: :func:`write_run` writes them (into
the staging directory, then publishes it whole, ``rundir``) and :func:`load_run` reads
them back as a light :class:`RunBundle` for export, serving and benchmarks.

==================  ==========================================================
``metrics.json``    the results (``records.RunMetrics``)
``mask.json``       sensor ids, theta, active flags, switch-on gains, in input
                    order (``records.MaskRecord``)
``checkpoint.pt``   models, sparsifier and optimizer state, sensor space,
                    normalisation, resolved configuration: everything
                    :func:`rebuild_model` rebuilds the models from
``config.toml``     the resolved configuration (``dynst run --config`` it)
``sensors.png``     the map of kept and dropped sensors (shaded by switch-on gain)
``sensors_error.png`` the same map, dropped sensors shaded by their test MAE
``report.md``       a short human report
==================  ==========================================================

Checkpoints hold only tensors and plain Python values and are read with
``torch.load(..., weights_only=True)``: loading a run never unpickles arbitrary objects.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from . import __version__
from .config import RunConfig
from .files import save_checkpoint, write_atomic, write_json
from .models import GatedBackbone, backbone, build_backbone
from .records import MaskRecord, RunMetrics
from .rundir import (
    CHECKPOINT,
    CONFIG,
    ERROR_PICTURE,
    MASK,
    METRICS,
    PICTURE,
    PROGRESS,
    REPORT,
    final_dir,
    publish,
    staging_dir,
)
from .sensors import SensorSpace, space_from_state

if TYPE_CHECKING:
    from .data import WindowSplits
    from .stages import Trained

FORMAT = 2


# ---------------------------------------------------------------- checkpoints
def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint file, read with ``weights_only=True`` (one clear ``ValueError`` for a
    file that is not one of ours)."""
    p = Path(path)
    try:
        with warnings.catch_warnings():  # torch's advice on foreign pickles is not ours
            warnings.simplefilter("ignore")
            ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # a foreign or broken file fails in many ways inside torch.load
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in first:  # torch's text advises turning its safety off: not shown
            first = "it holds objects other than tensors and plain data, which are not loaded"
        raise ValueError(f"{p} is not a readable dynst_fast checkpoint ({first})") from None
    if not isinstance(ck, dict) or "format" not in ck:
        raise ValueError(f"{p} is not a dynst_fast checkpoint")
    if ck["format"] != FORMAT:
        raise ValueError(
            f"{p} has checkpoint format {ck['format']!r}; this dynst_fast {__version__} reads "
            f"format {FORMAT}: re-run `dynst run` to write it"
        )
    return ck


# The fields of a finished run's checkpoint and their types, checked on load.
CHECKPOINT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "config": dict,
    "num_channels": int,
    "t_in": int,
    "t_out": int,
    "sensor_space": dict,
    "model": dict,
    "mean": Tensor,
    "std": Tensor,
    "model_state": dict,
    "dense_model_state": dict,
    "sparsifier": dict,
}


def check_checkpoint(ck: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """``ck`` if it has every field of a finished run's checkpoint with its type, else
    one ``ValueError`` naming the file and the field."""
    for name, kind in CHECKPOINT_FIELDS.items():
        if name not in ck:
            raise ValueError(f"{path} is damaged: it has no {name!r} field")
        v = ck[name]
        if isinstance(v, bool) or not isinstance(v, kind):
            raise ValueError(f"{path} is damaged: field {name!r} is a {type(v).__name__}")
    m = ck["model"]
    if not isinstance(m.get("name"), str) or not isinstance(m.get("options"), dict):
        raise ValueError(f"{path} is damaged: field 'model' lacks its name or options")
    return ck


def load_checkpoint(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint of a finished run directory (or a checkpoint file), checked."""
    p = Path(run_dir)
    if not p.is_file() and not (p / CHECKPOINT).exists():
        final = final_dir(p)
        if (staging_dir(final) / PROGRESS).exists():
            raise FileNotFoundError(
                f"{final} holds an unfinished run: continue it with `dynst run --resume {final}`"
            )
    if p.is_dir():
        p = p / CHECKPOINT
    if not p.exists():
        raise FileNotFoundError(f"no checkpoint at {p}: is this a `dynst run` directory?")
    return check_checkpoint(read_checkpoint(p), p)


def write_config(directory: str | os.PathLike, config: RunConfig) -> None:
    """``config.toml`` in ``directory``: the resolved configuration (written to the
    staging directory when a run starts, so that an unfinished run has it too)."""
    write_atomic(Path(directory) / CONFIG, config.to_toml())


# ---------------------------------------------------------------- writing a run
@dataclass
class RunRecord:
    """Everything a finished run writes."""

    config: RunConfig  # resolved
    dataset: str
    units: str
    num_channels: int
    space: SensorSpace
    mean: np.ndarray
    std: np.ndarray
    dense: Trained
    main: Trained  # the main sparse scheme
    metrics: RunMetrics
    mask: MaskRecord
    report: str  # report.md


def write_run(out: str | os.PathLike, record: RunRecord) -> None:
    """Write the finished run into its staging directory, drop the training state there,
    and publish it as the run directory ``out`` (``rundir.publish``)."""
    final = Path(out)
    out = staging_dir(final)
    out.mkdir(parents=True, exist_ok=True)
    sp, space, mask = record.main.fit.sparsifier, record.space, record.mask
    write_json(out / METRICS, record.metrics.to_dict())
    write_json(out / MASK, mask.to_dict())
    cfg = record.config
    save_checkpoint(
        out / CHECKPOINT,
        {
            "format": FORMAT,
            "version": __version__,
            "config": cfg.to_dict(),
            "dataset": record.dataset,
            "units": record.units,
            "num_channels": record.num_channels,
            "t_in": cfg.data.t_in,
            "t_out": cfg.data.horizon,
            "sensor_space": space.state(),
            "model": {"name": cfg.model.name, "options": dict(cfg.model.options)},
            "mean": torch.as_tensor(record.mean),
            "std": torch.as_tensor(record.std),
            "model_state": record.main.model.state_dict(),
            "dense_model_state": record.dense.model.state_dict(),
            "sparsifier": sp.state_dict(),
            "optimizer_state": record.main.fit.optimizer_state,
        },
    )
    write_config(out, cfg)
    active = np.asarray(mask.active, dtype=bool)
    title = (
        f"{record.dataset}: {int(active.sum())} of {space.num_sensors} {space.noun} kept "
        f"({mask.scheme}, sparsity {mask.sparsity:.2f})"
    )
    gain = None
    if mask.switch_on_gain is not None:
        gain = np.array([np.nan if g is None else g for g in mask.switch_on_gain], np.float64)
    theta = np.asarray(mask.theta, dtype=np.float32)
    space.picture(out / PICTURE, active, theta, title, gain=gain)
    per_sensor = record.metrics.main.scores.get("mae_per_sensor")
    if per_sensor is not None:
        error = np.array([np.nan if e is None else e for e in per_sensor], np.float64)
        units = f" ({record.units})" if record.units else ""
        space.picture(out / ERROR_PICTURE, active, theta, f"{title}: test MAE of the dropped",
                      gain=np.where(active, np.nan, error),
                      gain_label=f"test MAE{units}, switched-off sensors")  # fmt: skip
    write_atomic(out / REPORT, record.report)
    publish(out, final)
    (final / PROGRESS).unlink(missing_ok=True)  # after: until then the run can resume


# ---------------------------------------------------------------- loading a run
def rebuild_model(
    checkpoint: dict[str, Any], data: Any = None, state: str = "model_state"
) -> GatedBackbone:
    """The trained backbone of a run's checkpoint (:func:`load_checkpoint`), in eval mode,
    built through the registry. With ``data`` (a data set), first checks that the data
    fits it (channels, sensors, field size) and raises one clear ``ValueError`` if not.
    ``state="dense_model_state"`` gives the run's dense model instead of the sparse one."""
    ck = checkpoint
    c = int(ck["num_channels"])
    space = space_from_state(ck["sensor_space"])
    if data is not None:
        if data.num_channels != c:
            raise ValueError(
                f"the data has {data.num_channels} channel(s) but the checkpoint's model was "
                f"trained on {c}"
            )
        patch = RunConfig.from_dict(ck["config"]).data.patch
        space.check_matches(data.sensor_space(patch))
    m = ck["model"]
    options = backbone(m["name"]).saved_options(m["options"])
    model = build_backbone(m["name"], space, int(ck["t_in"]), int(ck["t_out"]), c, options)
    if state not in ck:
        raise ValueError(f"the checkpoint has no {state!r}: re-run `dynst run`")
    model.load_state_dict(ck[state])
    return model.eval()


@dataclass
class RunBundle:
    """What a finished run directory holds, rebuilt for export, serving and benchmarks:
    the checkpoint, its configuration and sensor space, the sparse and dense models, the
    active set and theta of ``mask.json``, and the data's windows (with their
    normalisation). No sparsifier and no training code."""

    checkpoint: dict[str, Any]
    config: RunConfig
    space: SensorSpace  # the checkpoint's sensor space
    model: GatedBackbone  # the sparse run's gated model
    dense: GatedBackbone  # the run's dense model
    active_index: Tensor  # [K] int64, ascending (mask.json order)
    theta: Tensor  # [N]
    splits: WindowSplits  # of the run's data set
    run_dir: Path
    missing_value: float | None = None  # readings equal to it are missing (--missing-value)

    @property
    def sensor_ids(self) -> list[str]:
        return self.space.ids

    @property
    def mean(self) -> Tensor:
        """``[N, C]`` or the grid's shape: the training mean, float32 (original units)."""
        return self.checkpoint["mean"].to(torch.float32)

    @property
    def std(self) -> Tensor:
        return self.checkpoint["std"].to(torch.float32)


def load_run(run_dir: str | os.PathLike, data: str | None = None) -> RunBundle:
    """Rebuild a finished run directory's models, active set and data windows.

    ``data`` overrides the data set path recorded in the run (for moved data).
    """
    from .data import load_dataset, make_windows
    from .models import backbone

    ck = load_checkpoint(run_dir)
    run_dir = Path(run_dir)
    mask = MaskRecord.read(run_dir)
    cfg = RunConfig.from_dict(ck["config"], f"{run_dir}/{CHECKPOINT}")
    path = data if data is not None else cfg.data.path
    kind = backbone(cfg.model.name).space
    options = cfg.data.read_options()
    try:
        ds = load_dataset(path, kind=kind, seed=cfg.seed, patch=cfg.data.patch, options=options)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"{exc} (the run's data is needed to check the model on test windows; "
            "pass --data to point at it)"
        ) from exc
    try:
        model = rebuild_model(ck, ds)
        dense = rebuild_model(ck, state="dense_model_state")
    except (KeyError, TypeError, RuntimeError, AttributeError, IndexError) as exc:
        first = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ValueError(
            f"{run_dir}: its {CHECKPOINT} does not rebuild the run's models ({first}): was "
            "it edited or written by another version?"
        ) from None
    if mask.sensor_ids != model.space.ids:
        raise ValueError(f"{run_dir}: its {MASK} and {CHECKPOINT} name different sensors")
    if not any(mask.active):
        raise ValueError(f"{run_dir}: its {MASK} has no active sensor")
    return RunBundle(
        checkpoint=ck,
        config=cfg,
        space=model.space,
        model=model,
        dense=dense,
        active_index=torch.as_tensor(mask.active_index, dtype=torch.int64),
        theta=torch.as_tensor(mask.theta, dtype=torch.float32),
        splits=make_windows(
            ds, int(ck["t_in"]), int(ck["t_out"]), calendar=model.space.calendar is not None
        ),  # fmt: skip
        run_dir=run_dir,
        missing_value=None if getattr(ds, "missing", None) is None else ds.missing.value,
    )
