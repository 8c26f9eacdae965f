"""Every benchmark case, built once for both harnesses: the pytest-benchmark suite
(``python -m pytest bench/kernels``) and the GPU suite (``python -m bench.gpu.suite``).

Each maker builds the inputs of one case on a device, checks every method against the
plain PyTorch composition, and returns the methods as zero-argument callables. The first
method is the op (``"op"``; for models ``"compact"``); the others are what it is compared
with. ``info`` holds the facts the tables print. One file per family of ops: base.py (the
case record, the seeded active sets), compaction.py, graphs.py, neighbours.py, models.py.
"""

from .base import SPARSITY, Case, Fn, active_index
from .compaction import compact_cases, patchify_cases, select_cases
from .graphs import graph, los_loop_graph, pruned_spmm_case, random_geometric_graph, spmm_case
from .models import MODELS, model_case, model_setup
from .neighbours import nearest_active_case, neighbour_attention_cases

__all__ = [
    "MODELS",
    "SPARSITY",
    "Case",
    "Fn",
    "active_index",
    "compact_cases",
    "graph",
    "los_loop_graph",
    "model_case",
    "model_setup",
    "nearest_active_case",
    "neighbour_attention_cases",
    "patchify_cases",
    "pruned_spmm_case",
    "random_geometric_graph",
    "select_cases",
    "spmm_case",
]
