"""``dynst export``: a run's deployable model (``dynst_fast.deploy``) written for a target.

Targets live here, one module each, with ``SUFFIX`` (the file ending that selects it)
and ``export(module, inputs, out, sidecar) -> sidecar``: ``onnx`` is the first. The
sidecar ``<out>.json`` records what the model takes and returns (``sensor_ids`` in input
order, ``all_sensor_ids`` in output order, shapes, ``t_in``, ``t_out``, ``units``...), so
that ``dynst predict`` can check an input without the training code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import __version__
from ..artifacts import check_output_file, load_run
from ..deploy import NoCompleteWindow, deployable, example_inputs
from . import onnx
from .onnx import ExportError

TARGETS = {"onnx": onnx}
SIDECAR_FORMAT = 1


def target_for(out: Path):
    """The target whose file ending ``out`` has."""
    for target in TARGETS.values():
        if out.suffix == target.SUFFIX:
            return target
    endings = ", ".join(t.SUFFIX for t in TARGETS.values())
    raise ValueError(f"--out must name a file ending in {endings}, got {out}")


def export_run(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    dense: bool = False,
    data: str | None = None,
) -> dict[str, Any]:
    """Export a run's compacted (or ``dense``) model to ``out`` and write ``out.json``.

    Returns the sidecar dict. Raises ``ExportError`` (nothing written) if the target's
    verification fails.
    """
    out = Path(out)
    target = target_for(out)
    check_output_file(out)
    bundle = load_run(run_dir, data)
    module, index = deployable(bundle, dense)
    try:
        inputs = example_inputs(bundle, index)
    except NoCompleteWindow as exc:
        raise ExportError(str(exc)) from None
    ck, space = bundle.checkpoint, bundle.space
    n = space.num_sensors
    c, t_in, t_out = int(ck["num_channels"]), int(ck["t_in"]), int(ck["t_out"])
    sidecar = {
        "format": SIDECAR_FORMAT,
        "model": ck["model"]["name"],
        "dense": dense,
        "dataset": ck.get("dataset"),
        "sensor_ids": [space.ids[i] for i in index.tolist()],
        "input_index": index.tolist(),
        "num_sensors": n,
        "all_sensor_ids": list(space.ids),
        "channels": c,
        "t_in": t_in,
        "t_out": t_out,
        "units": ck.get("units", ""),
        "dtype": "float32",
        "version": __version__,
        **space.sidecar(index, t_in, t_out, c),
    }
    return target.export(module, inputs, out, sidecar)


__all__ = ["ExportError", "TARGETS", "export_run", "target_for"]
