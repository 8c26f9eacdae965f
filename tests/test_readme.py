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


def test_training_loop_snippet_runs() -> None:
    text = README.read_text()
    section = text[text.index("## In your own training loop") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    n = 12
    torch.manual_seed(0)
    model = GatedSTGCN(random_graph(n), 12, 3, 1, hidden=8)
    loader = [(torch.randn(4, 12, n, 1), torch.randn(4, 3, n, 1)) for _ in range(3)]
    scope = {"model": model, "N": n, "loader": loader}
    exec(compile(code, str(README), "exec"), scope)
    assert scope["sparsifier"].step_count == 3
    assert scope["y_hat"].shape == (4, 3, n, 1)


def test_lightning_snippet_runs(tmp_path, monkeypatch) -> None:
    pytest.importorskip("lightning.pytorch")
    monkeypatch.chdir(tmp_path)  # Lightning writes its logs and checkpoints here
    text = README.read_text()
    section = text[text.index("### With PyTorch Lightning") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    n = 12
    torch.manual_seed(0)
    model = GatedSTGCN(random_graph(n), 12, 3, 1, hidden=8)
    x, y = torch.randn(12, 12, n, 1), torch.randn(12, 3, n, 1)
    scope = {"model": model, "loader": DataLoader(TensorDataset(x, y), batch_size=4)}
    exec(compile(code, str(README), "exec"), scope)
    sp = scope["dynst"].sparsifier
    assert sp.step_count == 90 and sp.num_active == 6
    assert scope["deployed"](torch.randn(2, 12, 6, 1)).shape == (2, 3, n, 1)
