"""Image sensors: every ``p x p`` patch of a gridded field, inputs ``[B, T, C, H, W]``.

H and W are zero-padded at the bottom/right up to a multiple of p (a :class:`PatchGrid`);
padded cells never reach a loss or a metric. Patches are numbered row-major, their ids
are ``r{row}c{col}``; the active input of a compacted model is the active patches
``[B, K, T*C*p*p]`` (``ops.patchify_compact``), the served input the active patch tiles
``[B, K, T, C, p, p]``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import ops
from ..metrics import StreamingMetrics
from ..morph import PatchGrid, gate_to_pixels, image_to_stream, stream_to_image
from .base import SensorSpace


class PatchSensors(SensorSpace):
    """The patches of a field cut by ``grid``.

    Args:
        grid: the :class:`PatchGrid` (field size and patch size).
        planted: sorted planted patch indices (synthetic data), or None.
        frame: ``[H, W]`` values drawn under the patches in the picture (None: blank).
        latitude, longitude: ``[H]`` / ``[W]`` axis labels of the picture, or None.
        units: the values' units, for the picture's colour bar.
    """

    kind: ClassVar[str] = "grid"
    data_description: ClassVar[str] = "grid (.npy [T, H, W])"
    noun: ClassVar[str] = "patches"
    metrics_need_range: ClassVar[bool] = True  # SSIM and PSNR scale by the data range

    def __init__(
        self,
        grid: PatchGrid,
        planted: np.ndarray | None = None,
        frame: np.ndarray | None = None,
        latitude: np.ndarray | None = None,
        longitude: np.ndarray | None = None,
        units: str = "",
    ) -> None:
        super().__init__(grid.patch_ids(), planted)
        self.grid = grid
        self.frame, self.latitude, self.longitude, self.units = frame, latitude, longitude, units

    # ---------------------------------------------------------------- inputs
    def check_input(self, x, who, t=None, channels=None):
        g = self.grid
        want = [t, channels, g.height, g.width]
        shape = ", ".join("T" if v is None and i == 0 else "C" if v is None else str(v)
                          for i, v in enumerate(want))  # fmt: skip
        ok = x.dim() == 5 and all(w is None or x.shape[1 + i] == w for i, w in enumerate(want))
        if not ok:
            msg = f"{who}: x must have shape [B, {shape}], got {tuple(x.shape)}"
            if channels is not None and x.dim() == 5 and x.shape[2] != channels:
                msg += f" (the model has {channels} channel(s), the data {x.shape[2]})"
            raise ValueError(msg)

    def check_active_input(self, x_active, k, who, t, channels):
        p = self.grid.patch
        f = None if t is None else t * channels * p * p
        if (
            x_active.dim() != 3
            or x_active.shape[1] != k
            or (f is not None and x_active.shape[2] != f)
            or x_active.shape[2] % (channels * p * p)
        ):
            want = f"T*{channels}*{p}*{p}" if f is None else str(f)
            raise ValueError(
                f"{who}: expected the active patches [B, {k}, {want}], "
                f"got {tuple(x_active.shape)} (use gather_input(frames))"
            )

    def gather(self, x: Tensor, index: Tensor) -> Tensor:
        return ops.patchify_compact(x, x.new_ones(self.num_sensors), index, self.grid.patch)

    def to_stream(self, x: Tensor) -> Tensor:
        return image_to_stream(x, self.grid.patch)[0]

    def from_stream(self, s: Tensor, t: int, channels: int) -> Tensor:
        return stream_to_image(s, self.grid, t, channels)

    def active_stream(self, x_active: Tensor, channels: int) -> tuple[Tensor, int]:
        return x_active, int(x_active.shape[2]) // (channels * self.grid.patch**2)

    def gate_input(self, x: Tensor, gate: Tensor) -> Tensor:
        return x * gate_to_pixels(gate.to(x.dtype), self.grid)

    # ---------------------------------------------------------------- evaluation
    def metric_stream(self, t_out: int, target_range: Callable[[], float]) -> StreamingMetrics:
        """MAE/RMSE plus SSIM and PSNR (as ``dynst_fast.metrics.image_metrics``), with the
        data range R = the targets' max - min."""
        return StreamingMetrics(t_out, data_range=target_range())

    def cells(self, x: Tensor) -> Tensor:
        """``[B, T, C, H, W] -> [B, T, H*W, C]``: every pixel a series."""
        b, t, c, h, w = x.shape
        return x.permute(0, 1, 3, 4, 2).reshape(b, t, h * w, c)

    def from_cells(self, y: Tensor, like: Tensor) -> Tensor:
        b, t, _, c = y.shape
        h, w = like.shape[-2:]
        return y.reshape(b, t, h, w, c).permute(0, 1, 4, 2, 3)

    # ---------------------------------------------------------------- nearness
    NEARNESS: ClassVar[tuple[str, ...]] = ("auto", "grid")

    def candidates(self, length: int, by: str = "auto") -> tuple[np.ndarray, np.ndarray]:
        """By distance between patch centres on the grid, in patches."""
        from .nearness import nearest_by_coords

        self.check_nearness(by)
        g = self.grid
        rows, cols = np.divmod(np.arange(g.rows * g.cols), g.cols)
        return nearest_by_coords(np.stack([rows, cols], 1).astype(np.float64), length)

    # ---------------------------------------------------------------- artifacts
    def state(self) -> dict[str, Any]:
        g = self.grid
        return {"kind": self.kind, "height": g.height, "width": g.width, "patch": g.patch,
                **self.calendar_state()}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PatchSensors:
        grid = PatchGrid(int(state["height"]), int(state["width"]), int(state["patch"]))
        return cls(grid).restore_calendar(state)

    def check_matches(self, other: SensorSpace) -> None:
        super().check_matches(other)
        mine, theirs = self.grid, other.grid
        if (theirs.height, theirs.width) != (mine.height, mine.width):
            raise ValueError(
                f"the data's frames are {theirs.height}x{theirs.width} but the checkpoint's "
                f"model was trained on {mine.height}x{mine.width}"
            )

    def metrics_fields(self) -> dict[str, Any]:
        g = self.grid
        return {
            "grid": {
                "height": g.height,
                "width": g.width,
                "patch": g.patch,
                "rows": g.rows,
                "cols": g.cols,
                "pad_bottom": g.pad_h,
                "pad_right": g.pad_w,
            }
        }

    def notes(self, scores: dict[str, Any]) -> list[str]:
        g = self.grid
        data_range = scores.get("data_range", float("nan"))
        return [
            f"Sensors are the {g.rows} x {g.cols} patches of {g.patch} x {g.patch} cells of "
            f"the {g.height} x {g.width} field (padded with {g.pad_h} row(s) at the bottom and "
            f"{g.pad_w} column(s) at the right; padding never counts in a metric). SSIM and "
            f"PSNR use the data range of the test targets ({data_range:.3f})."
        ]

    def picture(
        self, path: str | os.PathLike, active, theta, title: str, gain=None,
        gain_label: str | None = None,
    ) -> None:  # fmt: skip
        from ..plot import draw_patches

        frame = self.frame if self.frame is not None else np.zeros((self.grid.height,
                                                                    self.grid.width))  # fmt: skip
        draw_patches(
            path,
            frame,
            self.grid,
            active,
            planted=self.planted,
            theta=theta,
            latitude=self.latitude,
            longitude=self.longitude,
            units=self.units,
            title=title,
            gain=gain,
            **({} if gain_label is None else {"gain_label": gain_label}),
        )

    # ---------------------------------------------------------------- serving
    def serving_module(self, model, index, mean, std, full=False) -> nn.Module:
        return PatchServing(model, self.grid, index, mean, std, frames_input=full,
                            calendar=self.calendar_features)  # fmt: skip

    def serving_input(self, x: Tensor, index: Tensor) -> Tensor:
        return frames_to_tiles(x, self.grid)[:, index].contiguous()

    def sidecar(self, index, t_in, t_out, channels) -> dict[str, Any]:
        g, k, p = self.grid, int(index.numel()), self.grid.patch
        return {
            "kind": "image",
            "input": {"shape": ["batch", k, t_in, channels + self.calendar_features, p, p]},
            "output": {"shape": ["batch", t_out, channels, g.height, g.width]},
            "grid": {
                "height": g.height,
                "width": g.width,
                "patch": p,
                "rows": g.rows,
                "cols": g.cols,
            },  # fmt: skip
            **self.calendar_state(),
        }


def frames_to_tiles(frames: Tensor, grid: PatchGrid) -> Tensor:
    """``[B, T, C, H, W]`` -> every patch tile ``[B, N, T, C, p, p]`` (zero padding)."""
    b, t, c = frames.shape[:3]
    patches, _ = image_to_stream(frames, grid.patch)
    return patches.reshape(b, grid.num_patches, t, c, grid.patch, grid.patch)


class PatchServing(nn.Module):
    """The image form: K patch tiles ``[B, K, T_in, C, p, p]`` (original units) in, the
    whole field ``[B, T_out, C, H, W]`` (original units) out.

    Tiles are cut row-major from the field zero-padded at the bottom/right to a multiple
    of p; cells of a tile that fall outside the field are ignored. ``model`` takes the
    normalised patches ``[B, K, T_in*C*p*p]`` (a compacted image model), or, with
    ``frames_input``, the full frames ``[B, T_in, C, H, W]`` (the dense model; then K = N).
    """

    def __init__(
        self,
        model: nn.Module,
        grid: PatchGrid,
        index: Tensor,
        mean: Tensor,
        std: Tensor,
        frames_input: bool = False,
        calendar: int = 0,
    ) -> None:
        super().__init__()
        self.model, self.grid, self.frames_input = model, grid, frames_input
        mean, std = mean.to(torch.float32), std.to(torch.float32)
        out_mean, out_std = mean, std
        if calendar:  # calendar channels pass through unscaled
            shape = (calendar, *mean.shape[1:])
            mean = torch.cat([mean, mean.new_zeros(shape)])
            std = torch.cat([std, std.new_ones(shape)])
        pad = (0, grid.pad_w, 0, grid.pad_h)
        valid = F.pad(torch.ones_like(mean), pad)

        def tiles(field: Tensor) -> Tensor:  # a padded [C, rows*p, cols*p] -> [1, K, 1, C, p, p]
            return frames_to_tiles(field[None, None], grid)[0, :, 0][index][None, :, None]

        self.register_buffer("in_mean", tiles(F.pad(mean, pad)))
        self.register_buffer("in_std", tiles(F.pad(std, pad, value=1.0)))
        self.register_buffer("in_valid", tiles(valid))
        self.register_buffer("out_mean", out_mean)  # [C, H, W]
        self.register_buffer("out_std", out_std)

    def forward(self, x: Tensor, alive: Tensor | None = None) -> Tensor:
        """``alive [K]``: 1 for a reporting patch, 0 for a failed one (if the model takes it)."""
        z = (x - self.in_mean) / self.in_std * self.in_valid
        b, k, t, c, p, _ = z.shape
        patches = z.reshape(b, k, t * c * p * p)
        if self.frames_input:
            patches = stream_to_image(patches, self.grid, t, c)
        y = self.model(patches) if alive is None else self.model(patches, alive)
        return y * self.out_std + self.out_mean
