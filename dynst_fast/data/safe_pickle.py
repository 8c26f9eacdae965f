"""A restricted unpickler for data files that come as pickles (DCRNN's ``adj_mx.pkl``).

A pickle names the functions it calls to rebuild its objects, so loading one can run any
code. This unpickler resolves only the globals that plain numpy arrays need
(``numpy.ndarray``, ``numpy.dtype`` and the array rebuild function). Lists, tuples,
dicts, str, bytes and numbers are opcodes, not globals, so they need nothing. Every other
global is refused with ``UnpicklingError`` before anything is called, and arrays of
object dtype are refused after loading.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct, scalar
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar

_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): scalar,
    ("numpy._core.multiarray", "scalar"): scalar,
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to load {module}.{name}: only lists, tuples, dicts, str, numbers "
                "and numpy arrays of plain dtypes are allowed"
            ) from None


def _check_plain(obj: Any, path: Path) -> None:
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        raise ValueError(f"{path.name}: refused a numpy array of object dtype")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_plain(k, path)
            _check_plain(v, path)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _check_plain(v, path)


def load_plain_pickle(path: str | Path) -> Any:
    """The object in the pickle at ``path`` (Python 2 pickles read as latin-1), if it
    holds only plain data; else one ``ValueError`` that names the file and what it held."""
    path = Path(path)
    data = path.read_bytes()
    try:
        obj = _ArraysOnly(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path.name}: {exc}") from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise ValueError(f"{path.name} is not a readable pickle ({exc})") from None
    _check_plain(obj, path)
    return obj
