"""Inference and scoring of models on a split of the windows, batch by batch: the
forecasts, the space's whole-field metrics in original units (also on the kept and the
switched-off sensors apart), and the validation MAE that training selects its epoch by.
(``metrics.evaluate`` scores two tensors; :func:`evaluate_model` scores a model.)"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from . import distributed
from .data import WindowDataset, WindowSplits
from .data.windows import eval_batch_size, eval_loader
from .metrics import StreamingMetrics
from .sensors import SensorSpace


def forecasts(
    model: nn.Module,
    data: WindowDataset,
    gate: Tensor | None = None,
    space: SensorSpace | None = None,
    active_index: Tensor | None = None,
    shard: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """``(forecasts, targets)`` batch by batch (``eval_loader``), normalised, in
    eval mode; ``shard``: this rank's batches only (``eval_loader``).

    ``model(x, gate)`` (``model(x)`` when gate is None), or, with ``active_index``, a
    compacted model given only those sensors' input (``space.gather``).
    """
    was = model.training
    model.eval()
    rank, world = (distributed.rank(), distributed.world_size()) if shard else (0, 1)
    try:
        for x, y in eval_loader(data, rank=rank, world=world):
            with torch.inference_mode():
                if active_index is not None:
                    x = space.gather(x, active_index)
                pred = model(x) if gate is None else model(x, gate)
            yield pred, y
    finally:
        model.train(was)


def predict(
    model: nn.Module,
    data: WindowDataset,
    gate: Tensor | None = None,
    space: SensorSpace | None = None,
    active_index: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Every window's ``(forecasts, targets)`` of :func:`forecasts` at once: ``[W, t_out,
    ...]`` each (for small sets; :func:`evaluate_model` streams)."""
    pairs = list(forecasts(model, data, gate, space, active_index))
    return torch.cat([p for p, _ in pairs]), torch.cat([y for _, y in pairs])


def target_range(splits: WindowSplits, data: WindowDataset) -> float:
    """max - min of ``data``'s target steps in original units (NaN ignored), in chunks."""
    steps, chunk = data.target_steps(), eval_batch_size(data)
    lo, hi = math.inf, -math.inf
    for i in range(0, steps.shape[0], chunk):
        v = splits.denormalize(steps[i : i + chunk])
        v = v[~torch.isnan(v)]
        if v.numel():
            lo, hi = min(lo, float(v.min())), max(hi, float(v.max()))
    if lo > hi:
        raise ValueError("no valid entries: every target is NaN")
    return hi - lo


def metric_stream(
    space: SensorSpace, splits: WindowSplits, data: WindowDataset
) -> StreamingMetrics:
    """An empty accumulator of ``space``'s whole-field metrics on ``data``."""
    return space.metric_stream(splits.t_out, lambda: target_range(splits, data))


def evaluate_model(
    model: nn.Module,
    splits: WindowSplits,
    space: SensorSpace | None,
    split: str = "test",
    active_index: Tensor | None = None,
    gate: Tensor | None = None,
    shard: bool = False,
    metrics: StreamingMetrics | None = None,
    kept: Tensor | None = None,
    per_sensor: bool = False,
) -> dict[str, Any]:
    """The space's whole-field metrics (original units) of ``model`` on ``split``, batch
    by batch: a compacted model if ``active_index`` is given (it receives only those
    sensors' input), else dense (``model(x, gate)`` with a gate). ``shard``: every rank
    scores its share of the batches and the sums are all-reduced. ``metrics``: this
    accumulator instead of the space's (``space`` is then needed only to gather).
    ``kept``: sensor indices whose values are also scored apart (``"kept"``) from the
    others (``"dropped"``); default the compacted model's ``active_index``. ``per_sensor``:
    every sensor's MAE too (``"mae_per_sensor"``, ``[N]``)."""
    data = getattr(splits, split)
    acc = metric_stream(space, splits, data) if metrics is None else metrics
    kept = active_index if kept is None else kept
    if kept is not None and space is not None:
        acc.split_by(space.kept_cells(kept, splits.mean.shape))
    if per_sensor and space is not None:
        acc.per_sensor(space.sensor_of_cells(splits.mean.shape))
    for pred, y in forecasts(model, data, gate, space, active_index, shard=shard):
        acc.update(splits.denormalize(pred), splits.denormalize(y))
    if shard:
        acc.all_reduce()
    return acc.result()


def validation_mae(model: nn.Module, splits: WindowSplits, gate: Tensor | None) -> float:
    """Whole-field validation MAE (original units), every rank scoring its share."""
    mae_only = StreamingMetrics(splits.t_out)
    return evaluate_model(model, splits, None, "val", gate=gate, shard=True, metrics=mae_only)[
        "mae"
    ]
