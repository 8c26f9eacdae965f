"""Grid-type (image) data sets: the `GridDataset` type, the ``.npy`` loader, and the
synthetic planted grid (the default for image models).

A grid data set is a ``.npy`` array ``[T, H, W]`` or ``[T, C, H, W]`` (DESIGN.md section
7), given as the file or as a directory holding exactly one ``.npy`` file, optionally with
a ``meta.json`` beside it (``name``, ``units``, ``latitude``, ``longitude``,
``steps_per_day``, ``step_hours``). Every cell of every frame must be a finite number: a
NaN frame is refused with an error naming it (SSIM and PSNR are undefined over missing
cells; fill or crop them first).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..calendar import Calendar, calendar_from_meta
from ..morph import PatchGrid
from ..sensors import PatchSensors
from .arrays import load_npy
from .graph_formats import ADJ_FILES, VALUE_FILES
from .meta import read_meta
from .missing import MissingValues
from .synthetic import farthest_points, planted_drivers


@dataclass
class GridDataset:
    """A gridded field: values ``[T, C, H, W]`` float32 in original units."""

    name: str
    values: np.ndarray  # [T, C, H, W] float32
    units: str  # e.g. "K", "" if unknown
    latitude: np.ndarray | None = None  # [H] for plotting, or None
    longitude: np.ndarray | None = None  # [W]
    planted: np.ndarray | None = None  # sorted planted patch indices (synthetic only) ...
    planted_patch: int | None = None  # ... for this patch size
    steps_per_day: int | None = None
    calendar: Calendar | None = None  # when each step is, where the data says so
    missing: MissingValues | None = None  # what --missing-value masked (set at load)

    @property
    def num_steps(self) -> int:
        return int(self.values.shape[0])

    @property
    def num_channels(self) -> int:
        return int(self.values.shape[1])

    @property
    def height(self) -> int:
        return int(self.values.shape[2])

    @property
    def width(self) -> int:
        return int(self.values.shape[3])

    kind = "grid"
    values_layout = "[T, C, H, W]"

    def sensor_space(self, patch: int) -> PatchSensors:
        """The ``patch x patch`` patches of the field as sensors (clear error if the field
        is smaller than a patch)."""
        return PatchSensors(
            self.patch_grid(patch),
            planted=self.planted_for(patch),
            frame=self.values[-1, 0],
            latitude=self.latitude,
            longitude=self.longitude,
            units=self.units,
        )

    def cell_name(self, cell: tuple[int, ...]) -> str:
        """How errors name the value at ``[channel, row, column]`` of ``values[t]``."""
        return f"cell {cell}"

    def patch_grid(self, patch: int) -> PatchGrid:
        """The :class:`PatchGrid` of this field for patch size ``patch`` (clear error if the
        field is smaller than a patch)."""
        return PatchGrid(self.height, self.width, patch)

    def planted_for(self, patch: int) -> np.ndarray | None:
        """Planted patch indices for patch size ``patch`` (None if unknown at that size)."""
        return self.planted if self.planted_patch == patch else None

    @property
    def planted_sparsity(self) -> float | None:
        """``1 - len(planted) / N`` at the planted patch size, or None."""
        if self.planted is None or self.planted_patch is None:
            return None
        return 1.0 - len(self.planted) / self.patch_grid(self.planted_patch).num_patches


def is_grid_data(path: str | os.PathLike) -> bool:
    """True if ``path`` is grid data: a ``.npy`` file with no adjacency beside it, or a
    directory with a ``.npy`` file and neither graph values nor an adjacency."""
    p = Path(path)
    if p.is_file():
        d = p.parent
        return p.suffix == ".npy" and not any((d / f).is_file() for f in ADJ_FILES)
    if p.is_dir():
        graphy = any((p / f).is_file() for f in (*VALUE_FILES, *ADJ_FILES))
        return not graphy and any(p.glob("*.npy"))
    return False


def _find_array(d: Path) -> Path:
    files = sorted(d.glob("*.npy"))
    if not files:
        raise FileNotFoundError(f"no .npy grid file in {str(d)!r}")
    if len(files) > 1:
        names = ", ".join(f.name for f in files)
        raise ValueError(f"{str(d)!r} holds several .npy files ({names}): pass the one to use")
    return files[0]


def load_grid_dataset(path: str | os.PathLike) -> GridDataset:
    """Load a grid data set (see the module docstring). ERA5 UK t2m loads from
    ``.../era5_uk_t2m``: ``[744, 1, 33, 49]`` in K."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"data set path {str(p)!r} does not exist")
    f = _find_array(p) if p.is_dir() else p
    if f.suffix != ".npy":
        raise ValueError(f"grid data must be a .npy file, got {f.name!r}")
    try:
        arr = load_npy(f)
    except (OSError, EOFError, ValueError) as e:
        raise ValueError(f"{f.name}: cannot read it as a numpy file ({e})") from None
    if np.iscomplexobj(arr) or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{f.name}: values must be real and numeric, got dtype {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise ValueError(
            f"{f.name}: a grid must be [T, H, W] or [T, C, H, W], got shape {arr.shape}"
        )
    if min(arr.shape) == 0:
        raise ValueError(f"{f.name} is empty (shape {arr.shape})")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    check_frames(arr, f.name)
    meta = read_meta(f.parent)
    lat, lon = meta.get("latitude"), meta.get("longitude")
    lat = np.asarray(lat, dtype=np.float64) if lat is not None else None
    lon = np.asarray(lon, dtype=np.float64) if lon is not None else None
    if lat is not None and lat.shape != (arr.shape[2],):
        lat = None
    if lon is not None and lon.shape != (arr.shape[3],):
        lon = None
    spd = meta.get("steps_per_day")
    if spd is None and meta.get("step_hours"):
        spd = round(24 / float(meta["step_hours"]))
    start = meta.get("start", meta.get("time_start"))
    calendar = None
    if spd is not None and isinstance(start, str):
        calendar = calendar_from_meta(
            {"steps_per_day": spd, "start": start[:19]}, f"meta.json in {str(f.parent)!r}"
        )
    name = meta.get("name") or (f.parent.name if p.is_dir() or f.stem in ("values",) else f.stem)
    return GridDataset(
        name=str(name),
        values=arr,
        units=str(meta.get("units", "")),
        latitude=lat,
        longitude=lon,
        steps_per_day=spd,
        calendar=calendar,
    )


def check_frames(values: np.ndarray, name: str = "grid") -> None:
    """Raise ``ValueError`` naming the first frame of ``values [T, C, H, W]`` that holds a
    NaN or an infinity."""
    bad = ~np.isfinite(values)
    if bad.any():
        per_frame = bad.reshape(values.shape[0], -1).sum(axis=1)
        t = int(np.argmax(per_frame > 0))
        c, y, x = (int(i) for i in np.argwhere(bad[t])[0])
        what = "NaN" if np.isnan(values[t, c, y, x]) else "infinite"
        raise ValueError(
            f"{name}: frame {t} has {int(per_frame[t])} {what} cell(s) (first at channel {c}, "
            f"row {y}, column {x}; {int((per_frame > 0).sum())} bad frame(s) in all): grid "
            "data must be complete, fill or crop the missing cells first"
        )


def synthetic_grid(
    height: int = 22,
    width: int = 22,
    patch: int = 4,
    num_sources: int = 6,
    num_steps: int = 2000,
    seed: int = 0,
    *,
    noise: float = 0.4,
    max_delay: int = 6,
    steps_per_day: int = 288,
) -> GridDataset:
    """A field driven from a few planted **source patches** (the default for image models).

    ``num_sources`` full (unpadded) patches are picked by farthest-point sampling of the
    patch centres; each carries a latent driver (the quasi-periodic AR(2) + daily cycle of
    :func:`~dynst_fast.data.synthetic_sensor_network`), read with a little noise by its
    pixels. Every other pixel reads a delayed, attenuated copy of its nearest source's
    driver (delay 1..``max_delay`` growing with distance: the field spreads out from the
    sources) plus white noise of std ``noise``, 0.8 of it (in std) shared by the
    patch so that it does not average out over the patch's cells. So the source patches'
    histories give every other cell's next steps, while a patch's own history tells them
    late and noisily. Values are ``50 + 10 * s``, ``[num_steps, 1, height, width]``; ``planted``
    holds the source patch indices for patch size ``patch``.
    """
    grid = PatchGrid(int(height), int(width), int(patch))
    full = [
        r * grid.cols + c for r in range(grid.height // patch) for c in range(grid.width // patch)
    ]
    if not 1 <= num_sources <= len(full):
        raise ValueError(
            f"num_sources must be in [1, {len(full)}] (full patches of a {height}x{width} "
            f"grid at patch size {patch}), got {num_sources}"
        )
    if num_steps < 4 * max(1, max_delay) or max_delay < 1 or noise < 0:
        raise ValueError("need num_steps >= 4 * max_delay, max_delay >= 1 and noise >= 0")
    rng = np.random.default_rng(seed)
    full = np.asarray(full)
    centres = np.stack([(full // grid.cols + 0.5) * patch, (full % grid.cols + 0.5) * patch], 1)
    dist_c = np.sqrt(((centres[:, None] - centres[None]) ** 2).sum(-1))
    sources = full[farthest_points(dist_c, num_sources, rng)]
    src_xy = np.stack(
        [(sources // grid.cols + 0.5) * patch, (sources % grid.cols + 0.5) * patch], 1
    )
    z = planted_drivers(num_steps, num_sources, steps_per_day, rng)

    yy, xx = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    pix = np.stack([yy.ravel(), xx.ravel()], 1)  # [H*W, 2]
    d = np.sqrt(((pix[:, None] - src_xy[None]) ** 2).sum(-1))  # [H*W, S]
    owner = grid.patch_of_pixel().numpy().ravel()
    sigma = float(np.median(d.min(axis=1))) + patch
    reach = max(float(d.min(axis=1).max()), 1e-12)
    sig = np.empty((num_steps, height * width))
    noise_all = rng.standard_normal((num_steps, height * width))
    noise_patch = rng.standard_normal((num_steps, grid.num_patches))
    for i in range(height * width):
        s_here = np.nonzero(sources == owner[i])[0]
        if len(s_here):
            sig[:, i] = z[:, s_here[0]] + 0.1 * noise_all[:, i]
            continue
        shared = noise * (0.8 * noise_patch[:, owner[i]] + 0.6 * noise_all[:, i])
        s = int(np.argmin(d[i]))
        lag = int(np.clip(1 + round((max_delay - 1) * d[i, s] / reach), 1, max_delay))
        mix = np.concatenate([np.full(lag, z[0, s]), z[:-lag, s]])
        atten = 0.7 + 0.3 * float(np.exp(-((d[i, s] / sigma) ** 2)))
        sig[:, i] = atten * mix + shared
    values = (50.0 + 10.0 * sig).reshape(num_steps, 1, height, width).astype(np.float32)
    return GridDataset(
        name="synthetic-grid",
        values=values,
        units="",
        planted=np.sort(sources).astype(np.int64),
        planted_patch=int(patch),
        steps_per_day=int(steps_per_day),
    )
