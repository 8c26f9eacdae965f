"""`dynst run` end to end on the synthetic default: planted recovery, artifacts, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from dynst_fast.artifacts import load_checkpoint
from dynst_fast.cli import main
from dynst_fast.config import RunConfig
from dynst_fast.data import make_windows, synthetic_sensor_network
from dynst_fast.models import build_backbone
from dynst_fast.run import run
from dynst_fast.sparsifier import Sparsifier


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("run")
    cfg = RunConfig.from_flags(epochs=6, out=str(out), also=["random"], quiet=True, horizon=6)
    return run(cfg)


@pytest.mark.slow
def test_planted_recovery_beats_random(planted_run: dict) -> None:
    m = planted_run
    ds = synthetic_sensor_network()
    assert m["sparsity"] == pytest.approx(ds.planted_sparsity)
    assert m["planted_recall"] >= 0.8
    rnd = m["schemes"]["random"]
    assert m["schemes"]["dynst"]["planted_recall"] >= rnd["planted_recall"] + 0.4
    assert m["schemes"]["dynst"]["mae"] < 0.9 * rnd["mae"]


@pytest.mark.slow
def test_run_directory_artifacts(planted_run: dict) -> None:
    out = Path(planted_run["out"])
    for name in ("metrics.json", "mask.json", "checkpoint.pt", "sensors.png", "report.md"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("dataset", "model", "num_sensors", "sparsity", "active_sensors", "speedup"):
        assert key in metrics
    for part in (metrics["dense"], metrics["schemes"]["dynst"]):
        assert {"mae", "rmse", "infer_ms"} <= set(part)
    assert metrics["speedup"] == pytest.approx(
        metrics["dense"]["infer_ms"] / metrics["schemes"]["dynst"]["infer_ms"]
    )
    mask = json.loads((out / "mask.json").read_text())
    assert len(mask["sensor_ids"]) == len(mask["theta"]) == len(mask["active"]) == 80
    active_ids = [i for i, a in zip(mask["sensor_ids"], mask["active"], strict=True) if a]
    assert active_ids == metrics["active_sensors"]
    assert "Planted informative sensors kept" in (out / "report.md").read_text()


@pytest.mark.slow
def test_checkpoint_rebuilds_the_compacted_model(planted_run: dict) -> None:
    ck = load_checkpoint(planted_run["out"])
    ds = synthetic_sensor_network()
    model = build_backbone(
        ck["model"]["name"],
        ds.sensor_space(),
        ck["t_in"],
        ck["t_out"],
        ck["num_channels"],
        ck["model"]["options"],
    )
    model.load_state_dict(ck["model_state"])
    sp = Sparsifier.from_state_dict(ck["sparsifier"])
    idx = sp.active_index()
    x, _ = make_windows(ds, ck["t_in"], ck["t_out"]).test.tensors()
    x = x[:8]
    model.eval()
    with torch.no_grad():
        full = model(x, sp.gate().detach())
        comp = model.compact(idx, sp.theta.detach())(x[:, :, idx])
    torch.testing.assert_close(comp, full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--sparsity", "1.2"], r"--sparsity must be in \[0, 1\)"),
        (["run", "--sparsity", "-0.1"], r"--sparsity must be in \[0, 1\)"),
        (["run", "--epochs", "0"], "--epochs must be >= 1"),
        (["run", "--data", "{empty}"], "no values file"),
        (["run", "--data", "{missing}"], "does not exist"),
        (["run", "--data", "{nan_sensor}"], "sensor 'b'.*all NaN"),
        (["run", "--data", "{bad_adj}"], "4 x 4.*3 sensors"),
    ],
)
def test_cli_bad_input_is_one_clear_error(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    nan_sensor, bad_adj = tmp_path / "nan", tmp_path / "adj"
    for d, values, adj in (
        (nan_sensor, "a,b,c\n1,,3\n2,,4\n", "1,0,0\n0,1,0\n0,0,1\n"),
        (bad_adj, "a,b,c\n1,2,3\n2,3,4\n", "1,0,0,0\n0,1,0,0\n0,0,1,0\n0,0,0,1\n"),
    ):
        d.mkdir()
        (d / "values.csv").write_text(values)
        (d / "adj.csv").write_text(adj)
    names = {
        "empty": tmp_path,
        "missing": tmp_path / "nope",
        "nan_sensor": nan_sensor,
        "bad_adj": bad_adj,
    }
    argv = [a.format(**names) for a in argv]
    assert main([*argv, "--quiet", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dynst run: error:")
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err)


def test_options_a_saved_run_predates_keep_their_old_behaviour() -> None:
    from dynst_fast.models import backbone

    spec = backbone("stgcn")
    assert spec.parse_options({})["attention"] is True  # today's default
    old = spec.saved_options({"hidden": 8})
    assert old["attention"] is False and old["calendar"] is False and old["hidden"] == 8
    assert spec.saved_options({"attention": True})["attention"] is True  # saved wins


@pytest.mark.slow
def test_a_run_saved_before_the_attention_read_out_still_loads(tmp_path: Path) -> None:
    """A checkpoint whose model options lack ``attention`` and ``calendar`` (written
    before they existed) rebuilds without them, and its compacted model still exports."""
    from dynst_fast.artifacts import load_run

    out = tmp_path / "run"
    run(RunConfig.from_flags(epochs=2, out=str(out), quiet=True, horizon=3, hidden=8,
                             option={"attention": False, "calendar": False},
                             time_repeats=1, time_warmup=0))  # fmt: skip
    path = out / "checkpoint.pt"
    ck = torch.load(path, weights_only=True)
    for options in (ck["model"]["options"], ck["config"]["model"]["options"]):
        del options["attention"], options["calendar"]
    torch.save(ck, path)
    bundle = load_run(out)
    assert bundle.model.neighbour is None
    assert main(["export", str(out), "--out", str(tmp_path / "m.onnx")]) == 0
