"""The README's recipe "Write your own backbone in gated form", followed from outside
the package: a new backbone from ``dynst_fast.nn`` only, registered, passes the
equivalence rule of DESIGN.md section 5, and runs under ``dynst run --model`` through
the registry (and exports through it)."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import pytest
import torch
from conftest import random_graph

from dynst_fast.cli import main
from dynst_fast.models import registry
from dynst_fast.sensors import GraphSensors

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def registered():
    """Undo the registrations a test makes."""
    before = dict(registry.BACKBONES)
    yield
    registry.BACKBONES.clear()
    registry.BACKBONES.update(before)


@pytest.fixture
def recipe(monkeypatch, registered) -> dict:
    """The README's code, run as a module of its own; the registration is undone after."""
    text = README.read_text()
    section = text[text.index("## Write your own backbone in gated form") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    module = types.ModuleType("user_backbone")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code, str(README), "exec", dont_inherit=True), module.__dict__)
    assert "tiny-gnn" in registry.BACKBONES
    return module.__dict__


@pytest.mark.parametrize("k", [1, 5, 17, 23])
def test_recipe_backbone_satisfies_the_equivalence_rule(recipe, k) -> None:
    n = 23
    torch.manual_seed(k)
    space = GraphSensors(random_graph(n, seed=k))
    model = registry.build_backbone("tiny-gnn", space, 12, 3, 2, {"hidden": 8}).eval()
    assert isinstance(model, recipe["TinyGNN"]) and model.conv.self_lin.in_features == 8
    g = torch.Generator().manual_seed(k)
    idx = torch.randperm(n, generator=g)[:k]
    theta = torch.rand(n, generator=g) * 2 - 0.5
    active = torch.zeros(n)
    active[idx] = 1
    x = torch.randn(3, 12, n, 2)
    with torch.no_grad():
        full = model(x, theta * active)
        compact = model.compact(idx, theta)
        out = compact(compact.gather_input(x))
        off = [j for j in range(n) if j not in set(idx.tolist())]
        x2 = x.clone()
        x2[:, :, off] = torch.randn(3, 12, len(off), 2) * 100
        moved = model(x2, theta * active)
    assert out.shape == (3, 3, n, 2)
    torch.testing.assert_close(out, full, rtol=1e-5, atol=1e-5 * full.abs().max().item())
    torch.testing.assert_close(moved, full)  # a switched-off sensor influences nothing
    assert {id(p) for p in compact.parameters()} <= {id(p) for p in model.parameters()}


@pytest.mark.slow
def test_recipe_backbone_runs_under_dynst_run_and_exports(recipe, tmp_path) -> None:
    out = tmp_path / "run"
    argv = ["run", "--model", "tiny-gnn", "--hidden", "8", "--epochs", "2", "--horizon", "3",
            "--time-repeats", "3", "--quiet", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "tiny-gnn" and metrics["schemes"]["dynst"]["gives_speedup"] is True
    assert metrics["config"]["model"]["options"] == {"hidden": 8}
    assert main(["export", str(out), "--out", str(tmp_path / "tiny.onnx")]) == 0
    meta = json.loads((tmp_path / "tiny.onnx.json").read_text())
    assert meta["model"] == "tiny-gnn" and meta["verification"]["max_rel_error"] <= 1e-4


def test_entry_point_backbones_are_found(monkeypatch, tmp_path, registered) -> None:
    """A backbone of another package registers when its entry point is loaded."""
    from importlib.metadata import EntryPoint

    (tmp_path / "plugin_backbone.py").write_text(
        "from dataclasses import dataclass\n"
        "from dynst_fast.models import register_backbone\n"
        "from dynst_fast.models.stgcn import GatedSTGCN\n"
        "@dataclass\nclass Opts:\n    hidden: int = 4\n"
        "register_backbone('plugin-gnn', options=Opts, space='graph')(GatedSTGCN)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    ep = EntryPoint(name="plugin-gnn", value="plugin_backbone", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep] if group == ep.group else [])
    spec = registry.backbone("plugin-gnn")
    assert spec.space == "graph" and "plugin-gnn" in registry.backbone_names()
    with pytest.raises(ValueError, match="unknown model 'nope'; choose one of .*plugin-gnn"):
        registry.backbone("nope")
