"""Switch-on gains (issue 14): the sparsifier's mean |dL/dg| over the last mask phase,
its estimate in original MAE units in ``mask.json`` and ``report.md``, and ``dynst rank``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dynst_fast.cli import main
from dynst_fast.rank import switch_on_ranking
from dynst_fast.schedule import Schedule
from dynst_fast.sparsifier import Sparsifier
from dynst_fast.train import switch_on_estimate


def _steps(sp: Sparsifier, w: torch.Tensor, k: int) -> None:
    for _ in range(k):
        (sp.gate() * w).sum().backward()  # dL/dg = w for every sensor, on or off
        sp.step()


def test_gain_is_the_mean_gate_gradient_of_the_last_mask_phase():
    sched = Schedule("dynst", 6, 0.5, network_steps=2, mask_steps=3, rounds=2, swap_fraction=0)
    sp = Sparsifier(sched)
    assert sp.switch_on_gain() is None
    w1, w2 = torch.tensor([1.0, -2, 3, -4, 5, -6]), torch.tensor([0.5, 1, -1.5, 2, 0, 3])
    _steps(sp, w1, 5)  # round 1: 2 network + 3 mask steps
    torch.testing.assert_close(sp.switch_on_gain(), w1.abs().double())
    _steps(sp, w2, 2)  # network steps of round 2 leave it alone
    torch.testing.assert_close(sp.switch_on_gain(), w1.abs().double())
    _steps(sp, w2, 3)  # round 2's mask phase replaces it
    torch.testing.assert_close(sp.switch_on_gain(), w2.abs().double())
    again = Sparsifier(sched)
    again.load_state_dict(sp.state_dict())
    torch.testing.assert_close(again.switch_on_gain(), sp.switch_on_gain())


def test_estimate_is_in_original_mae_units():
    sched = Schedule("dynst", 4, 0.5, network_steps=1, mask_steps=2, rounds=1, swap_fraction=0)
    sp = Sparsifier(sched)
    _steps(sp, torch.tensor([1.0, 2.0, 3.0, 4.0]), 3)
    std = np.array([[2.0], [4.0], [6.0], [8.0]])  # mean 5
    theta_bar = float(sp.theta.detach()[sp.active].abs().mean())
    est = switch_on_estimate(sp, std)
    np.testing.assert_allclose(est, np.array([1, 2, 3, 4]) * theta_bar * 5.0, rtol=1e-6)
    assert switch_on_estimate(Sparsifier(Schedule("random", 4, 0.5)), std) is None


@pytest.fixture(scope="module")
def finished(tiny_dynst_run) -> Path:
    return tiny_dynst_run


def test_mask_json_report_and_rank_agree(finished, capsys):
    mask = json.loads((finished / "mask.json").read_text())
    gain, active = mask["switch_on_gain"], mask["active"]
    assert all((g is None) == a for g, a in zip(gain, active, strict=True))
    off = [i for i, a in enumerate(active) if not a]
    assert mask["switch_on_ranking"] == sorted(off, key=lambda i: (-gain[i], i))
    rows = switch_on_ranking(finished)
    assert [r["index"] for r in rows] == mask["switch_on_ranking"]  # only inactive, by gain
    assert [r["gain"] for r in rows] == sorted((gain[i] for i in off), reverse=True)
    assert rows[0]["gain"] > 0
    report = (finished / "report.md").read_text()
    assert "## Sensors to switch back on" in report and f"| 1 | {rows[0]['sensor']} |" in report
    assert main(["rank", str(finished), "--top", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[1].split()[1] == rows[0]["sensor"]


def test_rank_errors(finished, tmp_path, capsys):
    assert main(["rank", str(tmp_path)]) == 2
    assert "no mask.json" in capsys.readouterr().err
    assert main(["rank", str(finished), "--top", "0"]) == 2
    assert "--top must be a positive integer" in capsys.readouterr().err
    d = tmp_path / "random"
    d.mkdir()
    mask = json.loads((finished / "mask.json").read_text())
    (d / "mask.json").write_text(json.dumps({**mask, "scheme": "random", "switch_on_gain": None}))
    assert main(["rank", str(d)]) == 2
    assert "has no switch-on gains" in capsys.readouterr().err


def test_signed_gain_lets_batch_noise_cancel():
    sched = Schedule("dynst", 3, 0.0, network_steps=0, mask_steps=2, rounds=1, swap_fraction=0)
    sp = Sparsifier(sched)
    _steps(sp, torch.tensor([1.0, -2.0, 3.0]), 1)
    _steps(sp, torch.tensor([-1.0, -2.0, 1.0]), 1)
    torch.testing.assert_close(sp.switch_on_gain(), torch.tensor([1.0, 2.0, 2.0]).double())
    torch.testing.assert_close(
        sp.switch_on_gain(signed=True), torch.tensor([0.0, 2.0, -2.0]).double()
    )
