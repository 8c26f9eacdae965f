"""Numeric arrays from ``.npy`` / ``.npz`` files, memory-mapped where the file allows it.

A ``.npy`` file, and an ``.npz`` member stored uncompressed (``np.savez``), are mapped
read-only: the values are read from disk as they are used and never copied whole. A
compressed member (``np.savez_compressed``) is read into memory. Nothing is unpickled.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

CHUNK_STEPS = 256  # time steps per chunk when statistics and normalisation stream the series
LOCAL_HEADER = 30  # bytes of a zip local file header before its name and extra field
HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def load_npy(path: str | Path) -> np.ndarray:
    """The array of a ``.npy`` file, memory-mapped read-only (a plain array if empty)."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:  # an empty array cannot be mapped; a bad file fails again below
        if "pickle" in str(e):
            raise
        return np.load(path, allow_pickle=False)


def load_npz_member(path: str | Path, name: str) -> np.ndarray:
    """Member ``name`` of an ``.npz``: memory-mapped if stored uncompressed, else read."""
    layout = _stored_layout(path, name)
    if layout is None:
        with np.load(path, allow_pickle=False) as npz:
            return npz[name]
    shape, fortran, dtype, offset = layout
    if dtype.hasobject:
        raise ValueError(f"{Path(path).name}: {name!r} holds Python objects")
    if 0 in shape:
        return np.empty(shape, dtype=dtype)
    order = "F" if fortran else "C"
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)


def _stored_layout(path: str | Path, name: str) -> tuple[tuple, bool, np.dtype, int] | None:
    """``(shape, fortran_order, dtype, data offset)`` of an uncompressed member, None for
    a compressed one (or an ``.npy`` format version without a public header reader)."""
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        info = z.getinfo(name + ".npy" if name + ".npy" in names else name)
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(LOCAL_HEADER)
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
        f.seek(info.header_offset + LOCAL_HEADER + name_len + extra_len)
        reader = HEADER_READERS.get(np.lib.format.read_magic(f))
        if reader is None:
            return None
        shape, fortran, dtype = reader(f)
        return shape, fortran, dtype, f.tell()
