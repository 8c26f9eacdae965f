"""`dynst run` on grids: the synthetic planted grid with the gated ViT (planted recovery,
artifacts, checkpoint), SimVP through InputMasked (no speedup claimed), and clear errors."""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from dynst_fast.artifacts import load_checkpoint, rebuild_model
from dynst_fast.cli import main
from dynst_fast.config import RunConfig
from dynst_fast.data import load_grid_dataset, make_windows, synthetic_grid
from dynst_fast.run import run
from dynst_fast.sparsifier import Sparsifier

TINY_VIT = {"dim": 16, "depth": 1, "heads": 2, "decoder_dim": 16, "decoder_heads": 2}


@contextmanager
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine OpenMP threads that
    wait for each other make them many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("vit_run")
    cfg = RunConfig.from_flags(
        model="vit", epochs=6, horizon=6, out=str(out), quiet=True, option=TINY_VIT
    )
    with one_thread():
        return run(cfg)


@pytest.mark.slow
def test_planted_patches_recovered(vit_run: dict) -> None:
    m = vit_run
    ds = synthetic_grid()
    assert m["num_sensors"] == 36 and m["grid"]["pad_bottom"] == 2
    assert m["sparsity"] == pytest.approx(ds.planted_sparsity)
    assert m["planted_recall"] >= 0.8


@pytest.mark.slow
def test_grid_run_directory(vit_run: dict) -> None:
    out = Path(vit_run["out"])
    for name in ("metrics.json", "mask.json", "checkpoint.pt", "sensors.png", "report.md"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    for part in (metrics["dense"], metrics["schemes"]["dynst"]):
        assert {"mae", "rmse", "ssim", "psnr", "infer_ms"} <= set(part)
    assert metrics["schemes"]["dynst"]["gives_speedup"] is True
    assert metrics["speedup"] == pytest.approx(
        metrics["dense"]["infer_ms"] / metrics["schemes"]["dynst"]["infer_ms"]
    )
    assert {"ssim", "psnr"} <= set(metrics["baselines"]["linear_ar"])
    mask = json.loads((out / "mask.json").read_text())
    assert len(mask["sensor_ids"]) == 36 and mask["sensor_ids"][7] == "r1c1"
    active_ids = [i for i, a in zip(mask["sensor_ids"], mask["active"], strict=True) if a]
    assert active_ids == metrics["active_sensors"]
    report = (out / "report.md").read_text()
    assert "SSIM" in report and "padded with 2 row(s)" in report


@pytest.mark.slow
def test_grid_checkpoint_rebuilds_compacted_model(vit_run: dict) -> None:
    ck = load_checkpoint(vit_run["out"])
    ds = synthetic_grid()
    model = rebuild_model(ck, ds)
    sp = Sparsifier.from_state_dict(ck["sparsifier"])
    x, _ = make_windows(ds, ck["t_in"], ck["t_out"]).test.tensors()
    x = x[:4]
    with torch.no_grad():
        full = model(x, sp.gate().detach())
        comp = model.compact(sp.active_index(), sp.theta.detach())
        out = comp(comp.gather_input(x))
    torch.testing.assert_close(out, full, rtol=1e-5, atol=1e-5)
    two = synthetic_grid(num_steps=60)
    two.values = np.repeat(two.values, 2, axis=1)
    with pytest.raises(ValueError, match=r"data has 2 channel\(s\) but the checkpoint"):
        rebuild_model(ck, two)
    with pytest.raises(ValueError, match="frames are 20x22"):
        rebuild_model(ck, synthetic_grid(height=20, num_steps=60))


def test_simvp_run_claims_no_speedup(tmp_path: Path) -> None:
    arr = synthetic_grid(height=9, width=10, patch=3, num_sources=2, num_steps=160).values
    np.save(tmp_path / "field.npy", arr[:, 0])
    out = tmp_path / "out"
    with one_thread():
        code = main(
            [
                "run",
                "--data",
                str(tmp_path / "field.npy"),
                "--model",
                "simvp",
                "--patch",
                "3",
                "--epochs",
                "2",
                "--t-in",
                "4",
                "--horizon",
                "2",
                "--hidden",
                "4",
                "--sparsity",
                "0.5",
                "--rounds",
                "4",  # so that 2 epochs of 4 batches finish the schedule
                "--quiet",
                "--out",
                str(out),
            ]
        )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["sparsity"] == 0.5
    assert metrics["model"] == "simvp" and metrics["num_sensors"] == 12
    assert metrics["speedup"] is None and metrics["schemes"]["dynst"]["speedup"] is None
    assert (
        metrics["schemes"]["dynst"]["gives_speedup"] is False
        and "measured_ratio" in metrics["schemes"]["dynst"]
    )
    assert "no speedup" in (out / "report.md").read_text()
    assert (out / "sensors.png").stat().st_size > 0
    assert load_grid_dataset(tmp_path / "field.npy").values.shape == (160, 1, 9, 10)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--data", "{grid}", "--patch", "0"], "--patch must be a positive integer"),
        (["run", "--data", "{grid}", "--patch", "12"], "smaller than the patch size 12"),
        (["run", "--data", "{nan}", "--model", "vit"], "frame 3 has 1 NaN cell"),
        (["run", "--data", "{grid}", "--model", "stgcn"], "is grid data but --model stgcn"),
        (["run", "--data", "{graph}", "--model", "vit"], "is graph data but --model vit"),
        (["run", "--model", "cnn"], "unknown model 'cnn'"),
    ],
)
def test_cli_grid_errors(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    grid = tmp_path / "grid.npy"
    np.save(grid, np.ones((40, 8, 9), dtype=np.float32))
    nan = tmp_path / "nan" / "t.npy"
    nan.parent.mkdir()
    a = np.ones((40, 8, 9), dtype=np.float32)
    a[3, 1, 1] = np.nan
    np.save(nan, a)
    graph = tmp_path / "graph"
    graph.mkdir()
    (graph / "values.csv").write_text("a,b\n1,2\n2,3\n")
    (graph / "adj.csv").write_text("1,0\n0,1\n")
    argv = [a.format(grid=grid, nan=nan, graph=graph) for a in argv]
    assert main([*argv, "--quiet", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dynst run: error:")
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
