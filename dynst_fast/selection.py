"""Active sets chosen before training: the classical placements and a given mask.

The fixed-set schemes train one active set from the start (no theta, no swaps); they
differ in where the set comes from, which this module decides as an *order* of the
sensors (the sparsifier takes the kept sensors, then movable ones in this order):

- ``qr``: QR pivoting on the POD modes of the standardised training split (PySensors'
  ``SSPOR`` with its ``QR`` optimizer; r = K modes), the classical placement for
  reconstruction (Manohar et al. 2018).
- ``greedy``: forward selection with a ridge forecaster: each step adds the sensor whose
  last ``t_in`` values, together with those already chosen, best forecast the whole
  field's next ``t_out`` steps (ridge fitted on the training split, scored on the
  validation split).
- ``mask``: the active set of a ``mask.json`` or an id list (``--mask FILE``).

The schemes (``dynst_fast.schemes``) call these through ``Scheme.order``.

Both data-driven schemes work on one series per sensor (:func:`sensor_series`): the mean
of its normalised values per step (its channels; for image patches, its pixels).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .constraints import Constraints, read_ids
from .data import WindowDataset
from .records import MaskRecord, RecordError
from .sensors import SensorSpace

GREEDY_MAX_FEATURES = 12288  # N * t_in lagged values; the ridge's Gram is its square
GREEDY_RIDGES = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # x the Gram's mean diagonal (scale-free)
QR_SVD_SEED = 0  # the POD modes' randomized SVD


def sensor_series(data: WindowDataset, space: SensorSpace) -> Tensor:
    """``[L, N]`` float64: each sensor's mean normalised value per step of a split's part
    (NaN, the missing values, counted as 0: the training mean, as the inputs fill them)."""
    part = torch.nan_to_num(data.part(), nan=0.0)
    return space.to_stream(part.unsqueeze(1)).to(torch.float64).mean(-1)


# ---------------------------------------------------------------- qr
def qr_order(series: Tensor, k: int, constraints: Constraints | None = None) -> Tensor:
    """The sensors in QR-pivot order on the r = k leading POD modes of ``series`` ``[L, N]``
    (PySensors' ``SVD`` basis and ``QR`` optimizer), ``[N']`` int64: the kept sensors
    first, then the movable ones (forbidden ones never). Kept sensors act as pivots already
    taken: the basis is projected off their rows before the movable ones are pivoted."""
    from pysensors.basis import SVD
    from pysensors.optimizers import QR

    x = series.numpy()
    n = x.shape[1]
    c = Constraints.none(n) if constraints is None else constraints
    r = max(1, min(int(k), *x.shape))
    # seeded: TruncatedSVD's randomized solver otherwise draws from numpy's global RNG,
    # which no run seeds, so the order (and the qr scheme's set) changed from run to run
    psi = SVD(n_basis_modes=r, random_state=QR_SVD_SEED).fit(x).matrix_representation()
    keep = np.flatnonzero(c.keep.numpy())
    movable = np.flatnonzero(c.movable.numpy())
    basis = psi[movable]
    if keep.size:
        q, _ = np.linalg.qr(psi[keep].T)  # [r, |keep|]: the directions the kept ones span
        basis = basis - (basis @ q) @ q.T
    pivots = QR().fit(basis).get_sensors() if movable.size else np.zeros(0, np.int64)
    return torch.as_tensor(np.concatenate([keep, movable[pivots]]), dtype=torch.int64)


# ---------------------------------------------------------------- greedy
def lagged(series: Tensor, t_in: int, t_out: int) -> tuple[Tensor, Tensor]:
    """The windows of ``series`` ``[L, N]`` as a regression: X ``[W, N * t_in]`` (sensor j's
    last t_in values in columns ``j * t_in ...``), Y ``[W, N * t_out]`` (every sensor's
    next t_out values, sensor-major too), both new tensors; W = L - t_in - t_out + 1."""
    w = series.shape[0] - t_in - t_out + 1
    if w < 1:
        raise ValueError(f"a split of {series.shape[0]} steps has no {t_in} + {t_out} window")
    x = series[: w + t_in - 1].unfold(0, t_in, 1)  # [W, N, t_in]
    y = series[t_in:].unfold(0, t_out, 1)  # [W, N, t_out]
    # copies, never views of ``series`` (with t_out = 1 a reshape alone could be one)
    return x.reshape(w, -1).clone(), y.reshape(w, -1).clone()


def greedy_order(
    train: Tensor,
    val: Tensor,
    t_in: int,
    t_out: int,
    k: int,
    constraints: Constraints | None = None,
    ridge: float | None = None,
) -> Tensor:
    """Forward selection of ``k`` sensors of ``train`` / ``val`` ``[L, N]``: the kept ones
    first, then at each step the movable sensor whose lagged inputs lower the validation
    squared error of the ridge forecast of every sensor's next ``t_out`` steps the most.
    Returns the ``[k]`` int64 order. ``ridge`` (times the Gram's mean diagonal): default
    the one of ``GREEDY_RIDGES`` whose forecast from every allowed sensor scores best on
    validation.

    Exact ridge refits are avoided by Gram-Schmidt in the ridge metric A = X'X + lam I:
    R is A's Schur complement off the chosen blocks, E = X'Y's residual, V the validation
    inputs of the orthogonalised directions and F the validation residual; adding block c
    moves the weights by ``R_cc^-1 E_c`` along its direction, so every candidate's new
    validation error costs one small solve, and each step updates R, E, V, F by a rank-t
    correction (t = t_in).
    """
    n, t = train.shape[1], int(t_in)
    d = n * t
    if d > GREEDY_MAX_FEATURES:
        raise ValueError(
            f"greedy selection regresses on N x t_in = {n} x {t} = {d} lagged values, more "
            f"than {GREEDY_MAX_FEATURES}; use --scheme qr for a network this large"
        )
    c = Constraints.none(n) if constraints is None else constraints
    x, y = lagged(train, t, t_out)
    v, f = lagged(val, t, t_out)
    r = x.T @ x
    e = x.T @ y  # [D, q]
    if ridge is None:
        ridge = _best_ridge(r, e, v, f, ~c.forbid, t)
    r.diagonal().add_(ridge * float(r.diagonal().mean()) + 1e-12)
    eye = torch.eye(t, dtype=r.dtype)
    forced = torch.nonzero(c.keep).flatten().tolist()
    free = c.movable.clone()
    chosen: list[int] = []
    total = min(int(k), int(c.keep.sum()) + int(free.sum()))
    while len(chosen) < total:
        if forced:
            j = forced.pop(0)
        else:
            blocks = r.view(n, t, n, t).diagonal(dim1=0, dim2=2).permute(2, 0, 1)  # [N, t, t]
            blocks = torch.where(free[:, None, None], blocks, eye)
            w = torch.linalg.solve(blocks, e.view(n, t, -1))  # [N, t, q]
            vf = (v.T @ f).view(n, t, -1)
            vb = v.view(v.shape[0], n, t)
            gram = torch.einsum("anj,ank->njk", vb, vb)  # [N, t, t]
            change = ((gram @ w) * w).sum((1, 2)) - 2 * (w * vf).sum((1, 2))
            j = int(torch.where(free, change, torch.inf).argmin())
        cols = slice(j * t, (j + 1) * t)
        rc = r[cols].clone()  # [t, D]
        step = torch.linalg.solve(rc[:, cols], torch.cat([rc, e[cols]], 1))  # [t, D + q]
        p, wc = step[:, :d], step[:, d:]
        f -= v[:, cols] @ wc
        v -= v[:, cols] @ p
        e -= rc.T @ wc
        r -= rc.T @ p
        free[j] = False
        chosen.append(j)
    return torch.as_tensor(chosen, dtype=torch.int64)


def _best_ridge(
    gram: Tensor, xty: Tensor, xv: Tensor, yv: Tensor, allowed: Tensor, t: int
) -> float:
    """The ridge of ``GREEDY_RIDGES`` whose fit on the ``allowed`` sensors' blocks has the
    lowest validation squared error."""
    cols = allowed.repeat_interleave(t)
    g, b, v = gram[cols][:, cols], xty[cols], xv[:, cols]
    scale = float(g.diagonal().mean())

    def error(ridge: float) -> float:
        w = torch.linalg.solve(g + (ridge * scale + 1e-12) * torch.eye(len(g), dtype=g.dtype), b)
        return float(((yv - v @ w) ** 2).sum())

    return min(GREEDY_RIDGES, key=error)


# ---------------------------------------------------------------- mask
def read_mask(path: str | Path, ids: Sequence[str]) -> list[str]:
    """The active ids of ``--mask FILE``: a ``mask.json`` (its ``sensor_ids`` and
    ``active``), a JSON list of ids, or a text file of ids (one per line or comma-separated,
    ``#`` comments). Unknown or repeated ids, or an empty set, are one clear ``ValueError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--mask: no file at {path}")
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(path.read_text(encoding="utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise ValueError(f"--mask: {path} is not valid JSON ({exc})") from None
        names = _mask_ids(doc, path)
    else:
        names = read_ids(path, "--mask")
    known = set(ids)
    unknown = [s for s in names if s not in known]
    if unknown:
        shown = ", ".join(map(repr, unknown[:5])) + (" ..." if len(unknown) > 5 else "")
        raise ValueError(
            f"--mask: {path} names {len(unknown)} sensor id(s) the data does not have: "
            f"{shown}; the data's ids look like {', '.join(map(repr, ids[:5]))}"
        )
    twice = sorted({s for s in names if names.count(s) > 1})
    if twice:
        raise ValueError(f"--mask: {path} names {', '.join(map(repr, twice[:5]))} twice")
    if not names:
        raise ValueError(f"--mask: {path} names no active sensor")
    return names


def _mask_ids(doc: object, path: Path) -> list[str]:
    if isinstance(doc, list) and all(isinstance(s, (str, int)) for s in doc):
        return [str(s) for s in doc]
    if isinstance(doc, dict) and isinstance(doc.get("sensor_ids"), list):
        try:
            mask = MaskRecord.from_dict(doc, str(path))
        except RecordError as exc:
            raise ValueError(f"--mask: {exc}") from None
        return [mask.sensor_ids[i] for i in mask.active_index]
    raise ValueError(
        f"--mask: {path} is neither a mask.json (sensor_ids, active) nor a JSON list of ids"
    )


def mask_order(names: Sequence[str], ids: Sequence[str]) -> Tensor:
    """The order that makes the fixed-set sparsifier take exactly ``names``: them first."""
    where = {s: i for i, s in enumerate(ids)}
    first = [where[s] for s in names]
    chosen = set(first)
    return torch.as_tensor(first + [i for i in range(len(ids)) if i not in chosen])
