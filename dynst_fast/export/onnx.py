"""The ONNX export target: a deployable model as a standard ONNX file, verified.

The model is traced through its export forms (``forms.standard_forms``), so the file
holds default-domain ONNX operators only and stock onnxruntime runs it. Batch is
dynamic. Export writes to a temporary file, runs onnxruntime and PyTorch on real test
windows, and only when they agree (max |onnx - torch| / max |torch| <= ``TOLERANCE``)
moves the model and its sidecar ``<out>.json`` into place. On any failure nothing is left
behind.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..deploy import Deployable
from ..files import honour_umask, write_json
from ..serve import make_session
from ..sidecar import sha256_of
from .forms import standard_forms

SUFFIX = ".onnx"
OPSET = 18
TOLERANCE = 1e-4
INPUT_NAME, ALIVE_NAME, OUTPUT_NAME = "x", "alive", "y"
EXPORTER_LOGGERS = ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")


class ExportError(RuntimeError, ValueError):
    """Export could not produce a verified model (nothing was written); a ``ValueError``
    too, so that the CLI reports it as one line like any other bad input."""


def to_onnx(model: Deployable, example: Tensor, path: Path, opset: int = OPSET) -> None:
    """The model's export form traced on ``example`` and written by ``torch.onnx.export``
    (dynamo), batch dynamic; a model that ``takes_alive`` gets a second input ``alive
    [K]`` (float32, 1 = reporting, 0 = failed)."""
    module, alive = model.module, model.takes_alive
    if example.shape[0] < 2:
        example = example.expand(2, *example.shape[1:]).contiguous()
    more = (torch.ones(example.shape[model.sensor_axis]),) if alive else ()
    batch = torch.export.Dim("batch", min=2)
    with torch.no_grad(), _exporters_quiet():
        gm = standard_forms(module, example, *more)
        torch.onnx.export(
            gm,
            (example, *more),
            str(path),
            dynamo=True,
            dynamic_shapes=({0: batch}, *(None for _ in more)),
            input_names=[INPUT_NAME, *([ALIVE_NAME] if alive else [])],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            external_data=False,
            verbose=False,
        )
    if alive:
        _default_all_alive(path, int(more[0].numel()))


@contextmanager
def _exporters_quiet() -> Iterator[None]:
    """Keep the exporters' own chatter (torch.onnx's and onnxscript's warnings and log
    lines: optional packages they skip, attribute types they default) from the user:
    export reports its own result, and a real failure still raises."""
    loggers = [logging.getLogger(n) for n in EXPORTER_LOGGERS]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _default_all_alive(path: Path, k: int) -> None:
    """Give the ``alive`` input a default of all ones (an initializer of the same name,
    which onnxruntime lets a feed override), so a caller that feeds only ``x`` gets every
    sensor reporting."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    model.graph.initializer.append(numpy_helper.from_array(np.ones(k, np.float32), ALIVE_NAME))
    onnx.save(model, str(path))


def non_default_domains(path: Path) -> list[str]:
    """``domain::op`` of every node outside the default ONNX domain (empty when clean)."""
    import onnx

    model = onnx.load(str(path))
    bad = set()
    for g in [model.graph, *model.functions]:
        for node in g.node:
            if node.domain not in ("", "ai.onnx"):
                bad.add(f"{node.domain}::{node.op_type}")
    return sorted(bad)


def verify(model: Deployable, path: Path, inputs: Tensor, batch: int = 16) -> dict[str, float]:
    """Run PyTorch and onnxruntime on ``inputs`` (in batches; for a model that takes
    ``alive``, each batch also with ``alive`` fed as all ones and with a seeded quarter of
    the sensors failed); raise ``ExportError`` if ``max |onnx - torch| / max |torch|``
    exceeds the tolerance."""
    module, alive = model.module, model.takes_alive
    sess = make_session(path)  # the session dynst predict runs: onnxruntime's errors only
    err, scale = 0.0, 0.0
    k = inputs.shape[model.sensor_axis]
    gen = torch.Generator().manual_seed(0)
    starts = range(0, inputs.shape[0], batch)
    cases = [(s, None) for s in starts]  # alive not fed: every sensor reporting
    if alive:
        cases += [(s, torch.ones(k)) for s in starts]
        cases += [(s, (torch.rand(k, generator=gen) >= 0.25).float()) for s in starts]
    for start, a in cases:
        xb = inputs[start : start + batch]
        feed = {INPUT_NAME: xb.numpy()}
        with torch.no_grad():
            want = (module(xb) if a is None else module(xb, a)).numpy()
        if a is not None:
            feed[ALIVE_NAME] = a.numpy()
        got = sess.run([OUTPUT_NAME], feed)[0]
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


def export(model: Deployable, inputs: Tensor, out: Path, opset: int = OPSET) -> dict[str, Any]:
    """Write ``model`` to ``out`` (verified on ``inputs``) and ``out.json``: its sidecar
    completed with the input/output names, the opset, the verification and the sha256."""
    side_path = Path(f"{out}.json")
    if side_path.is_dir() or side_path.is_symlink():
        raise ExportError(
            f"{side_path} (the sidecar's place beside --out) is a directory or a link"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=SUFFIX)
    honour_umask(fd)  # the published file gets the mode of any other run file
    os.close(fd)
    tmp, tmp_json = Path(tmp_name), Path(f"{tmp_name}.json")
    sidecar = model.sidecar
    try:
        to_onnx(model, inputs[:2], tmp, opset)
        bad = non_default_domains(tmp)
        if bad:
            raise ExportError(f"the exported graph uses non-standard operators: {bad}")
        check = verify(model, tmp, inputs)
        meta = dict(sidecar)
        meta["input"] = {"name": INPUT_NAME, **sidecar["input"]}
        meta["output"] = {"name": OUTPUT_NAME, **sidecar["output"]}
        if model.takes_alive:
            k = inputs.shape[model.sensor_axis]
            meta["alive"] = {"name": ALIVE_NAME, "shape": [k], "dtype": "float32"}
        meta.update(
            opset=opset,
            verification={**check, "tolerance": TOLERANCE, "metric": "max|onnx-torch|/max|torch|"},
            sha256=sha256_of(tmp),
        )
        write_json(tmp_json, meta)
        os.replace(tmp, out)
        os.replace(tmp_json, f"{out}.json")
    except BaseException:
        tmp.unlink(missing_ok=True)
        tmp_json.unlink(missing_ok=True)
        raise
    return meta
