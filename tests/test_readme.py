"""The README's training-loop snippet runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from conftest import random_graph

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
