"""Run-directory files: atomic writes, the checkpoint, and loading a run back."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .graph import CSRGraph

CHECKPOINT = "checkpoint.pt"


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write to a temporary file in the same directory, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return None if v != v else v
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_atomic(path, json.dumps(_jsonable(obj), indent=1) + "\n")


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """``torch.save`` through a temporary file (atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint of a run directory (or a checkpoint file), with a clear error."""
    p = Path(run_dir)
    if p.is_dir():
        p = p / CHECKPOINT
    if not p.exists():
        raise FileNotFoundError(f"no checkpoint at {p}: is this a `dynst run` directory?")
    return torch.load(p, map_location="cpu", weights_only=False)


def graph_from_state(state: dict[str, Any]) -> CSRGraph:
    return CSRGraph.from_state_dict(state)
