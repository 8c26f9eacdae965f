"""Masked forecasting metrics (torch-based, numpy accepted).

Every metric excludes the entries where ``target`` is NaN (missing data), and those where
an optional boolean ``mask`` (broadcastable to ``target``) is False. If nothing is left, it
raises ``ValueError``. Scalar metrics return a 0-dim tensor (differentiable, so usable as a
loss); `per_horizon` and `evaluate` return Python floats. Units are those of the inputs.

Image metrics (`ssim`, `psnr`, `image_metrics`) work on frames ``[..., H, W]``: SSIM is
scikit-image's ``structural_similarity`` (7 x 7 uniform window, K1 = 0.01, K2 = 0.03,
sample covariance, mean over the cells at least 3 from the border) averaged over frames and
channels; PSNR is ``10 log10(R^2 / MSE)`` with the MSE pooled over every cell. Both need a
``data_range`` R: `image_metrics` uses the range (max - min) of the target, so that every
model scored on the same split is scored with the same R.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

ArrayLike = Tensor | np.ndarray

__all__ = ["mae", "rmse", "mse", "masked_mae", "masked_rmse", "per_horizon", "evaluate"]
__all__ += ["ssim", "psnr", "image_metrics", "StreamingMetrics"]


def _as_tensor(a: Any, name: str) -> Tensor:
    if isinstance(a, Tensor):
        return a
    t = torch.as_tensor(np.asarray(a))
    if t.dtype == torch.bool and name != "mask":
        t = t.float()
    return t


def _valid(
    pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None, null_val: float | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """(pred, target with NaN set to 0, valid mask), all broadcast to ``target``'s shape."""
    p, t = _as_tensor(pred, "pred"), _as_tensor(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
    if not p.is_floating_point():
        p = p.float()
    if not t.is_floating_point():
        t = t.to(p.dtype)
    t = t.to(p.device)
    valid = ~torch.isnan(t)
    if null_val is not None:
        valid &= t != null_val
    if mask is not None:
        m = _as_tensor(mask, "mask").to(t.device)
        if m.dtype != torch.bool:
            raise TypeError(f"mask must be boolean, got {m.dtype}")
        try:
            valid = valid & m.expand_as(t)
        except RuntimeError:
            raise ValueError(
                f"mask of shape {tuple(m.shape)} does not broadcast to {tuple(t.shape)}"
            ) from None
    if not bool(valid.any()):
        raise ValueError("no valid entries: every target is NaN or masked out")
    return p, torch.where(valid, t, torch.zeros((), dtype=t.dtype, device=t.device)), valid


def _masked_mean(err: Tensor, valid: Tensor) -> Tensor:
    err = torch.where(valid, err, torch.zeros((), dtype=err.dtype, device=err.device))
    return err.sum() / valid.sum()


def mae(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> Tensor:
    """Mean absolute error over the valid entries (target not NaN, mask True)."""
    p, t, v = _valid(pred, target, mask)
    return _masked_mean((p - t).abs(), v)


def mse(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> Tensor:
    """Mean squared error over the valid entries."""
    p, t, v = _valid(pred, target, mask)
    return _masked_mean((p - t) ** 2, v)


def rmse(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> Tensor:
    """Root mean squared error over the valid entries (sqrt of the pooled MSE)."""
    return mse(pred, target, mask).sqrt()


def masked_mae(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike | None = None,
    null_val: float | None = None,
) -> Tensor:
    """`mae` with mask = ~isnan(target) & mask, and optionally ``target != null_val``
    (e.g. ``null_val=0.0`` for loop-detector sets that code missing speeds as 0)."""
    p, t, v = _valid(pred, target, mask, null_val)
    return _masked_mean((p - t).abs(), v)


def masked_rmse(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike | None = None,
    null_val: float | None = None,
) -> Tensor:
    """`rmse` with the same masking as `masked_mae`."""
    p, t, v = _valid(pred, target, mask, null_val)
    return _masked_mean((p - t) ** 2, v).sqrt()


def per_horizon(
    metric: Callable[..., Tensor],
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike | None = None,
) -> list[float]:
    """``metric`` at each forecast step: along dim 1 of ``[B, T, N, C]`` (any rank >= 2)."""
    p, t = _as_tensor(pred, "pred"), _as_tensor(target, "target")
    if t.dim() < 2:
        raise ValueError(f"per_horizon needs [B, T, ...] inputs, got shape {tuple(t.shape)}")
    m = None
    if mask is not None:
        m = _as_tensor(mask, "mask")
        try:
            m = m.expand_as(t)
        except RuntimeError:
            raise ValueError(
                f"mask of shape {tuple(m.shape)} does not broadcast to {tuple(t.shape)}"
            ) from None
    out = []
    for h in range(t.shape[1]):
        mh = None if m is None else m[:, h]
        try:
            out.append(float(metric(p[:, h], t[:, h], mh)))
        except ValueError as e:
            raise ValueError(f"horizon {h}: {e}") from None
    return out


@torch.no_grad()
def evaluate(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> dict:
    """Whole-field MAE and RMSE, and both per forecast step (dim 1 of ``[B, T, N, C]``).

    Computed in float64. Returns ``{"mae", "rmse", "mae_per_horizon", "rmse_per_horizon",
    "count"}`` with ``count`` the number of valid entries.
    """
    p = _as_tensor(pred, "pred").detach().to(torch.float64)
    t = _as_tensor(target, "target").detach().to(torch.float64)
    _, _, valid = _valid(p, t, mask)
    out: dict[str, Any] = {"mae": float(mae(p, t, mask)), "rmse": float(rmse(p, t, mask))}
    if t.dim() >= 2:
        out["mae_per_horizon"] = per_horizon(mae, p, t, mask)
        out["rmse_per_horizon"] = per_horizon(rmse, p, t, mask)
    out["count"] = int(valid.sum())
    return out


def _data_range(data_range: float) -> float:
    r = float(data_range)
    if not np.isfinite(r) or r <= 0:
        raise ValueError(f"data_range must be a positive number, got {data_range!r}")
    return r


def ssim(
    pred: ArrayLike,
    target: ArrayLike,
    data_range: float,
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Mean structural similarity of frames ``[..., H, W]`` (float64, 0-dim).

    Equals scikit-image's ``structural_similarity(target, pred, data_range=R)`` averaged
    over the leading axes (defaults: uniform window, sample covariance). NaN is refused.
    """
    p = _as_tensor(pred, "pred").detach().to(torch.float64)
    t = _as_tensor(target, "target").detach().to(device=p.device, dtype=torch.float64)
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
    if t.dim() < 2 or min(t.shape[-2:]) < win_size:
        raise ValueError(
            f"ssim needs frames of at least {win_size}x{win_size}, got {tuple(t.shape)}"
        )
    if win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"win_size must be odd and >= 3, got {win_size}")
    if torch.isnan(t).any() or torch.isnan(p).any():
        raise ValueError("ssim: frames contain NaN (SSIM is undefined over missing cells)")
    r = _data_range(data_range)
    h, w = t.shape[-2:]
    p, t = p.reshape(-1, 1, h, w), t.reshape(-1, 1, h, w)

    def local_mean(a: Tensor) -> Tensor:
        return F.avg_pool2d(a, win_size, stride=1)

    ux, uy = local_mean(p), local_mean(t)
    cov_norm = win_size**2 / (win_size**2 - 1)
    vx = cov_norm * (local_mean(p * p) - ux * ux)
    vy = cov_norm * (local_mean(t * t) - uy * uy)
    vxy = cov_norm * (local_mean(p * t) - ux * uy)
    c1, c2 = (k1 * r) ** 2, (k2 * r) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean()


def psnr(
    pred: ArrayLike, target: ArrayLike, data_range: float, mask: ArrayLike | None = None
) -> Tensor:
    """Peak signal-to-noise ratio in dB, ``10 log10(R^2 / MSE)``, MSE pooled over the
    valid entries (as scikit-image's ``peak_signal_noise_ratio`` on the whole array)."""
    r = _data_range(data_range)
    err = mse(pred, target, mask).to(torch.float64)
    return 10 * torch.log10(r**2 / err)


@torch.no_grad()
def image_metrics(
    pred: ArrayLike, target: ArrayLike, data_range: float | None = None
) -> dict[str, float]:
    """SSIM and PSNR of ``[B, T, C, H, W]`` forecasts; ``data_range`` defaults to the
    target's max - min. Returns ``{"ssim", "psnr", "data_range"}``."""
    t = _as_tensor(target, "target")
    if data_range is None:
        finite = t[~torch.isnan(t)]
        if finite.numel() == 0:
            raise ValueError("no valid entries: every target is NaN")
        data_range = float(finite.max() - finite.min())
    return {
        "ssim": float(ssim(pred, target, data_range)),
        "psnr": float(psnr(pred, target, data_range)),
        "data_range": float(data_range),
    }


class StreamingMetrics:
    """`evaluate` (and, with ``data_range``, `image_metrics`) accumulated batch by batch,
    so that a split is scored without holding all its forecasts.

    ``update(pred, target)`` takes ``[B, T, ...]`` forecasts and targets in original
    units; sums are kept per forecast step in float64. ``data_range`` (the targets'
    max - min over the whole split, known beforehand) adds SSIM and PSNR of
    ``[B, T, C, H, W]`` frames. ``all_reduce`` sums the partial results of every
    ``torch.distributed`` rank, each of which scored its own share of the windows.

    ``split_by(kept)`` also scores two parts of the field apart: the cells where ``kept``
    (bool, broadcastable to one step ``[...]`` of the targets) is True, the kept sensors,
    and the others, the dropped ones; ``result()`` then has ``"kept"`` and ``"dropped"``.
    ``per_sensor(sensor_of)`` also scores every sensor apart (``sensor_of``: each cell's
    sensor number, shaped like one step); ``result()`` then has ``"mae_per_sensor"``.
    """

    def __init__(self, t_out: int, data_range: float | None = None) -> None:
        self.t_out = int(t_out)
        self.data_range = None if data_range is None else _data_range(data_range)
        # rows: abs-error sum, squared-error sum, valid count (per step); ssim sum, frames
        self.sums = torch.zeros(3, self.t_out, dtype=torch.float64)
        self.ssim_sums = torch.zeros(2, dtype=torch.float64)
        self.kept: Tensor | None = None
        self.part_sums = torch.zeros(2, 3, self.t_out, dtype=torch.float64)  # kept, dropped
        self.sensor_of: Tensor | None = None
        self.sensor_sums = torch.zeros(2, 0, dtype=torch.float64)  # abs-error sum, count

    def per_sensor(self, sensor_of: Tensor) -> StreamingMetrics:
        """Score every sensor apart too (``sensor_of``: int64 sensor number of every cell of
        a step, from 0); returns self."""
        self.sensor_of = sensor_of.detach().cpu().to(torch.int64).reshape(-1)
        count = int(self.sensor_of.max()) + 1 if self.sensor_of.numel() else 0
        self.sensor_sums = torch.zeros(2, count, dtype=torch.float64)
        return self

    def split_by(self, kept: Tensor) -> StreamingMetrics:
        """Score the kept cells (``kept`` True) and the dropped ones apart too; returns self."""
        if kept.dtype != torch.bool:
            raise TypeError(f"kept must be boolean, got {kept.dtype}")
        self.kept = kept.detach().cpu()
        return self

    @torch.no_grad()
    def update(self, pred: ArrayLike, target: ArrayLike) -> None:
        p = _as_tensor(pred, "pred").detach().to("cpu", torch.float64)
        t = _as_tensor(target, "target").detach().to("cpu", torch.float64)
        if p.shape != t.shape:
            raise ValueError(f"pred and target shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
        if t.dim() < 2 or t.shape[1] != self.t_out:
            raise ValueError(f"expected [B, {self.t_out}, ...] forecasts, got {tuple(t.shape)}")
        valid = ~torch.isnan(t)
        err = torch.where(valid, p - torch.nan_to_num(t), 0.0)
        dims = [0, *range(2, t.dim())]
        self.sums[0] += err.abs().sum(dims)
        self.sums[1] += (err * err).sum(dims)
        self.sums[2] += valid.sum(dims)
        if self.kept is not None:
            try:
                kept = self.kept.expand(t.shape[2:])
            except RuntimeError:
                raise ValueError(
                    f"kept of shape {tuple(self.kept.shape)} does not fit a step "
                    f"{tuple(t.shape[2:])}"
                ) from None
            for g, part in enumerate((kept, ~kept)):
                e = torch.where(part, err, 0.0)
                self.part_sums[g, 0] += e.abs().sum(dims)
                self.part_sums[g, 1] += (e * e).sum(dims)
                self.part_sums[g, 2] += (valid & part).sum(dims)
        if self.sensor_of is not None:
            cells = err.abs().sum((0, 1)).reshape(-1)  # [cells]
            if cells.numel() != self.sensor_of.numel():
                raise ValueError(
                    f"sensor_of has {self.sensor_of.numel()} cells, a step {cells.numel()}"
                )
            self.sensor_sums[0].index_add_(0, self.sensor_of, cells)
            self.sensor_sums[1].index_add_(
                0, self.sensor_of, valid.sum((0, 1)).reshape(-1).double()
            )
        if self.data_range is not None and t.numel():
            frames = t.numel() // (t.shape[-1] * t.shape[-2])
            self.ssim_sums[0] += float(ssim(p, t, self.data_range)) * frames
            self.ssim_sums[1] += frames

    def all_reduce(self) -> None:
        """Sum every rank's partial sums into every rank's (a no-op outside DDP)."""
        from . import distributed

        distributed.all_reduce_sum(self.sums)
        distributed.all_reduce_sum(self.ssim_sums)
        distributed.all_reduce_sum(self.part_sums)
        distributed.all_reduce_sum(self.sensor_sums)

    def result(self) -> dict[str, Any]:
        """What `evaluate` returns (plus `image_metrics`' keys with ``data_range``)."""
        abs_sum, sq_sum, count = self.sums
        if float(count.sum()) == 0:
            raise ValueError("no valid entries: every target is NaN or masked out")
        empty = torch.nonzero(count == 0).flatten().tolist()
        if empty:
            raise ValueError(f"horizon {empty[0]}: no valid entries: every target is NaN")
        out: dict[str, Any] = {
            "mae": float(abs_sum.sum() / count.sum()),
            "rmse": float((sq_sum.sum() / count.sum()).sqrt()),
            "mae_per_horizon": (abs_sum / count).tolist(),
            "rmse_per_horizon": (sq_sum / count).sqrt().tolist(),
            "count": int(count.sum()),
        }
        if self.data_range is not None:
            mse_all = float(sq_sum.sum() / count.sum())
            out["ssim"] = float(self.ssim_sums[0] / self.ssim_sums[1])
            out["psnr"] = float(10 * np.log10(self.data_range**2 / mse_all))
            out["data_range"] = self.data_range
        if self.sensor_of is not None:
            a, n = self.sensor_sums
            out["mae_per_sensor"] = torch.where(n > 0, a / n.clamp_min(1), torch.nan).tolist()
        if self.kept is not None:
            for g, name in enumerate(("kept", "dropped")):
                a, q, n = self.part_sums[g]
                if float(n.sum()) > 0:
                    per = torch.where(n > 0, a / n.clamp_min(1), torch.nan)
                    out[name] = {
                        "mae": float(a.sum() / n.sum()),
                        "rmse": float((q.sum() / n.sum()).sqrt()),
                        "mae_per_horizon": per.tolist(),
                        "count": int(n.sum()),
                    }
        return out
