"""The backbone contract (DESIGN.md section 5), written down as two base classes.

A **gated backbone** forecasts the whole field from the full input and a gate:
``forward(x, gate=None)`` with x ``[B, t_in, N, C]`` (graphs) or ``[B, t_in, C, H, W]``
(grids), gate ``[N]`` or None (every sensor on), returns ``[B, t_out, N, C]`` or
``[B, t_out, C, H, W]``, including the sensors that are off. Every exit of sensor j's
data is multiplied by ``g_j`` exactly once.

``compact(active_index, theta=None)`` returns its **compacted model**: ``forward(x_active)``
reads only the active sensors' input (``gather_input(x)`` cuts it from a full input)
and returns the same whole-field forecast. Equivalence rule: for a 0/1 active set and
any theta, ``model.compact(A, theta)(x_A) == model(x, theta * a)`` to float32 rounding,
at a cost that scales with K wherever the architecture allows (``gives_speedup``).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor, nn

from .. import ops
from ..sensors import SensorSpace


class GatedBackbone(nn.Module, ABC):
    """Base of every backbone: its sensor space, window lengths and channel count, and
    the input and gate checks.

    Args:
        space: the sensor space of the data (graph nodes or image patches).
        t_in, t_out: window lengths in steps. channels: C of the input and output; an
            input also carries the space's calendar channels after them
            (``in_channels = C + space.calendar_features``).
    """

    gives_speedup: ClassVar[bool] = True  # False: the compacted model is no faster

    def __init__(self, space: SensorSpace, t_in: int, t_out: int, channels: int) -> None:
        super().__init__()
        if not isinstance(space, SensorSpace):
            raise TypeError(
                f"{type(self).__name__}: space must be a SensorSpace (GraphSensors, "
                f"PatchSensors), got {type(space).__name__}"
            )
        for name, v in (("t_in", t_in), ("t_out", t_out), ("channels", channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive int, got {v!r}")
        self.space = space
        self.t_in, self.t_out, self.channels = t_in, t_out, channels
        # inputs carry the space's calendar channels after the C data channels
        self.in_channels = channels + space.calendar_features

    @property
    def num_sensors(self) -> int:
        return self.space.num_sensors

    def check_input(self, x: Tensor, who: str | None = None) -> None:
        """Raise a clear ``ValueError`` unless ``x`` is a full input of this model."""
        _check_tensor(x, who or type(self).__name__)
        self.space.check_input(x, who or type(self).__name__, self.t_in, self.in_channels)

    def full_gate(self, gate: Tensor | None, like: Tensor) -> Tensor:
        """``gate`` checked and in ``like``'s dtype; all ones if None."""
        n = self.num_sensors
        if gate is None:
            return like.new_ones(n)
        if gate.shape != (n,):
            raise ValueError(
                f"{type(self).__name__}: gate must have shape [{n}], got {tuple(gate.shape)}"
            )
        return gate.to(like.dtype)

    @abstractmethod
    def forward(self, x: Tensor, gate: Tensor | None = None) -> Tensor:
        """The whole-field forecast of the full input ``x`` under ``gate`` (see module)."""

    @abstractmethod
    def compact(self, active_index: Tensor, theta: Tensor | None = None) -> CompactBackbone:
        """The deployed model on the active sensors only; shares this model's parameters.

        ``theta`` is the full ``[N]`` score vector (ones if None); only
        ``theta[active_index]`` is used.
        """


class CompactBackbone(nn.Module, ABC):
    """Base of every compacted model: the checked active index, the active gates and the
    input gather, on the parent's device.

    Buffers: ``index`` ``[K]`` int64 (distinct, in range), ``gate`` ``[K]`` float32 =
    ``theta[index]``. The parent is a submodule (its parameters are shared).
    """

    gives_speedup: ClassVar[bool] = True

    def __init__(
        self, parent: GatedBackbone, active_index: Tensor, theta: Tensor | None = None
    ) -> None:
        super().__init__()
        n = parent.num_sensors
        device = _device_of(parent)
        index = _as_tensor(active_index, "the active index")  # its own dtype: checked, not cast
        if index.dim() == 0:  # one sensor
            index = index.reshape(1)
        if index.numel() == 0 and index.is_floating_point():  # an empty Python list
            index = index.to(torch.int64)
        index = ops.check_index(index.to(device), n, "compact").to(torch.int64)
        theta = torch.ones(n) if theta is None else _as_tensor(theta, "theta")
        if not theta.is_floating_point():
            theta = theta.to(torch.float32)
        if theta.shape != (n,):
            raise ValueError(f"compact: theta must have shape [{n}], got {tuple(theta.shape)}")
        self.parent = parent
        self.num_active = int(index.numel())
        self.register_buffer("index", index)
        gate = theta.detach().to(device=device, dtype=torch.float32)[index]
        self.register_buffer("gate", gate)

    def gather_input(self, x: Tensor) -> Tensor:
        """The full input -> what :meth:`forward` takes (the active sensors' input)."""
        self.parent.check_input(x, type(self).__name__)
        return self.parent.space.gather(x, self.index)

    def gates(self, alive: Tensor | None, like: Tensor) -> Tensor:
        """The active gates of one call, ``[K]`` in ``like``'s dtype: ``gate * alive``.

        ``alive[K]`` (1 = reporting, 0 = failed; None: all) switches failed sensors off
        exactly as the gated form does a gate of 0, so the call equals the gated model
        with the gates of ``A`` minus the failed sensors."""
        gate = self.gate.to(like.dtype)
        if alive is None:
            return gate
        if not isinstance(alive, Tensor) or alive.shape != (self.num_active,):
            shape = tuple(alive.shape) if isinstance(alive, Tensor) else type(alive).__name__
            raise ValueError(
                f"{type(self).__name__}: alive must have shape [{self.num_active}] (one flag "
                f"per active sensor), got {shape}"
            )
        if not torch.compiler.is_compiling() and not (
            alive.dtype == torch.bool or bool(((alive >= 0) & (alive <= 1)).all())
        ):  # a value check would break a traced graph
            raise ValueError(
                f"{type(self).__name__}: alive holds flags in [0, 1] (1 = reporting, 0 = "
                "failed), got a NaN or a value outside"
            )
        return gate * alive.to(device=gate.device, dtype=gate.dtype)

    def check_active_input(self, x_active: Tensor, t: int | None = None) -> None:
        """Raise a clear ``ValueError`` unless ``x_active`` is this model's active input."""
        _check_tensor(x_active, type(self).__name__)
        p = self.parent
        p.space.check_active_input(
            x_active, self.num_active, type(self).__name__, t or p.t_in, p.in_channels
        )

    @abstractmethod
    def forward(self, x_active: Tensor, alive: Tensor | None = None) -> Tensor:
        """The whole-field forecast from the active sensors' input alone; ``alive[K]``
        marks the sensors reporting in this call (:meth:`gates`)."""


def _device_of(module: nn.Module) -> torch.device:
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("cpu")


def takes_alive(model: nn.Module) -> bool:
    """Does ``model.forward`` take a per-call ``alive`` (every built-in compacted model
    does; a user's own may not)?"""
    return "alive" in inspect.signature(model.forward).parameters


def _as_tensor(value: object, what: str) -> Tensor:
    """``value`` (a tensor, numpy array or list) as a tensor; ``TypeError`` naming ``what``."""
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"compact: {what} must be a tensor of numbers, got {value!r:.60}")
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"compact: {what} must be a tensor of numbers ({exc})") from None


def _check_tensor(x: object, who: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{who}: x must be a torch.Tensor, got {type(x).__name__}")
