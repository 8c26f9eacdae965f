"""The README's training-loop snippets run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import random_graph
from torch.utils.data import DataLoader, TensorDataset

from dynst_fast.models import GatedSTGCN

README = Path(__file__).resolve().parent.parent / "README.md"


N = 12


def _run_snippet(heading: str, **scope) -> dict:
    """Run the first python block after ``heading`` in the README, with a small gated
    STGCN as ``model`` and ``scope``'s names; returns its namespace."""
    text = README.read_text()
    code = re.search(r"```python\n(.*?)```", text[text.index(heading) :], re.S).group(1)
    torch.manual_seed(0)
    scope = {"model": GatedSTGCN(random_graph(N), 12, 3, 1, hidden=8), **scope}
    exec(compile(code, str(README), "exec"), scope)
    return scope


def test_training_loop_snippet_runs() -> None:
    loader = [(torch.randn(4, 12, N, 1), torch.randn(4, 3, N, 1)) for _ in range(3)]
    scope = _run_snippet("## In your own training loop", N=N, loader=loader)
    assert scope["sparsifier"].step_count == 3
    assert scope["y_hat"].shape == (4, 3, N, 1)


def test_lightning_snippet_runs(tmp_path, monkeypatch) -> None:
    pytest.importorskip("lightning.pytorch")
    monkeypatch.chdir(tmp_path)  # Lightning writes its logs and checkpoints here
    x, y = torch.randn(12, 12, N, 1), torch.randn(12, 3, N, 1)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    scope = _run_snippet("### With PyTorch Lightning", loader=loader)
    sp = scope["dynst"].sparsifier
    assert sp.step_count == 90 and sp.num_active == 6
    assert scope["deployed"](torch.randn(2, 12, 6, 1)).shape == (2, 3, N, 1)


def test_suspect_snippet_runs(tiny_dynst_run) -> None:
    from dynst_fast.artifacts import load_run
    from dynst_fast.deploy import deployable

    side = deployable(load_run(tiny_dynst_run)).sidecar
    low = torch.tensor([r[0] for r in side["suspect"]["low"]])
    high = torch.tensor([r[0] for r in side["suspect"]["high"]])
    x = (low + high) / 2 + (high - low) / 4 * (2 * torch.rand(3, side["t_in"], low.numel()) - 1)
    x = x[..., None].contiguous()
    x[0, :, 1] = x[0, 0, 1]  # sensor 1 stuck in window 0
    scope = _run_snippet("**Sensors that lie.**", run_dir=tiny_dynst_run, x=x)
    assert scope["lying"].tolist()[0][:3] == [False, True, False] and not scope["lying"][1:].any()
    assert scope["forecast"].shape == (1, side["t_out"], side["num_sensors"], 1)
