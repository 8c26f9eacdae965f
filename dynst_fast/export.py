"""``dynst export``: the compacted model of a run as a standard ONNX file, verified.

The exported model takes **only the active sensors' data**, in original units, in the
order of ``mask.json``: ``[B, T_in, K, C]`` for graphs, the K active patch tiles
``[B, K, T_in, C, p, p]`` for images. It returns the whole-field forecast in original
units (``[B, T_out, N, C]``, or ``[B, T_out, C, H, W]``): normalisation and theta are
folded in. Batch is dynamic. The ops are traced through their plain-PyTorch forms
(message passing as gather / multiply / sum over padded rows, compaction as gather and
scatter; message passing on graphs of up to 4M dense entries as one MatMul), so the
file holds default-domain ONNX operators only and stock onnxruntime runs it.

Export writes to a temporary file, runs onnxruntime and PyTorch on real test windows,
and only when they agree (max |onnx - torch| / max |torch| <= 1e-4) moves the model and
its sidecar ``<out>.json`` into place. On any failure nothing is left behind.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from . import __version__
from .artifacts import load_checkpoint, write_json
from .graph import CSRGraph
from .morph import PatchGrid, image_to_stream, stream_to_image
from .serve import sha256_of

OPSET = 18
TOLERANCE = 1e-4
SIDECAR_FORMAT = 1
INPUT_NAME, OUTPUT_NAME = "x", "y"


class ExportError(RuntimeError):
    """Export could not produce a verified model (nothing was written)."""


class ServingModel(nn.Module):
    """Original units in, original units out, around a compacted (or dense) graph model.

    ``forward(x[B, T_in, K, C]) -> [B, T_out, N, C]``: ``x`` is normalised with the
    statistics of its K sensors, run through ``model``, and the whole-field forecast
    de-normalised with those of all N sensors.
    """

    def __init__(
        self, model: nn.Module, in_mean: Tensor, in_std: Tensor, mean: Tensor, std: Tensor
    ) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("in_mean", in_mean.to(torch.float32))
        self.register_buffer("in_std", in_std.to(torch.float32))
        self.register_buffer("out_mean", mean.to(torch.float32))
        self.register_buffer("out_std", std.to(torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        y = self.model((x - self.in_mean) / self.in_std)
        return y * self.out_std + self.out_mean


class ImageServingModel(nn.Module):
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
    ) -> None:
        super().__init__()
        self.model, self.grid, self.frames_input = model, grid, frames_input
        c = mean.shape[0]
        pad = (0, grid.pad_w, 0, grid.pad_h)
        mean_t = _tiles(torch.nn.functional.pad(mean.to(torch.float32), pad), grid)[index]
        std_t = _tiles(torch.nn.functional.pad(std.to(torch.float32), pad, value=1.0), grid)
        valid = torch.nn.functional.pad(torch.ones(c, grid.height, grid.width), pad)
        self.register_buffer("in_mean", mean_t[None, :, None])  # [1, K, 1, C, p, p]
        self.register_buffer("in_std", std_t[index][None, :, None])
        self.register_buffer("in_valid", _tiles(valid, grid)[index][None, :, None])
        self.register_buffer("out_mean", mean.to(torch.float32))  # [C, H, W]
        self.register_buffer("out_std", std.to(torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        z = (x - self.in_mean) / self.in_std * self.in_valid
        b, k, t, c, p, _ = z.shape
        patches = z.reshape(b, k, t * c * p * p)
        if self.frames_input:
            patches = stream_to_image(patches, self.grid, t, c)
        return self.model(patches) * self.out_std + self.out_mean


def _tiles(field: Tensor, grid: PatchGrid) -> Tensor:
    """A padded ``[C, rows*p, cols*p]`` field -> its patches ``[N, C, p, p]``, row-major."""
    c, p = field.shape[0], grid.patch
    t = field.reshape(c, grid.rows, p, grid.cols, p).permute(1, 3, 0, 2, 4)
    return t.reshape(grid.num_patches, c, p, p)


def frames_to_tiles(frames: Tensor, grid: PatchGrid) -> Tensor:
    """``[B, T, C, H, W]`` -> every patch tile ``[B, N, T, C, p, p]`` (zero padding)."""
    b, t, c = frames.shape[:3]
    patches, _ = image_to_stream(frames, grid.patch)
    return patches.reshape(b, grid.num_patches, t, c, grid.patch, grid.patch)


@dataclass
class RunBundle:
    """What a run directory holds, rebuilt: models, sparsifier state, data windows."""

    checkpoint: dict[str, Any]
    model: nn.Module  # the sparse run's gated model
    dense: nn.Module | None  # the run's dense model (None for old checkpoints)
    active_index: Tensor  # [K] int64, ascending (mask.json order)
    theta: Tensor  # [N]
    splits: Any  # WindowSplits of the run's dataset
    sensor_ids: list[str]  # N ids: graph sensors, or image patches r{row}c{col}
    grid: PatchGrid | None  # the patch grid of an image model; None for graphs


def load_run(run_dir: str | os.PathLike, data: str | None = None) -> RunBundle:
    """Rebuild a ``dynst run`` directory's models and test windows.

    ``data`` overrides the dataset path recorded in the run (for moved data).
    """
    from .data import make_windows
    from .run import RunConfig, load_dataset, rebuild_model
    from .sparsifier import Sparsifier

    ck = load_checkpoint(run_dir)
    rc = dict(ck["run_config"])
    if data is not None:
        rc["data"] = data
    try:
        ds = load_dataset(RunConfig(**rc))
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"{exc} (the run's data is needed to verify the export on test windows; "
            "pass --data to point at it)"
        ) from exc
    model = rebuild_model(ck, ds)
    dense = rebuild_model(ck, ds, state="dense_model_state") if "dense_model_state" in ck else None
    grid = PatchGrid(**ck["grid"]) if "grid" in ck else None
    sp = Sparsifier.from_state_dict(ck["sparsifier"])
    return RunBundle(
        checkpoint=ck,
        model=model,
        dense=dense,
        active_index=sp.active_index(),
        theta=sp.theta.detach().clone(),
        splits=make_windows(ds, ck["t_in"], ck["t_out"]),
        sensor_ids=list(ck["sensor_ids"]),
        grid=grid,
    )


def serving_model(bundle: RunBundle, dense: bool = False) -> tuple[nn.Module, Tensor]:
    """The module to export and its input index ``[K]`` into the N sensors."""
    mean = torch.as_tensor(bundle.splits.mean, dtype=torch.float32)
    std = torch.as_tensor(bundle.splits.std, dtype=torch.float32)
    n = bundle.theta.numel()
    if dense:
        if bundle.dense is None:
            raise ValueError(
                "this run's checkpoint has no dense model (written by an older version); "
                "re-run `dynst run` to export --dense"
            )
        index = torch.arange(n)
        inner: nn.Module = _Ungated(bundle.dense)
    else:
        index = bundle.active_index
        inner = bundle.model.compact(index, bundle.theta).eval()
    if bundle.grid is not None:
        module = ImageServingModel(inner, bundle.grid, index, mean, std, frames_input=dense)
        return module.eval(), index
    return ServingModel(inner, mean[index], std[index], mean, std).eval(), index


class _Ungated(nn.Module):
    """A gated model called with every sensor on: ``forward(x) = model(x, None)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def verification_inputs(bundle: RunBundle, index: Tensor, max_windows: int = 64) -> Tensor:
    """Real test windows in original units, the input sensors only, without NaN:
    ``[W, T_in, K, C]`` (graphs) or ``[W, K, T_in, C, p, p]`` tiles (images), float32."""
    x, _ = bundle.splits.test.tensors()
    x = bundle.splits.denormalize(x.to(torch.float32))
    x = x[torch.isfinite(x).flatten(1).all(dim=1)][:max_windows]
    if x.shape[0] == 0:
        raise ExportError("no complete (NaN-free) test window to verify the export on")
    if bundle.grid is not None:
        return frames_to_tiles(x, bundle.grid)[:, index].contiguous()
    return x[:, :, index].contiguous()


def _prime(module: nn.Module) -> None:
    """Build the cached export arrays (dense matrix or padded rows) of every graph held by
    ``module``, so that the trace reads them as constants instead of tracing their
    data-dependent construction."""
    from .ops.reference import EXPORT_DENSE_MAX

    for m in module.modules():
        for v in vars(m).values():
            if isinstance(v, CSRGraph):
                if v.num_rows * v.num_cols <= EXPORT_DENSE_MAX:
                    v.cached_dense()
                else:
                    v.padded_rows()


def to_onnx(module: nn.Module, example: Tensor, path: Path, opset: int = OPSET) -> None:
    """Trace ``module(example)`` with ``torch.onnx.export`` (dynamo), batch dynamic."""
    _prime(module)
    batch = torch.export.Dim("batch", min=2)  # export specialises sizes 0 and 1
    if example.shape[0] < 2:
        example = example.expand(2, *example.shape[1:]).contiguous()
    with torch.no_grad():
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=True,
            dynamic_shapes=({0: batch},),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            external_data=False,
            verbose=False,
        )


def non_default_domains(path: Path) -> list[str]:
    """``domain::op`` of every node outside the default ONNX domain (empty when clean)."""
    import onnx

    model = onnx.load(str(path))
    bad = set()
    graphs = [model.graph] + [f for f in model.functions]
    for g in graphs:
        for node in g.node:
            if node.domain not in ("", "ai.onnx"):
                bad.add(f"{node.domain}::{node.op_type}")
    return sorted(bad)


def verify(module: nn.Module, path: Path, inputs: Tensor, batch: int = 16) -> dict[str, float]:
    """Run PyTorch and onnxruntime on ``inputs`` (in batches); raise ``ExportError`` if
    ``max |onnx - torch| / max |torch|`` exceeds the tolerance."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    err, scale = 0.0, 0.0
    for start in range(0, inputs.shape[0], batch):
        xb = inputs[start : start + batch]
        with torch.no_grad():
            want = module(xb).numpy()
        got = sess.run([OUTPUT_NAME], {INPUT_NAME: xb.numpy()})[0]
        if got.shape != want.shape:
            raise ExportError(f"onnxruntime gave shape {got.shape}, PyTorch {want.shape}")
        if not np.isfinite(got).all():
            raise ExportError("onnxruntime produced NaN or inf on a test window")
        err = max(err, float(np.abs(got - want).max()))
        scale = max(scale, float(np.abs(want).max()))
    rel = err / max(scale, np.finfo(np.float32).tiny)
    if not rel <= TOLERANCE:
        raise ExportError(
            f"onnxruntime and PyTorch disagree: max relative error {rel:.3g} > {TOLERANCE:g} "
            f"(max abs error {err:.3g}); nothing was written"
        )
    return {"max_rel_error": rel, "max_abs_error": err, "windows": int(inputs.shape[0])}


def export_run(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    dense: bool = False,
    data: str | None = None,
    opset: int = OPSET,
) -> dict[str, Any]:
    """Export a run's compacted (or ``dense``) model to ``out`` and write ``out.json``.

    Returns the sidecar dict. Raises ``ExportError`` (nothing written) if the model uses
    a non-default operator domain or onnxruntime disagrees with PyTorch.
    """
    out = Path(out)
    if out.suffix != ".onnx":
        raise ValueError(f"--out must name a .onnx file, got {out}")
    bundle = load_run(run_dir, data)
    module, index = serving_model(bundle, dense)
    inputs = verification_inputs(bundle, index)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".onnx")
    os.close(fd)
    tmp, tmp_json = Path(tmp_name), Path(f"{tmp_name}.json")
    try:
        to_onnx(module, inputs[:2], tmp, opset)
        bad = non_default_domains(tmp)
        if bad:
            raise ExportError(f"the exported graph uses non-standard operators: {bad}")
        check = verify(module, tmp, inputs)
        sidecar = _sidecar(bundle, index, dense, opset, check, sha256_of(tmp))
        write_json(tmp_json, sidecar)
        os.replace(tmp, out)
        os.replace(tmp_json, f"{out}.json")
    except BaseException:
        tmp.unlink(missing_ok=True)
        tmp_json.unlink(missing_ok=True)
        raise
    return sidecar


def _sidecar(
    bundle: RunBundle, index: Tensor, dense: bool, opset: int, check: dict, sha: str
) -> dict[str, Any]:
    ck = bundle.checkpoint
    n, c, k = len(bundle.sensor_ids), int(ck["num_channels"]), int(index.numel())
    t_in, t_out = int(ck["t_in"]), int(ck["t_out"])
    meta: dict[str, Any] = {
        "format": SIDECAR_FORMAT,
        "kind": "graph" if bundle.grid is None else "image",
        "model": ck["model_name"],
        "dense": dense,
        "dataset": ck.get("dataset"),
        "sensor_ids": [bundle.sensor_ids[i] for i in index.tolist()],
        "input_index": index.tolist(),
        "num_sensors": n,
        "all_sensor_ids": bundle.sensor_ids,
        "channels": c,
        "t_in": t_in,
        "t_out": t_out,
        "units": ck.get("units", ""),
        "opset": opset,
        "input": {"name": INPUT_NAME, "shape": ["batch", t_in, k, c]},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", t_out, n, c]},
        "dtype": "float32",
        "verification": {**check, "tolerance": TOLERANCE, "metric": "max|onnx-torch|/max|torch|"},
        "sha256": sha,
        "version": __version__,
    }
    g = bundle.grid
    if g is not None:
        p = g.patch
        meta["grid"] = {"height": g.height, "width": g.width, "patch": p, "rows": g.rows,
                        "cols": g.cols}  # fmt: skip
        meta["input"]["shape"] = ["batch", k, t_in, c, p, p]
        meta["output"]["shape"] = ["batch", t_out, c, g.height, g.width]
    return meta
