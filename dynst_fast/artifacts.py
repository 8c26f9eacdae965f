"""The run directory's schema, both ways: writing a run and loading it back.

A finished run directory holds

==================  ==========================================================
``metrics.json``    the results (``run.py`` assembles them)
``mask.json``       sensor ids, theta, active flags, in input order
``checkpoint.pt``   models, sparsifier and optimizer state, sensor space,
                    normalisation, resolved configuration: everything
                    :func:`load_run` rebuilds the models from
``config.toml``     the resolved configuration (``dynst run --config`` it)
``sensors.png``     the map of kept and dropped sensors
``report.md``       a short human report
==================  ==========================================================

A run is staged: while it trains, everything goes to ``.<name>.partial`` beside the run
directory (:func:`staging_dir`), which holds ``config.toml`` and ``progress.pt``, the
training state after the last finished epoch, from which ``dynst run --resume``
continues. The finished files are written there too, ``progress.pt`` is dropped, and
the whole directory is renamed onto the run directory (:func:`publish`), so a reader
never sees a mix of two runs, nor a directory that looks finished and is not. Every
file is written atomically (a temporary file, then a rename). Checkpoints hold
only tensors and plain Python values, and are read with ``torch.load(...,
weights_only=True)``: loading a run never unpickles arbitrary objects.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import __version__
from .config import RunConfig
from .models import GatedBackbone, build_backbone
from .sensors import SensorSpace, space_from_state

FORMAT = 2
CHECKPOINT, PROGRESS = "checkpoint.pt", "progress.pt"
CONFIG, METRICS, MASK, PICTURE, REPORT = (
    "config.toml",
    "metrics.json",
    "mask.json",
    "sensors.png",
    "report.md",
)


# ---------------------------------------------------------------- atomic files
def _honour_umask(fd: int) -> None:
    """``mkstemp`` creates files 0600 whatever the umask: give them the mode a plain
    ``open`` would (0666 less the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write to a temporary file in the same directory, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    _honour_umask(fd)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (Tensor, np.ndarray)):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None  # strict JSON: no NaN / Infinity
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_atomic(path, json.dumps(_jsonable(obj), indent=1, allow_nan=False) + "\n")


# ---------------------------------------------------------------- the staged run directory
def _absolute(path: str | os.PathLike) -> Path:
    """``path`` made absolute and normalised (``runs/x/..`` is ``runs``), links kept."""
    return Path(os.path.abspath(path))


def staging_dir(out: str | os.PathLike) -> Path:
    """Where the run directory ``out`` is staged while it trains: ``.<name>.partial``."""
    out = _absolute(out)
    return out.parent / f".{out.name}.partial"


def final_dir(path: str | os.PathLike) -> Path:
    """The run directory of ``path``: itself, or the run a staging directory stages."""
    p = _absolute(path)
    if p.name.startswith(".") and p.name.endswith(".partial") and len(p.name) > 9:
        return p.parent / p.name[1:-8]
    return p


def is_run_dir(path: str | os.PathLike) -> bool:
    """Does ``path`` hold a ``dynst run`` directory (a finished one, or an unfinished one
    of the layout before staging, with its ``progress.pt`` inside)?"""
    p = Path(path)
    return (p / CONFIG).is_file() and any(
        (p / f).is_file() for f in (CHECKPOINT, METRICS, PROGRESS)
    )


def check_out(out: str | os.PathLike) -> None:
    """Refuse (one ``ValueError`` naming --out) a run directory that cannot be written: a
    file system root, a symbolic link, an existing file, a directory that holds something
    other than a run (replacing it would delete it), or a place this process cannot
    write to."""
    given, out = out, _absolute(out)
    if out.parent == out:
        raise ValueError(f"--out {given}: a run directory cannot be a file system root")
    if out.is_symlink():
        raise ValueError(f"--out {given} is a symbolic link: name the directory itself")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {given} is an existing file: name a directory")
    if out.is_dir() and any(out.iterdir()) and not is_run_dir(out):
        raise ValueError(
            f"--out {given} is a directory that is not a dynst run directory; a run "
            "replaces its directory as a whole, so name a new or empty one"
        )
    _check_writable(out, "--out")


def _check_writable(path: Path, flag: str) -> None:
    """Can ``path`` be created? Probed by creating and removing a directory in its
    nearest existing ancestor (permission bits alone miss read-only mounts and root)."""
    parent = _absolute(path).parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    try:
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".dynst-probe-"))
    except OSError as exc:
        raise ValueError(
            f"{flag} {path}: cannot write there ({parent}: {exc.strerror or exc})"
        ) from None


def check_output_file(path: str | os.PathLike, flag: str = "--out") -> None:
    """Refuse (one ``ValueError`` naming ``flag``) an output file that is a directory or
    whose directory cannot be created or written."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{flag} {p} is a directory: name a file")
    _check_writable(p, flag)


_LOCKS: dict[Path, Any] = {}  # staging directory -> the open lock file this process holds


def _lock(stage: Path, out: str | os.PathLike) -> None:
    """Hold an exclusive lock on ``stage`` for this process, so that two runs never write
    one run directory (``ValueError`` if another process holds it)."""
    import fcntl

    if stage in _LOCKS:
        return
    f = open(stage / ".lock", "w")  # noqa: SIM115 - held until publish
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise ValueError(f"--out {out}: another dynst run is writing this run directory") from None
    _LOCKS[stage] = f


def _unlock(stage: Path) -> None:
    f = _LOCKS.pop(stage, None)
    if f is not None:
        (stage / ".lock").unlink(missing_ok=True)
        f.close()


def begin_run(out: str | os.PathLike, resume: bool = False) -> Path:
    """The locked staging directory of ``out``: a fresh one (an older unfinished one is
    discarded), or with ``resume`` the existing one; ``ValueError`` naming --out if it
    cannot be written or another run holds it."""
    check_out(out)
    stage = staging_dir(out)
    try:
        if resume:
            _lock(stage, out)
            return stage
        if stage.exists():
            _lock(stage, out)  # not while another run trains there
            _unlock(stage)
            if (stage / PROGRESS).exists():
                print(
                    f"dynst run: note: starting afresh; discarding the unfinished run in "
                    f"{stage} (`--resume {out}` would have continued it)",
                    file=sys.stderr,
                )
            shutil.rmtree(stage)
        stage.mkdir(parents=True)
        _lock(stage, out)
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    return stage


def publish(stage: str | os.PathLike, out: str | os.PathLike) -> None:
    """Rename the finished staging directory onto ``out``, replacing an older run there
    as a whole: it is renamed aside first, renamed back if the new run cannot take its
    place, and deleted once the new run is in place."""
    stage, out = _absolute(stage), _absolute(out)
    check_out(out)  # what is there now, not what was there when the run started
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
    _unlock(stage)
    try:
        os.replace(stage, out)
    except BaseException:
        if old is not None and not out.exists():
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """``torch.save`` through a temporary file (atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    _honour_umask(fd)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint file, read with ``weights_only=True`` (one clear ``ValueError`` for a
    file that is not one of ours)."""
    p = Path(path)
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # a foreign or broken file fails in many ways inside torch.load
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
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


# ---------------------------------------------------------------- training state
def save_progress(out: str | os.PathLike, config: RunConfig, progress: dict[str, Any]) -> None:
    """The training state after an epoch (finished stages and the running one), in the
    staging directory of ``out``."""
    save_checkpoint(
        staging_dir(out) / PROGRESS,
        {"format": FORMAT, "version": __version__, "config": config.to_dict(), **progress},
    )


def load_progress(run_dir: str | os.PathLike) -> tuple[RunConfig, dict[str, Any]]:
    """``(resolved config, progress)`` of the interrupted run of ``run_dir`` (the run
    directory or its staging directory); the config's ``out`` is the run directory."""
    d = final_dir(run_dir)
    stage = staging_dir(d)
    if not (stage / PROGRESS).exists():
        if (d / PROGRESS).exists():
            raise ValueError(
                f"{d} holds training state in the layout of an older dynst_fast: move "
                f"{d / PROGRESS} and {d / CONFIG} into {stage} and resume again"
            )
        if is_run_dir(d):
            raise ValueError(f"{d} holds a finished run: there is nothing to resume")
        if not d.is_dir() and not stage.is_dir():
            raise FileNotFoundError(f"no run directory at {d}")
        raise FileNotFoundError(f"{d} holds no training state ({PROGRESS}) to resume from")
    ck = read_checkpoint(stage / PROGRESS)
    try:
        cfg = RunConfig.from_dict(ck["config"], str(stage / PROGRESS))
        if not isinstance(ck.get("done"), dict):
            raise KeyError("done")
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(
            f"{stage / PROGRESS} is damaged (field {exc}): start the run afresh"
        ) from None
    return dataclasses.replace(cfg, out=str(d)), ck


def write_config(directory: str | os.PathLike, config: RunConfig) -> None:
    """``config.toml`` in ``directory``: the resolved configuration (written to the
    staging directory when a run starts, so that an unfinished run has it too)."""
    write_atomic(Path(directory) / CONFIG, config.to_toml())


# ---------------------------------------------------------------- writing a run
@dataclass
class Trained:
    """One training's outcome: the trained gated model and what ``fit`` returned."""

    scheme: str
    model: GatedBackbone
    fit: Any  # train.FitResult


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
    metrics: dict[str, Any]  # metrics.json
    report: str  # report.md
    switch_on: np.ndarray | None = None  # [N] estimated MAE decrease of switching on


def write_run(out: str | os.PathLike, record: RunRecord) -> None:
    """Write the finished run into its staging directory, drop the training state there,
    and publish it as the run directory ``out`` (see the module docstring)."""
    final = Path(out)
    out = staging_dir(final)
    out.mkdir(parents=True, exist_ok=True)
    sp, space = record.main.fit.sparsifier, record.space
    theta = sp.theta.detach().cpu()
    active = sp.active.cpu()
    write_json(out / METRICS, record.metrics)
    write_json(
        out / MASK,
        {
            "sensor_ids": space.ids,
            "theta": theta,
            "active": active,
            "active_index": torch.nonzero(active).reshape(-1),
            "scheme": record.main.scheme,
            "sparsity": sp.sparsity,
            "constraints": record.metrics.get("constraints"),
            **switch_on_fields(record.switch_on, active.numpy(), record.units),
        },
    )
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
    noun = space.noun
    title = (
        f"{record.dataset}: {int(active.sum())} of {space.num_sensors} {noun} kept "
        f"({record.main.scheme}, sparsity {sp.sparsity:.2f})"
    )
    gain = None if record.switch_on is None else np.where(active.numpy(), np.nan, record.switch_on)
    space.picture(out / PICTURE, active.numpy(), theta.numpy(), title, gain=gain)
    write_atomic(out / REPORT, record.report)
    publish(out, final)
    (final / PROGRESS).unlink(missing_ok=True)  # after: until then the run can resume


def switch_on_fields(gain: np.ndarray | None, active: np.ndarray, units: str) -> dict[str, Any]:
    """``mask.json``'s switch-on gains: per sensor (null for the active ones), what they
    mean, and the switched-off sensors ranked by them."""
    if gain is None:
        return {"switch_on_gain": None}
    off = np.flatnonzero(~active & ~np.isnan(gain))  # NaN: forbidden, not a candidate
    ranked = off[np.argsort(-gain[off], kind="stable")]
    return {
        "switch_on_gain": [
            None if a or np.isnan(g) else float(g) for a, g in zip(active, gain, strict=True)
        ],
        "switch_on_gain_units": units,
        "switch_on_gain_method": (
            "estimated whole-field MAE decrease of switching the sensor back on: "
            "mean |dL/dg| over the last mask phase x mean |theta| of the active sensors x "
            "mean(std) (first order)"
        ),
        "switch_on_ranking": ranked.tolist(),
    }


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
    model = build_backbone(m["name"], space, int(ck["t_in"]), int(ck["t_out"]), c, m["options"])
    if state not in ck:
        raise ValueError(f"the checkpoint has no {state!r}: re-run `dynst run`")
    model.load_state_dict(ck[state])
    return model.eval()


@dataclass
class RunBundle:
    """What a run directory holds, rebuilt: models, sparsifier state, data windows."""

    checkpoint: dict[str, Any]
    config: RunConfig
    space: SensorSpace  # the checkpoint's sensor space
    model: GatedBackbone  # the sparse run's gated model
    dense: GatedBackbone  # the run's dense model
    active_index: Tensor  # [K] int64, ascending (mask.json order)
    theta: Tensor  # [N]
    splits: Any  # WindowSplits of the run's data set

    @property
    def sensor_ids(self) -> list[str]:
        return self.space.ids


def load_run(run_dir: str | os.PathLike, data: str | None = None) -> RunBundle:
    """Rebuild a finished run directory's models and data windows.

    ``data`` overrides the data set path recorded in the run (for moved data).
    """
    from .data import load_dataset, make_windows
    from .models import backbone
    from .sparsifier import Sparsifier

    ck = load_checkpoint(run_dir)
    cfg = RunConfig.from_dict(ck["config"], f"{run_dir}/{CHECKPOINT}")
    path = data if data is not None else cfg.data.path
    kind = backbone(cfg.model.name).space
    try:
        ds = load_dataset(path, kind=kind, seed=cfg.seed, patch=cfg.data.patch)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"{exc} (the run's data is needed to check the model on test windows; "
            "pass --data to point at it)"
        ) from exc
    try:
        model = rebuild_model(ck, ds)
        dense = rebuild_model(ck, state="dense_model_state")
        sp = Sparsifier.from_state_dict(ck["sparsifier"])
    except (KeyError, TypeError, RuntimeError, AttributeError, IndexError) as exc:
        first = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ValueError(
            f"{run_dir}: its {CHECKPOINT} does not rebuild the run's models ({first}): was "
            "it edited or written by another version?"
        ) from None
    return RunBundle(
        checkpoint=ck,
        config=cfg,
        space=model.space,
        model=model,
        dense=dense,
        active_index=sp.active_index(),
        theta=sp.theta.detach().clone(),
        splits=make_windows(ds, int(ck["t_in"]), int(ck["t_out"])),
    )
