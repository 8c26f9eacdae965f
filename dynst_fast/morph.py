"""Stream morph: put sensors on one axis and everything a sensor reports on another.

- Graph input ``[B, T, N, C]`` <-> ``[B, N, T*C]`` (features ordered ``(t, c)``).
- Image input ``[B, T, C, H, W]`` <-> patches ``[B, N, T*C*p*p]``: every ``p x p`` patch is
  a sensor. H and W are zero-padded at the bottom and right up to a multiple of ``p``
  (recorded in a :class:`PatchGrid`) and the padding is cropped off again on the way back,
  so padded cells never reach a loss or a metric. Patches are numbered row-major over the
  patch grid; features are ordered ``(t, c, dy, dx)`` (as ``ops.patchify_compact``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def graph_to_stream(x: Tensor) -> Tensor:
    """``[B, T, N, C]`` -> ``[B, N, T*C]``."""
    if x.dim() != 4:
        raise ValueError(f"graph_to_stream: expected [B, T, N, C], got shape {tuple(x.shape)}")
    b, t, n, c = x.shape
    return x.permute(0, 2, 1, 3).reshape(b, n, t * c)


def stream_to_graph(s: Tensor, t: int, c: int) -> Tensor:
    """``[B, N, T*C]`` -> ``[B, T, N, C]``, the inverse of :func:`graph_to_stream`."""
    if s.dim() != 3 or s.shape[2] != t * c:
        raise ValueError(f"stream_to_graph: expected [B, N, {t}*{c}], got shape {tuple(s.shape)}")
    b, n, _ = s.shape
    return s.reshape(b, n, t, c).permute(0, 2, 1, 3)


@dataclass(frozen=True)
class PatchGrid:
    """The patch layout of an ``height x width`` field cut into ``patch x patch`` sensors.

    ``pad_h``/``pad_w`` cells of zero padding are added at the bottom/right; the grid has
    ``rows x cols`` patches, ``num_patches = rows * cols`` sensors numbered row-major.
    """

    height: int
    width: int
    patch: int

    def __post_init__(self) -> None:
        p = self.patch
        if isinstance(p, bool) or not isinstance(p, int) or p < 1:
            raise ValueError(f"patch size p must be a positive int, got {p!r}")
        for name in ("height", "width"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.height < p or self.width < p:
            raise ValueError(
                f"frame size {self.height}x{self.width} is smaller than the patch size {p}"
            )

    @property
    def pad_h(self) -> int:
        return -self.height % self.patch

    @property
    def pad_w(self) -> int:
        return -self.width % self.patch

    @property
    def rows(self) -> int:
        return (self.height + self.pad_h) // self.patch

    @property
    def cols(self) -> int:
        return (self.width + self.pad_w) // self.patch

    @property
    def num_patches(self) -> int:
        return self.rows * self.cols

    def patch_ids(self) -> list[str]:
        """Sensor ids ``r{row}c{col}``, row-major."""
        return [f"r{i}c{j}" for i in range(self.rows) for j in range(self.cols)]

    def patch_of_pixel(self) -> Tensor:
        """``[height, width]`` int64: the patch index of every (unpadded) pixel."""
        p = self.patch
        r = torch.arange(self.height) // p
        c = torch.arange(self.width) // p
        return r[:, None] * self.cols + c[None, :]

    def valid_fraction(self) -> Tensor:
        """``[N]`` float: the share of each patch's cells that are real (not padding)."""
        counts = torch.bincount(self.patch_of_pixel().flatten(), minlength=self.num_patches)
        return counts.to(torch.float32) / self.patch**2


def image_to_stream(x: Tensor, p: int) -> tuple[Tensor, PatchGrid]:
    """``[B, T, C, H, W]`` -> (``[B, N, T*C*p*p]``, its :class:`PatchGrid`); pads with 0."""
    if x.dim() != 5:
        raise ValueError(f"image_to_stream: expected [B, T, C, H, W], got shape {tuple(x.shape)}")
    b, t, c, h, w = x.shape
    grid = PatchGrid(int(h), int(w), p)
    x = F.pad(x, (0, grid.pad_w, 0, grid.pad_h))
    x = x.reshape(b, t, c, grid.rows, p, grid.cols, p).permute(0, 3, 5, 1, 2, 4, 6)
    return x.reshape(b, grid.num_patches, t * c * p * p), grid


def stream_to_image(s: Tensor, grid: PatchGrid, t: int, c: int) -> Tensor:
    """``[B, N, T*C*p*p]`` -> ``[B, T, C, H, W]`` with the padding cropped off; the inverse
    of :func:`image_to_stream`."""
    p = grid.patch
    if s.dim() != 3 or s.shape[1] != grid.num_patches or s.shape[2] != t * c * p * p:
        raise ValueError(
            f"stream_to_image: expected [B, {grid.num_patches}, {t}*{c}*{p}*{p}], "
            f"got shape {tuple(s.shape)}"
        )
    b = s.shape[0]
    x = s.reshape(b, grid.rows, grid.cols, t, c, p, p).permute(0, 3, 4, 1, 5, 2, 6)
    x = x.reshape(b, t, c, grid.rows * p, grid.cols * p)
    return x[..., : grid.height, : grid.width]


def gate_to_pixels(gate: Tensor, grid: PatchGrid) -> Tensor:
    """Per-patch values ``[N]`` -> per-pixel ``[H, W]`` (each pixel takes its patch's)."""
    if gate.shape != (grid.num_patches,):
        raise ValueError(
            f"gate must have one entry per patch, [{grid.num_patches}], got {tuple(gate.shape)}"
        )
    return gate[grid.patch_of_pixel().to(gate.device)]
