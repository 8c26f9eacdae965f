"""The deployable model of a run, target-neutral: what every export target exports.

It takes **only the active sensors' data**, in original units, in the order of
``mask.json`` (for graphs ``[B, T_in, K, C]``, for images the K active patch tiles
``[B, K, T_in, C, p, p]``, see the sensor space's ``serving_module``) and returns the
whole-field forecast in original units: normalisation and theta are folded in.
:class:`Deployable` carries it with what a target needs to know about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from . import __version__
from .artifacts import RunBundle
from .data.windows import WindowSplits, eval_loader
from .models.base import takes_alive
from .sensors import SensorSpace
from .sidecar import SENSOR_AXIS, describe
from .suspect import SuspectRules, rules_from_training


class _Ungated(nn.Module):
    """A gated model called with every sensor on, or with ``alive [N]`` as its gate
    (0 = a failed sensor): ``forward(x, alive) = model(x, alive)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, alive: Tensor | None = None) -> Tensor:
        return self.model(x, alive)


@dataclass(frozen=True)
class Deployable:
    """A model ready to export: ``module(x)`` (or ``module(x, alive[K])`` when
    ``takes_alive``) on the K input sensors ``index`` (into the N), whose axis in ``x``
    is ``sensor_axis``; ``sidecar`` is what the exported file's sidecar records of it
    (``dynst_fast.sidecar``), before the target adds its own fields."""

    module: nn.Module
    index: Tensor  # [K] int64
    takes_alive: bool
    sensor_axis: int
    sidecar: dict[str, Any]


def deployable(bundle: RunBundle, dense: bool = False) -> Deployable:
    """The run's compacted model (or, with ``dense``, its dense model taking every
    sensor) ready to deploy."""
    n = bundle.theta.numel()
    if dense:
        index = torch.arange(n)
        inner: nn.Module = _Ungated(bundle.dense)
    else:
        index = bundle.active_index
        inner = bundle.model.compact(index, bundle.theta).eval()
    space, ck = bundle.space, bundle.checkpoint
    module = space.serving_module(inner, index, bundle.mean, bundle.std, full=dense).eval()
    c, t_in, t_out = int(ck["num_channels"]), int(ck["t_in"]), int(ck["t_out"])
    layout = space.sidecar(index, t_in, t_out, c)
    side = describe(
        model=ck["model"]["name"],
        dense=dense,
        dataset=ck.get("dataset"),
        sensor_ids=[space.ids[i] for i in index.tolist()],
        input_index=index.tolist(),
        all_sensor_ids=list(space.ids),
        channels=c,
        t_in=t_in,
        t_out=t_out,
        units=ck.get("units", ""),
        version=__version__,
        layout=layout,
        missing_value=bundle.missing_value,
    )
    rules = suspect_rules(bundle.splits, space, index, c, layout["kind"])
    side["suspect"] = rules.to_dict()
    return Deployable(module, index, takes_alive(inner), SENSOR_AXIS[layout["kind"]], side)


def suspect_rules(
    splits: WindowSplits, space: SensorSpace, index: Tensor, channels: int, kind: str
) -> SuspectRules:
    """The rules that flag a lying input sensor (``dynst_fast.suspect``) of the model on
    the sensors ``index``, drawn from the training split's windows as the deployable
    model takes them (original units, the data channels only; ``kind``: the sidecar's
    layout, ``graph`` or ``image``)."""

    def windows():
        for x, _ in eval_loader(splits.train):
            x = space.serving_input(splits.denormalize_input(x.to(torch.float32)), index)
            yield x[:, :, :, :channels].numpy()  # the channel axis is 3 in both layouts

    return rules_from_training(windows(), kind)


class NoCompleteWindow(ValueError):
    """The test split has no window without missing values."""


def example_inputs(bundle: RunBundle, index: Tensor, max_windows: int = 64) -> Tensor:
    """Real test windows in original units, as the deployable model takes them (the
    input sensors only), without NaN, float32."""
    kept, count = [], 0
    for x, _ in eval_loader(bundle.splits.test):  # batch by batch, until enough are found
        x = bundle.splits.denormalize_input(x.to(torch.float32))
        x = x[torch.isfinite(x).flatten(1).all(dim=1)][: max_windows - count]
        kept.append(x)
        count += x.shape[0]
        if count >= max_windows:
            break
    if count == 0:
        raise NoCompleteWindow("no complete (NaN-free) test window to check the model on")
    return bundle.space.serving_input(torch.cat(kept), index)
