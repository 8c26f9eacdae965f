"""The deployable model of a run, target-neutral: what every export target exports.

It takes **only the active sensors' data**, in original units, in the order of
``mask.json`` (for graphs ``[B, T_in, K, C]``, for images the K active patch tiles
``[B, K, T_in, C, p, p]``, see the sensor space's ``serving_module``) and returns the
whole-field forecast in original units: normalisation and theta are folded in.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .artifacts import RunBundle
from .data.windows import eval_loader
from .models.base import takes_alive


class _Ungated(nn.Module):
    """A gated model called with every sensor on, or with ``alive [N]`` as its gate
    (0 = a failed sensor): ``forward(x, alive) = model(x, alive)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, alive: Tensor | None = None) -> Tensor:
        return self.model(x, alive)


def deployable(bundle: RunBundle, dense: bool = False) -> tuple[nn.Module, Tensor]:
    """The run's compacted model (or, with ``dense``, its dense model taking every
    sensor) ready to deploy, and its input index ``[K]`` into the N sensors. The module
    is called ``module(x)`` or ``module(x, alive[K])``; its ``takes_alive`` says whether
    the second form is available."""
    mean = bundle.checkpoint["mean"].to(torch.float32)
    std = bundle.checkpoint["std"].to(torch.float32)
    n = bundle.theta.numel()
    if dense:
        index = torch.arange(n)
        inner: nn.Module = _Ungated(bundle.dense)
    else:
        index = bundle.active_index
        inner = bundle.model.compact(index, bundle.theta).eval()
    module = bundle.space.serving_module(inner, index, mean, std, full=dense)
    module.takes_alive = takes_alive(inner)  # the export gives it an ``alive [K]`` input
    return module.eval(), index


class NoCompleteWindow(ValueError):
    """The test split has no window without missing values."""


def example_inputs(bundle: RunBundle, index: Tensor, max_windows: int = 64) -> Tensor:
    """Real test windows in original units, as the deployable model takes them (the
    input sensors only), without NaN, float32."""
    kept, count = [], 0
    for x, _ in eval_loader(bundle.splits.test):  # batch by batch, until enough are found
        x = bundle.splits.denormalize(x.to(torch.float32))
        x = x[torch.isfinite(x).flatten(1).all(dim=1)][: max_windows - count]
        kept.append(x)
        count += x.shape[0]
        if count >= max_windows:
            break
    if count == 0:
        raise NoCompleteWindow("no complete (NaN-free) test window to check the model on")
    return bundle.space.serving_input(torch.cat(kept), index)
