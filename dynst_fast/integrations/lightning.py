"""DynST in a PyTorch Lightning training loop: a callback that owns the sparsifier.

The module keeps a gated backbone (``self.model``) and passes the callback's gate to it;
that is all it changes::

    class Forecaster(L.LightningModule):
        def __init__(self, model):
            super().__init__()
            self.model = model                                   # a GatedBackbone

        def training_step(self, batch, batch_idx):
            x, y = batch
            return (self.model(x, self.dynst.gate()) - y).abs().mean()   # the gate

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=2e-3)

    dynst = DynSTCallback(ScheduleConfig(sparsity=0.5))
    L.Trainer(max_epochs=30, callbacks=[dynst]).fit(Forecaster(model), loader)
    deployed = dynst.compact()                                   # the compacted model

The callback builds the :class:`~dynst_fast.sparsifier.Sparsifier` when fitting starts
(from a step :class:`~dynst_fast.schedule.Schedule`, or from a ``ScheduleConfig`` spread
over ``trainer.estimated_stepping_batches``), drops the network's gradients in mask
phases so that the optimizer leaves the weights alone (Eq. 3), calls ``step()`` after
every optimizer step, and saves its whole state in Lightning checkpoints, from which it
resumes exactly. Gradient accumulation is refused: the schedule counts optimizer steps
and the sparsifier reads one batch's gate gradient per step.
"""

from __future__ import annotations

import copy
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from ..config import ScheduleConfig, prune_signal
from ..constraints import Constraints
from ..schedule import Schedule
from ..sparsifier import Sparsifier


class DynSTCallback(pl.Callback):
    """Learn which sensors a Lightning module's gated backbone can do without.

    Args:
        schedule: a step ``Schedule`` (its ``num_sensors`` must be the model's), or a
            ``ScheduleConfig`` whose fractions are spread over the fit's optimizer steps.
        sparsity, scheme: override the ``ScheduleConfig``'s.
        attr: the module attribute that holds the gated backbone.
        theta_lr, l1, seed: the sparsifier's (default: the ``ScheduleConfig``'s).
        constraints: keep / forbid / cost + budget (``dynst_fast.constraints``), or None.
        order: a fixed-set scheme's sensor order (``dynst_fast.selection.qr_order``,
            ``greedy_order``, ``mask_order``); the ``ScheduleConfig``'s ``prune_by`` is used.
    """

    def __init__(
        self,
        schedule: Schedule | ScheduleConfig,
        *,
        sparsity: float | None = None,
        scheme: str | None = None,
        attr: str = "model",
        theta_lr: float | None = None,
        l1: float | None = None,
        seed: int = 0,
        constraints: Constraints | None = None,
        order: Tensor | None = None,
    ) -> None:
        if not isinstance(schedule, (Schedule, ScheduleConfig)):
            raise TypeError(
                f"DynSTCallback: schedule must be a Schedule or a ScheduleConfig, "
                f"got {type(schedule).__name__}"
            )
        cfg = schedule if isinstance(schedule, ScheduleConfig) else ScheduleConfig()
        self.schedule, self.sparsity, self.scheme, self.attr = schedule, sparsity, scheme, attr
        self.theta_lr = cfg.theta_lr if theta_lr is None else theta_lr
        self.l1 = cfg.l1 if l1 is None else l1
        self.seed, self.constraints = seed, constraints
        self.prune_by, self.order = cfg.prune_by, order
        self.sparsifier: Sparsifier | None = None
        self._module: pl.LightningModule | None = None
        self._pending: dict[str, Any] | None = None

    # ---------------------------------------------------------------- what the module calls
    def gate(self) -> Tensor:
        """The gate ``[N]`` to pass to the backbone: tracked while training (its gradient
        is the sparsifier's signal), detached otherwise."""
        if self.sparsifier is None:
            raise RuntimeError("DynSTCallback.gate(): the trainer has not started yet")
        g = self.sparsifier.gate()
        training = self._module is not None and self._module.training
        return g if training and torch.is_grad_enabled() else g.detach()

    def compact(self) -> torch.nn.Module:
        """The compacted model of the module's backbone on the current active set."""
        if self.sparsifier is None or self._module is None:
            raise RuntimeError("DynSTCallback.compact(): nothing was trained yet")
        sp = self.sparsifier
        return self._backbone(self._module).compact(sp.active_index(), sp.theta.detach())

    # ---------------------------------------------------------------- building
    def _backbone(self, pl_module: pl.LightningModule) -> torch.nn.Module:
        model = getattr(pl_module, self.attr, None)
        if model is None or not hasattr(model, "num_sensors"):
            raise TypeError(
                f"DynSTCallback: the module's {self.attr!r} must be a gated backbone "
                f"(with num_sensors), got {type(model).__name__}"
            )
        return model

    def _build(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        n = self._backbone(pl_module).num_sensors
        dev = pl_module.device
        if self._pending is not None:
            sp = Sparsifier.from_state_dict(self._pending, device=str(dev))
            self._pending = None
        else:
            if isinstance(self.schedule, Schedule):
                sched = self.schedule
            else:
                total = int(trainer.estimated_stepping_batches)
                sched = Schedule.from_config(
                    self.schedule, n, total, scheme=self.scheme, sparsity=self.sparsity
                )
            sp = Sparsifier(
                sched,
                theta_lr=self.theta_lr,
                l1=self.l1,
                seed=self.seed,
                device=dev,
                constraints=self.constraints,
                order=self.order,
                prune_by=prune_signal(self.prune_by, self._backbone(pl_module).space.kind),
            )
        if sp.num_sensors != n:
            raise ValueError(
                f"DynSTCallback: the schedule is for {sp.num_sensors} sensors but the "
                f"module's {self.attr!r} has {n}"
            )
        self.sparsifier = sp

    def _attach(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._module = pl_module
        pl_module.dynst = self
        if self.sparsifier is None or self._pending is not None:
            self._build(trainer, pl_module)

    # ---------------------------------------------------------------- hooks
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.accumulate_grad_batches != 1:
            raise ValueError(
                "DynSTCallback: accumulate_grad_batches must be 1 (the schedule counts "
                f"optimizer steps), got {trainer.accumulate_grad_batches}"
            )
        self._attach(trainer, pl_module)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._attach(trainer, pl_module)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._attach(trainer, pl_module)

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._attach(trainer, pl_module)

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        """Mask phases train theta only: the network's gradients are dropped, so the
        optimizer skips every weight (no update, no weight decay)."""
        if self.sparsifier is not None and not self.sparsifier.trains_network:
            for p in pl_module.parameters():
                p.grad = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        assert self.sparsifier is not None
        self.sparsifier.step()
        pl_module.log("dynst/sparsity", self.sparsifier.sparsity, on_step=True, prog_bar=True)

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        if self.sparsifier is None:
            return copy.deepcopy(self._pending) if self._pending is not None else {}
        return copy.deepcopy(self.sparsifier.state_dict())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict:
            self._pending = copy.deepcopy(state_dict)
