"""The export forms of the ops: every ``dynst_fast`` op swapped for standard operators,
at one point, :func:`standard_forms`.

A model is traced with ``torch.export`` (the ops stay whole, as calls of
``torch.ops.dynst_fast.*``); then each such call in the traced graph is replaced by its
export form:

* ``compact``, ``expand``, ``patchify_compact``, ``select_swap``, ``prune_lowest``,
  ``nearest_active``, ``neighbour_attention``: their plain PyTorch references (gather,
  multiply, softmax-like sums; a scatter with distinct indices);
* ``gated_spmm``: its graph is a constant of the traced model, so it becomes one MatMul
  with the gated dense matrix for graphs of at most ``DENSE_MAX`` entries (BLAS beats
  gathering at that size; measured in ``bench/studies/onnx_latency.py``), else a gather, a multiply
  and a sum over each node's padded neighbour list (:func:`gated_spmm_padded`), never a
  scatter-add, whose threaded onnxruntime kernel races on repeated targets.

The ops themselves know nothing of export.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..graph import CSRGraph
from ..ops import reference

# Graphs with at most this many dense entries (16 MB in float32) export as one MatMul.
DENSE_MAX = 1 << 22

_REFERENCES = {
    "compact": reference.compact,
    "expand": reference.expand,
    "patchify_compact": reference.patchify_compact,
    "select_swap": reference.select_swap,
    "prune_lowest": reference.prune_lowest,
    "nearest_active": reference.nearest_active,
    "neighbour_attention": reference.neighbour_attention,
}
_MESSAGE_PASSING = ("gated_spmm", "gated_spmm_tr")


class ExportFormError(ValueError):
    """A ``dynst_fast`` op of the model has no export form here."""


def gated_spmm_export(graph: CSRGraph, x: Tensor, gate: Tensor) -> Tensor:
    """``gated_spmm`` in its export form: the dense MatMul for graphs of at most
    ``DENSE_MAX`` entries, else :func:`gated_spmm_padded`. Reads the graph's cached dense /
    padded arrays, so a trace sees them as constants."""
    if graph.num_rows * graph.num_cols <= DENSE_MAX:
        a = graph.cached_dense().to(x.dtype) * gate.to(x.dtype)[None, :]
        return torch.matmul(a, x)
    return gated_spmm_padded(graph, x, gate)


def gated_spmm_padded(graph: CSRGraph, x: Tensor, gate: Tensor) -> Tensor:
    """``gated_spmm`` over ``graph.padded_rows()``: gather, multiply, sum; no scatter."""
    nbr, w = graph.padded_rows()
    b, r, d, f = x.shape[0], graph.num_rows, nbr.shape[1], x.shape[2]
    if d == 0:
        return x.new_zeros(b, r, f)
    wg = w.to(x.dtype) * gate.to(x.dtype)[nbr]
    msg = x[:, nbr.reshape(-1)].reshape(b, r, d, f)
    return (msg * wg[None, :, :, None]).sum(dim=2)


class ExportMessagePassing(nn.Module):
    """``gated_spmm`` over one constant graph, in its export form."""

    def __init__(self, graph: CSRGraph) -> None:
        super().__init__()
        self.graph = graph
        if graph.num_rows * graph.num_cols <= DENSE_MAX:
            graph.cached_dense()
        else:
            graph.padded_rows()

    def forward(self, x: Tensor, gate: Tensor) -> Tensor:
        return gated_spmm_export(self.graph, x, gate)


def standard_forms(module: nn.Module, example: Tensor, *more: Tensor) -> torch.fx.GraphModule:
    """``module`` traced on ``example`` (batch dynamic, from 2 up) and any further inputs
    ``more`` (static shapes, such as ``alive [K]``), with every ``dynst_fast`` op replaced
    by its export form; the result runs the same computation with standard PyTorch
    operators only."""
    batch = torch.export.Dim("batch", min=2)  # torch.export specialises sizes 0 and 1
    if example.shape[0] < 2:
        example = example.expand(2, *example.shape[1:]).contiguous()
    with torch.no_grad():
        program = torch.export.export(
            module,
            (example, *more),
            dynamic_shapes=({0: batch}, *(None for _ in more)),
            strict=False,
        )
    gm = program.module()
    count = 0
    for node in list(gm.graph.nodes):
        target = node.target
        if node.op != "call_function" or getattr(target, "namespace", None) != "dynst_fast":
            continue
        name = target._schema.name.split("::")[-1]
        if name in _REFERENCES:
            node.target = _REFERENCES[name]
        elif name in _MESSAGE_PASSING:
            rowptr, col, weight = (_constant(gm, a, name) for a in node.args[:3])
            x, gate = node.args[-3], node.args[-2]
            graph = CSRGraph(rowptr, col, weight, num_cols=x.meta["val"].shape[1])
            sub = f"_export_message_passing_{count}"
            count += 1
            gm.add_submodule(sub, ExportMessagePassing(graph))
            with gm.graph.inserting_before(node):
                new = gm.graph.call_module(sub, (x, gate))
            new.meta = dict(node.meta)
            node.replace_all_uses_with(new)
            gm.graph.erase_node(node)
        elif name != "csr_transpose":  # a transpose only feeds backward passes
            raise ExportFormError(f"dynst_fast::{name} has no export form")
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


def _constant(gm: torch.fx.GraphModule, node, op: str) -> Tensor:
    """The constant tensor a ``get_attr`` node of the traced module reads."""
    if getattr(node, "op", None) != "get_attr":
        raise ExportFormError(
            f"dynst_fast::{op}: its graph is computed inside the model; export needs it to "
            "be a constant of the model"
        )
    obj = gm
    for part in node.target.split("."):
        obj = getattr(obj, part)
    return obj
