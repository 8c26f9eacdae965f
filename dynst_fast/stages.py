"""The trainings of a run, in order, and their progress state (``progress.pt``).

:class:`Stages` trains a :class:`~dynst_fast.plan.RunPlan`'s stages (the dense model,
then a copy of it under each sparse scheme), each with the sparsifier its stage builds,
and after every epoch saves what is done and the running stage's state to the staging
directory (``records.ProgressRecord``), from which ``dynst run --resume`` continues
bit-identically on CPU. Every rank of a job runs the same sequence; only rank 0 saves.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from . import distributed
from .artifacts import read_checkpoint
from .config import RunConfig
from .files import save_checkpoint
from .models import GatedBackbone, backbone
from .plan import RunPlan, Stage
from .records import ProgressRecord, RecordError, StageResult
from .rundir import CONFIG, PROGRESS, final_dir, is_run_dir, staging_dir
from .sparsifier import Sparsifier
from .train import FitResult, TrainingDiverged, fit


@dataclass
class Trained:
    """One training's outcome: the trained gated model and what ``fit`` returned."""

    scheme: str
    model: GatedBackbone
    fit: FitResult


class ProgressBar:
    """One tqdm bar per training, showing phase, round and sparsity."""

    def __init__(self, label: str, total: int, done: int, quiet: bool) -> None:
        self.bar = tqdm(total=total, initial=done, desc=label, unit="epoch", disable=quiet)

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
        post["steps/s"] = f"{info['steps_per_s']:.3g}"
        post["windows/s"] = f"{info['windows_per_s']:.3g}"
        self.bar.set_postfix(post)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


class Stages:
    """The trainings of ``plan``, restored from ``progress`` where they finished (or
    were interrupted), their state saved after every epoch when ``checkpoint``."""

    def __init__(
        self, plan: RunPlan, progress: ProgressRecord | None = None, checkpoint: bool = True
    ) -> None:
        self.plan, self.checkpoint = plan, checkpoint
        self.progress = progress or ProgressRecord({}, world_size=distributed.world_size())
        self.progress.config = plan.config.to_dict()

    def run(self) -> tuple[Trained, dict[str, Trained]]:
        """The dense model, then every sparse scheme of the plan fine-tuned from it."""
        dense = self.dense()
        return dense, {name: self.sparse(stage, dense) for name, stage in self.plan.stages.items()}

    def dense(self) -> Trained:
        """Train the plan's backbone with every sensor on."""
        return self.train(self.plan.dense, self.plan.build_model())

    def sparse(self, stage: Stage, dense: Trained) -> Trained:
        """Fine-tune a copy of the dense model under ``stage``'s scheme (the dense model
        its teacher, with ``--distill``)."""
        teacher = dense.model if self.plan.config.train.distill > 0 else None
        return self.train(stage, copy.deepcopy(dense.model), teacher)

    def train(
        self, stage: Stage, model: GatedBackbone, teacher: GatedBackbone | None = None
    ) -> Trained:
        """Train ``model`` (in place) under ``stage``, or restore it if already trained."""
        cfg, name = self.plan.config, stage.name
        if name in self.progress.done:
            rec = self.progress.done[name]
            model.load_state_dict(rec.model_state)
            return Trained(name, model, _fit_result(rec))
        resume = self.progress.resume_state(name)
        bar = ProgressBar(name, cfg.train.epochs, resume["epoch"] if resume else 0, cfg.quiet)
        sparsifier = stage.sparsifier(saved=resume["sparsifier"] if resume else None)
        try:
            result = fit(
                model,
                self.plan.splits,
                cfg.train,
                sparsifier,
                seed=cfg.seed,
                progress=bar,
                on_epoch=(lambda st: self.save({"stage": name, "state": st}))
                if self.checkpoint
                else None,
                resume=resume,
                teacher=teacher,
            )
        except TrainingDiverged as exc:
            raise TrainingDiverged(f"the {name} model's {exc}") from None
        finally:
            bar.close()
        self.progress.done[name] = StageResult(
            model_state=model.state_dict(),
            sparsifier=result.sparsifier.state_dict(),
            best_val_mae=result.best_val_mae,
            best_epoch=result.best_epoch,
            losses=result.losses,
            val_maes=result.val_maes,
            seconds=result.seconds,
            optimizer_state=result.optimizer_state,
        )
        self.progress.current = None
        return Trained(name, model, result)

    def save(self, current: dict[str, Any] | None) -> None:
        """``progress.pt`` in the staging directory: what is done and ``current``."""
        self.progress.current = current
        save_progress(self.plan.out, self.progress)


def _fit_result(rec: StageResult) -> FitResult:
    return FitResult(
        sparsifier=Sparsifier.from_state_dict(rec.sparsifier),
        best_val_mae=rec.best_val_mae,
        best_epoch=rec.best_epoch,
        losses=list(rec.losses),
        val_maes=list(rec.val_maes),
        seconds=rec.seconds,
        optimizer_state=rec.optimizer_state,
    )


def save_progress(out: str | os.PathLike, progress: ProgressRecord) -> None:
    """The training state of the run ``out``, in its staging directory (atomic)."""
    save_checkpoint(staging_dir(out) / PROGRESS, progress.to_dict())


def load_progress(run_dir: str | os.PathLike) -> tuple[RunConfig, ProgressRecord]:
    """``(resolved config, progress)`` of the interrupted run of ``run_dir`` (the run
    directory or its staging directory), checked against this job's number of
    processes; the config's ``out`` is the run directory."""
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
    source = str(stage / PROGRESS)
    progress = ProgressRecord.from_dict(read_checkpoint(stage / PROGRESS), source)
    try:
        cfg = RunConfig.from_dict(progress.config, source)
    except (KeyError, TypeError, AttributeError) as exc:
        raise RecordError(f"{source} is damaged (field {exc}): start the run afresh") from None
    progress.check_world(distributed.world_size())
    if cfg.model.name is not None:  # options the run predates keep their old behaviour
        options = backbone(cfg.model.name).saved_options(cfg.model.options)
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, options=options))
    return dataclasses.replace(cfg, out=str(d)), progress
