"""Public, shape-checked ops of DESIGN.md section 6.

One file per op (``compact.py``, ``expand.py``, ...), each holding the op's public,
checked function, its fake (meta) kernel, its autograd formula and the Python kernels
it declares. Every op has one schema, in ``csrc/ops.cpp``; its kernels are registered
per dispatch key (the C++ ones by the extension, the Triton ones and fallbacks by
``_dispatch``), so the dispatcher picks the kernel from the tensors' device:

======================  =====================  ==============================
op                      CPU                    CUDA
======================  =====================  ==============================
compact, expand,        C++ (``csrc/cpu``)     Triton (``kernels/``)
patchify_compact,
select_swap,
prune_lowest,
nearest_active,
neighbour_attention
gated_spmm,             C++ (``csrc/cpu``)     CUDA C++ (``csrc/cuda``)
induce_subgraph,
bipartite
======================  =====================  ==============================

``reference`` holds the plain PyTorch reference of every op. ``DYNST_BACKEND`` (read once,
here) or ``_dispatch.set_backend`` forces a kernel family, for tests only.

Value checks that need the data (index range and duplicates, the number of active
sensors for k, NaN scores) run eagerly; while ``torch.compile`` traces they are
skipped (they would break the graph), so compiled code must pass checked indices.
"""

from __future__ import annotations

from . import reference
from ._checks import check_index
from ._dispatch import forced_backend as _forced_backend
from ._dispatch import install as _install
from .bipartite import bipartite
from .compact import compact
from .expand import expand
from .gated_spmm import gated_spmm
from .induce_subgraph import induce_subgraph
from .nearest_active import nearest_active
from .neighbour_attention import neighbour_attention
from .patchify_compact import patchify_compact
from .prune_lowest import prune_lowest
from .select_swap import select_swap

_install(_forced_backend())  # the Python kernel registrations ($DYNST_BACKEND: a test's)

__all__ = [
    "compact",
    "expand",
    "patchify_compact",
    "select_swap",
    "prune_lowest",
    "gated_spmm",
    "induce_subgraph",
    "bipartite",
    "nearest_active",
    "neighbour_attention",
    "check_index",
    "reference",
]
