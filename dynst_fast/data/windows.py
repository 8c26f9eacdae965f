"""Windowing, chronological split and normalisation of a `GraphDataset` or `GridDataset`.

Graph values are ``[T, N, C]``, grid values ``[T, C, H, W]``; everything below applies to
both, with "sensor" meaning a graph sensor or one pixel (and channel) of the grid.

Split convention (chosen because it reproduces the Los-loop baseline figures the
project quotes: persistence 3.27 mph, per-sensor linear AR 3.22 mph, 12 -> 3 steps):
the **series** is cut chronologically into three consecutive parts,
``[0, int(T*f_train))``, ``[int(T*f_train), int(T*(f_train+f_val)))`` and the rest, and
each part is windowed **separately** (stride 1): a window never crosses a part boundary,
so no target step of one part is ever an input or target of another. A part of length L
gives ``L - t_in - t_out + 1`` windows. (Splitting the list of all windows 8:1:1 instead
gives 3.25 / 3.28 on Los-loop, and leaks train targets into validation inputs.)

Normalisation: per sensor and channel z-score, mean and std fitted on the training part
only, ignoring NaN (a constant sensor gets std 1).

Missing values: in the **inputs** x a NaN is replaced by 0 after normalisation, i.e. by
the sensor's training mean; the **targets** y keep NaN so that losses and metrics mask
them out (`dynst_fast.metrics`).

Calendar (``make_windows(..., calendar=True)`` on data that has one): every input step
also carries the calendar features of its time (``dynst_fast.calendar``), appended
after the data channels and the same for every sensor or cell: x ``[t_in, N, C + F]``
(graphs) or ``[t_in, C + F, H, W]`` (grids). Targets never carry them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler

from .arrays import CHUNK_STEPS
from .formats import Dataset as AnyDataset


class WindowDataset(Dataset):
    """Sliding windows over one normalised part ``[L, N, C]`` (or ``[L, C, H, W]``) of a
    series, built lazily.

    Item ``i`` is ``(x, y)``: x ``[t_in, N, C]`` float32 (normalised, NaN filled with 0 =
    the train mean) = steps ``i .. i+t_in-1`` of the part, y ``[t_out, N, C]`` float32
    (normalised, NaN kept) = the next ``t_out`` steps. ``start`` is the part's first step
    in the full series, so window i's first target step is ``start + i + t_in``.
    """

    def __init__(
        self,
        part: Tensor,
        t_in: int,
        t_out: int,
        start: int = 0,
        calendar: Tensor | None = None,
    ) -> None:
        if part.dim() not in (3, 4):
            raise ValueError(
                f"WindowDataset: part must be [L, N, C] or [L, C, H, W], got {tuple(part.shape)}"
            )
        if calendar is not None and (calendar.dim() != 2 or calendar.shape[0] != part.shape[0]):
            raise ValueError(
                f"WindowDataset: calendar must be [L, F] with L = {part.shape[0]}, got "
                f"{tuple(calendar.shape)}"
            )
        self.t_in, self.t_out, self.start = int(t_in), int(t_out), int(start)
        self._y = part.to(torch.float32).contiguous()  # the only copy: inputs are filled per fetch
        self._cal = None if calendar is None else calendar.to(torch.float32).contiguous()
        self._n = max(0, part.shape[0] - self.t_in - self.t_out + 1)

    @property
    def calendar_features(self) -> int:
        """F, the calendar channels appended to every input step (0: none)."""
        return 0 if self._cal is None else int(self._cal.shape[1])

    def _with_calendar(self, x: Tensor, steps: Tensor) -> Tensor:
        """``x [b, t, N, C]`` / ``[b, t, C, H, W]`` of the part's ``steps [b, t]`` with the
        calendar channels appended (x itself when there is no calendar)."""
        if self._cal is None:
            return x
        cal = self._cal[steps]  # [b, t, F]
        if x.dim() == 4:  # graph: channels last
            return torch.cat([x, cal[:, :, None, :].expand(*x.shape[:3], -1)], dim=-1)
        b, t, _, h, w = x.shape
        return torch.cat([x, cal[..., None, None].expand(b, t, -1, h, w)], dim=2)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int | list[int] | Tensor) -> tuple[Tensor, Tensor]:
        """Window ``i`` (``x [t_in, ...]``, ``y [t_out, ...]``), or, for a list or 1-D tensor
        of indices, that batch of windows at once (``x [b, t_in, ...]``, ``y [b, t_out,
        ...]``: the same values as stacking the windows one by one)."""
        if isinstance(i, (list, tuple, Tensor)):
            return self._batch(torch.as_tensor(i, dtype=torch.int64).reshape(-1))
        i = int(i)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"window index out of range for {self._n} windows")
        s = i + self.t_in
        x = self._with_calendar(torch.nan_to_num(self._y[i:s], nan=0.0)[None],
                                torch.arange(i, s)[None])[0]  # fmt: skip
        return x, self._y[s : s + self.t_out].clone()

    def _batch(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        if idx.numel() and (int(idx.min()) < -self._n or int(idx.max()) >= self._n):
            raise IndexError(f"window index out of range for {self._n} windows")
        idx = torch.where(idx < 0, idx + self._n, idx)
        steps = idx[:, None] + torch.arange(self.t_in)
        x = self._with_calendar(self._y[steps].nan_to_num_(nan=0.0), steps)
        y = self._y[idx[:, None] + self.t_in + torch.arange(self.t_out)]
        return x, y

    def tensors(self) -> tuple[Tensor, Tensor]:
        """All windows stacked: X ``[W, t_in, ...]``, Y ``[W, t_out, ...]``: ``t_in + t_out``
        times the part's memory, for small sets and tests only (the library fetches
        batches)."""
        n, ti = self._n, self.t_in
        x = torch.nan_to_num(self._y[: n + ti - 1]).unfold(0, ti, 1).movedim(-1, 1)
        x = self._with_calendar(x, torch.arange(n)[:, None] + torch.arange(ti))
        y = self._y[ti:].unfold(0, self.t_out, 1).movedim(-1, 1)
        return x.contiguous(), y.contiguous()

    def head(self, count: int) -> WindowDataset:
        """The first ``min(count, len(self))`` windows as a dataset of their own (a view)."""
        keep = min(max(int(count), 0), self._n)
        end = keep + self.t_in + self.t_out - 1 if keep else 0
        cal = None if self._cal is None else self._cal[:end]
        return WindowDataset(self._y[:end], self.t_in, self.t_out, start=self.start, calendar=cal)

    def part(self) -> Tensor:
        """The normalised part ``[L, ...]`` the windows are cut from (NaN kept; a view)."""
        return self._y

    def target_steps(self) -> Tensor:
        """The part's steps that some window forecasts, ``[L - t_in, ...]`` (NaN kept)."""
        return self._y[self.t_in :]

    @property
    def step_cells(self) -> int:
        """Values per time step: N * C (graph) or C * H * W (grid)."""
        return int(np.prod(self._y.shape[1:]))

    @property
    def num_sensors(self) -> int:
        return int(self._y.shape[1])

    def __repr__(self) -> str:
        return (
            f"WindowDataset(windows={self._n}, t_in={self.t_in}, t_out={self.t_out}, "
            f"step={tuple(self._y.shape[1:])}, start={self.start}, "
            f"calendar={self.calendar_features})"
        )


@dataclass
class WindowSplits:
    """Train/val/test windows and the train-fitted normalisation ``mean``/``std`` ([N, C]
    for graphs, [C, H, W] for grids)."""

    train: WindowDataset
    val: WindowDataset
    test: WindowDataset
    mean: np.ndarray  # [N, C] (graph) or [C, H, W] (grid) float32, original units
    std: np.ndarray  # same shape, original units
    t_in: int
    t_out: int
    axes: tuple[str, ...] = ("N", "C")  # names of the axes of mean / std, for messages

    def _stats(self, like: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(like, Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(like).__name__}")
        dtype = like.dtype if like.is_floating_point() else torch.float32
        m = torch.as_tensor(self.mean, dtype=dtype, device=like.device)
        s = torch.as_tensor(self.std, dtype=dtype, device=like.device)
        if like.dim() < m.dim() or tuple(like.shape[-m.dim() :]) != tuple(m.shape):
            want = ", ".join(f"{k}={v}" for k, v in zip(self.axes, m.shape, strict=True))
            raise ValueError(f"expected a tensor [..., {want}], got {tuple(like.shape)}")
        return m, s

    def normalize(self, x: Tensor) -> Tensor:
        """Original units -> normalised, on ``[..., N, C]`` / ``[..., C, H, W]`` (NaN stays NaN)."""
        m, s = self._stats(x)
        return (x - m) / s

    def denormalize(self, y: Tensor) -> Tensor:
        """Normalised -> original units, on ``[..., N, C]`` / ``[..., C, H, W]``."""
        m, s = self._stats(y)
        return y * s + m

    @property
    def calendar_features(self) -> int:
        """F, the calendar channels the inputs carry after their data channels (0: none)."""
        return self.train.calendar_features

    def denormalize_input(self, x: Tensor) -> Tensor:
        """An input ``x`` in original units: its data channels denormalised, its calendar
        channels (if any) as they are."""
        f = self.calendar_features
        if not f:
            return self.denormalize(x)
        axis = -1 if self.mean.ndim == 2 else 2
        c = x.shape[axis] - f
        data, cal = x.split([c, f], dim=axis)
        return torch.cat([self.denormalize(data), cal], dim=axis)

    def data_input(self, x: Tensor) -> Tensor:
        """An input ``x`` without its calendar channels (x itself when there are none)."""
        f = self.calendar_features
        if not f:
            return x
        c = self.mean.shape[-1] if self.mean.ndim == 2 else self.mean.shape[0]
        return x[..., :c] if self.mean.ndim == 2 else x[:, :, :c]


def split_bounds(num_steps: int, split: Sequence[float]) -> tuple[int, int]:
    """End steps ``(a, b)`` of the train part ``[0, a)`` and validation part ``[a, b)``."""
    fr = [float(f) for f in split]
    if len(fr) != 3:
        raise ValueError(f"split must give 3 fractions (train, val, test), got {len(fr)}")
    if any(not np.isfinite(f) or f <= 0 for f in fr):
        raise ValueError(f"split fractions must be positive, got {tuple(split)}")
    if abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {tuple(split)} (sum {sum(fr):g})")
    a = int(num_steps * fr[0] + 1e-9)
    b = int(num_steps * (fr[0] + fr[1]) + 1e-9)
    return a, b


EVAL_BATCH = 256  # windows per evaluation batch at most ...
EVAL_CELLS = 1 << 15  # ... and at most this many values per step of the batch (batch x N x C)


def _train_stats(train: np.ndarray, ds: AnyDataset) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell mean and std ``[N, C]`` (or ``[C, H, W]``) of the training part, NaN
    ignored, std 1 where constant; float64, two passes over time chunks (no float64 copy
    of the part)."""
    count = np.zeros(train.shape[1:], dtype=np.int64)
    total = np.zeros(train.shape[1:], dtype=np.float64)
    for lo in range(0, train.shape[0], CHUNK_STEPS):
        c = train[lo : lo + CHUNK_STEPS].astype(np.float64)
        ok = np.isfinite(c)
        count += ok.sum(axis=0)
        total += np.where(ok, c, 0.0).sum(axis=0)
    if not (count > 0).all():
        first = tuple(int(i) for i in np.argwhere(count == 0)[0])
        raise ValueError(
            f"{ds.cell_name(first)} has no observed value in the training part "
            "(normalisation is fitted there)"
        )
    mean = total / count
    sq = np.zeros_like(total)
    for lo in range(0, train.shape[0], CHUNK_STEPS):
        c = train[lo : lo + CHUNK_STEPS].astype(np.float64) - mean
        sq += np.where(np.isfinite(c), c * c, 0.0).sum(axis=0)
    std = np.sqrt(sq / count)
    return mean, np.where(std > 1e-12, std, 1.0)


def make_windows(
    ds: AnyDataset,
    t_in: int,
    t_out: int,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    calendar: bool = False,
) -> WindowSplits:
    """Split ``ds.values`` chronologically into train/val/test parts, normalise with the
    train statistics, and window each part separately (see the module docstring);
    ``calendar``: the inputs carry ``ds.calendar``'s features (``ValueError`` if the data
    has no calendar)."""
    for name, v in (("t_in", t_in), ("t_out", t_out)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    t_in, t_out = int(t_in), int(t_out)
    vals = np.asarray(ds.values)  # may be a memory map: read in time chunks below
    if vals.ndim != ds.values_layout.count(",") + 1:
        raise ValueError(f"values must be {ds.values_layout}, got shape {vals.shape}")
    T = vals.shape[0]
    a, b = split_bounds(T, split)
    need = t_in + t_out
    for name, length in (("train", a), ("validation", b - a), ("test", T - b)):
        if length < need:
            raise ValueError(
                f"t_in + t_out = {need} is too long for the series: the {name} part has "
                f"{length} steps ({T} steps split {tuple(split)}); each part needs at least "
                f"t_in + t_out"
            )
    mean, std = _train_stats(vals[:a], ds)
    norm = np.empty(vals.shape, dtype=np.float32)
    for lo in range(0, T, CHUNK_STEPS):  # in float64 per chunk, never the whole series
        norm[lo : lo + CHUNK_STEPS] = (vals[lo : lo + CHUNK_STEPS] - mean) / std
    norm = torch.from_numpy(norm)
    cal = None
    if calendar:
        if getattr(ds, "calendar", None) is None:
            raise ValueError(
                f"{ds.name}: the data says nothing of when its steps are (no start time and "
                "steps per day): it has no calendar inputs"
            )
        cal = torch.from_numpy(ds.calendar.features(np.arange(T)))
    part = (lambda lo, hi: None) if cal is None else (lambda lo, hi: cal[lo:hi])  # noqa: E731
    return WindowSplits(
        train=WindowDataset(norm[:a], t_in, t_out, start=0, calendar=part(0, a)),
        val=WindowDataset(norm[a:b], t_in, t_out, start=a, calendar=part(a, b)),
        test=WindowDataset(norm[b:], t_in, t_out, start=b, calendar=part(b, T)),
        mean=mean.astype(np.float32),
        std=std.astype(np.float32),
        t_in=t_in,
        t_out=t_out,
        axes=tuple(a.strip() for a in ds.values_layout.strip("[]").split(",")[1:]),
    )


def eval_batch_size(data: WindowDataset) -> int:
    """Windows per evaluation batch: ``EVAL_BATCH``, fewer for large networks, so that a
    batch holds at most ``EVAL_CELLS`` values per step (2 windows at N = 16,384)."""
    return max(1, min(EVAL_BATCH, EVAL_CELLS // max(data.step_cells, 1)))


def eval_loader(
    data: WindowDataset, batch_size: int | None = None, rank: int = 0, world: int = 1
) -> DataLoader:
    """Batches in window order (``eval_batch_size`` windows by default); with ``world``
    ranks, every ``world``-th of them from ``rank`` on (each rank scores its own)."""
    size = eval_batch_size(data) if batch_size is None else batch_size
    batches = list(BatchSampler(SequentialSampler(data), size, drop_last=False))
    return DataLoader(data, sampler=batches[rank::world], batch_size=None)
