"""``dynst export``: a run's deployable model (``dynst_fast.deploy``) written for a target.

Targets live here, one module each, with ``SUFFIX`` (the file ending that selects it)
and ``export(deployable, inputs, out) -> sidecar``: ``onnx`` is the first. The sidecar
``<out>.json`` (``dynst_fast.sidecar``) records what the model takes and returns, so
that ``dynst predict`` can check an input without the training code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..artifacts import RunBundle, load_run
from ..deploy import NoCompleteWindow, deployable, example_inputs
from ..rundir import check_output_file
from . import onnx
from .onnx import ExportError

TARGETS = {"onnx": onnx}


def target_for(out: Path):
    """The target whose file ending ``out`` has."""
    for target in TARGETS.values():
        if out.suffix == target.SUFFIX:
            return target
    endings = ", ".join(t.SUFFIX for t in TARGETS.values())
    raise ValueError(f"--out must name a file ending in {endings}, got {out}")


def export_bundle(bundle: RunBundle, out: str | os.PathLike, dense: bool = False) -> dict[str, Any]:
    """Export the compacted (or ``dense``) model of a loaded run to ``out`` and write
    ``out.json``; returns the sidecar. Raises ``ExportError`` (nothing written) if the
    target's verification fails."""
    out = Path(out)
    target = target_for(out)
    check_output_file(out)
    model = deployable(bundle, dense)
    try:
        inputs = example_inputs(bundle, model.index)
    except NoCompleteWindow as exc:
        raise ExportError(str(exc)) from None
    return target.export(model, inputs, out)


def export_run(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    dense: bool = False,
    data: str | None = None,
) -> dict[str, Any]:
    """Export a run directory's compacted (or ``dense``) model (:func:`export_bundle`);
    ``data``: the run's data, if it has moved since the run."""
    target_for(Path(out))
    check_output_file(out)
    return export_bundle(load_run(run_dir, data), out, dense)


__all__ = ["ExportError", "TARGETS", "export_bundle", "export_run", "target_for"]
