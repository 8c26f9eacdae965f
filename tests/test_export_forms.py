"""The export forms (``dynst_fast.export.forms``): a traced model with every ``dynst_fast``
op swapped for standard operators at one point, computing the same as the eager model,
through both message-passing forms; the ops themselves never branch on export."""

from __future__ import annotations

import inspect

import pytest
import torch
from conftest import random_graph

from dynst_fast import ops
from dynst_fast.export import forms
from dynst_fast.models import GatedSTGCN, GatedViT
from dynst_fast.morph import PatchGrid


def _ops_in(gm: torch.fx.GraphModule) -> set[str]:
    return {
        str(n.target)
        for n in gm.graph.nodes
        if n.op == "call_function" and getattr(n.target, "namespace", None) == "dynst_fast"
    }


@pytest.mark.parametrize("dense_max", [0, forms.DENSE_MAX])
def test_compacted_graph_model_in_standard_forms(monkeypatch, dense_max) -> None:
    monkeypatch.setattr(forms, "DENSE_MAX", dense_max)
    torch.manual_seed(0)
    model = GatedSTGCN(random_graph(14, seed=3), 6, 2, 1, hidden=8).eval()
    compact = model.compact(torch.tensor([0, 3, 4, 9, 13]), torch.rand(14) + 0.5).eval()
    x = torch.randn(3, 6, 5, 1)
    gm = forms.standard_forms(compact, x)
    assert _ops_in(gm) == set()
    kinds = {type(m).__name__ for m in gm.modules()}
    assert "ExportMessagePassing" in kinds
    with torch.no_grad():
        for batch in (2, 5):
            xb = torch.randn(batch, 6, 5, 1)
            torch.testing.assert_close(gm(xb), compact(xb), rtol=1e-5, atol=1e-5)


def test_compacted_image_model_in_standard_forms() -> None:
    torch.manual_seed(0)
    opts = {"dim": 8, "depth": 1, "heads": 2, "decoder_dim": 8, "decoder_heads": 2}
    model = GatedViT(PatchGrid(5, 7, 2), 3, 2, 1, **opts).eval()
    compact = model.compact(torch.tensor([1, 6, 11]), torch.rand(12)).eval()
    x = compact.gather_input(torch.randn(4, 3, 1, 5, 7))
    gm = forms.standard_forms(compact, x)
    assert _ops_in(gm) == set()
    with torch.no_grad():
        torch.testing.assert_close(gm(x), compact(x), rtol=1e-5, atol=1e-5)


def test_the_ops_do_not_branch_on_export() -> None:
    for name in ("compact", "expand", "patchify_compact", "gated_spmm"):
        source = inspect.getsource(getattr(ops, name))
        assert "is_exporting" not in source and "export" not in source.lower(), name


def test_export_does_not_import_the_training_code() -> None:
    import subprocess
    import sys

    code = (
        "import sys, dynst_fast.export, dynst_fast.deploy, dynst_fast.artifacts\n"
        "bad = [m for m in ('dynst_fast.train', 'dynst_fast.run') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
