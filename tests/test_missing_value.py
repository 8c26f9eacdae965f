"""``--missing-value`` (``data/missing.py``): a METR-LA-layout file with 8% zeros, written
here, is trained and scored with the zeros masked, as the field scores METR-LA; ``none``
keeps them; the run records the sentinel and the count."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dynst_fast.config import RunConfig
from dynst_fast.data import ReadOptions, load_dataset, make_windows
from dynst_fast.data.windows import eval_loader
from dynst_fast.run import run
from dynst_fast.train import masked_weighted_l1

pytestmark = pytest.mark.data
N, T, ZEROS = 12, 900, 0.08


@pytest.fixture(scope="module")
def metr_zeros(shared_data: Path, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A METR-LA-layout directory (pandas HDF5 store + adj.csv) of 12 sensors x 900 steps
    of the shared METR-LA-format speeds with 8% of the readings set to 0; and its values."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tables")
    pytest.importorskip("h5py")
    src = pd.read_hdf(shared_data / "metr_la_format" / "metr-la.h5").iloc[:T, :N].copy()
    vals = src.to_numpy(dtype=np.float64, copy=True)
    assert (vals != 0).all()  # the shared week has no zeros: every zero below is planted
    rng = np.random.default_rng(0)
    vals[rng.random(vals.shape) < ZEROS] = 0.0
    src.iloc[:, :] = vals
    d = tmp_path_factory.mktemp("metr_zeros") / "metr"
    d.mkdir()
    src.to_hdf(d / "speeds.h5", key="df")
    ring = np.eye(N) + np.roll(np.eye(N), 1, 1) + np.roll(np.eye(N), -1, 1)
    np.savetxt(d / "adj.csv", ring, delimiter=",")
    return d, vals


def test_the_dcrnn_layout_masks_zeros_by_default(metr_zeros):
    d, vals = metr_zeros
    ds = load_dataset(d)
    zero = vals == 0
    assert ds.missing is not None and ds.missing.value == 0.0
    assert ds.missing.masked == int(zero.sum()) and ds.missing.readings == vals.size
    assert np.isnan(ds.values[..., 0][zero]).all() and not np.isnan(ds.values[..., 0][~zero]).any()
    kept = load_dataset(d, options=ReadOptions(missing_value=None))
    assert kept.missing is None and not np.isnan(kept.values).any()
    other = load_dataset(d, options=ReadOptions(missing_value=vals[3, 4]))
    assert other.missing.masked == int((vals == vals[3, 4]).sum())


def test_masked_mae_and_loss_equal_a_hand_computation(metr_zeros):
    d, _ = metr_zeros
    masked = make_windows(load_dataset(d), 12, 3)
    raw = make_windows(load_dataset(d, options=ReadOptions(missing_value=None)), 12, 3)
    space = load_dataset(d).sensor_space()
    y_m = torch.cat([y for _, y in eval_loader(masked.test)])
    y_r = torch.cat([y for _, y in eval_loader(raw.test)])
    t_m, t_r = masked.denormalize(y_m), raw.denormalize(y_r)
    pred = torch.full_like(t_r, 50.0)  # a forecast of 50 mph everywhere
    t = t_r.numpy()
    real = np.abs(t) > 1e-3  # the planted zeros come back from normalising as about 1e-6
    hand = float(np.abs(50.0 - t[real]).mean())
    got = float(space.metrics(pred, t_m)["mae"])
    assert got == pytest.approx(hand, rel=1e-5)
    unmasked = float(space.metrics(pred, t_r)["mae"])
    assert abs(unmasked - hand) > 1.0  # the zeros weigh: masking them is not a no-op
    # the training loss leaves them out too (normalised units, weight 1)
    p = masked.normalize(torch.full_like(t_r, 50.0))
    by_hand = (masked.normalize(t_r) - p).abs().numpy()[real].mean()
    loss = masked_weighted_l1(p, y_m, torch.ones(1, 1, N, 1))
    assert float(loss) == pytest.approx(float(by_hand), rel=1e-5)


def _tiny(d: Path, out: Path, **more) -> RunConfig:
    return RunConfig.from_flags(
        data=str(d), sparsity=0.5, epochs=3, horizon=3, hidden=8, rounds=2, batch_size=32,
        time_batch=2, time_repeats=1, time_warmup=0, quiet=True, out=str(out), **more,
    )  # fmt: skip


@pytest.mark.slow
def test_a_run_trains_and_scores_masked_and_records_it(metr_zeros, tmp_path):
    d, vals = metr_zeros
    masked = run(_tiny(d, tmp_path / "masked"))
    kept = run(_tiny(d, tmp_path / "kept", missing_value="none"))
    rec = json.loads((tmp_path / "masked" / "metrics.json").read_text())["missing"]
    assert rec == {"value": 0.0, "masked_readings": int((vals == 0).sum()), "readings": vals.size}
    assert json.loads((tmp_path / "kept" / "metrics.json").read_text())["missing"] is None
    assert masked["dense"]["mae"] < kept["dense"]["mae"]  # zeros are the worst-forecast cells


def test_missing_value_is_checked_and_refused_on_grid_data(tmp_path):
    with pytest.raises(ValueError, match="--missing-value must be a number, none or auto"):
        RunConfig.from_flags(missing_value="zero").validate()
    grid = tmp_path / "g.npy"
    a = np.random.default_rng(0).random((40, 8, 8)).astype(np.float32)
    a[3, 2, 2] = -1.0
    np.save(grid, a)
    with pytest.raises(ValueError, match="grid data must be complete"):
        load_dataset(grid, kind="grid", options=ReadOptions(missing_value=-1.0))
    assert (
        load_dataset(grid, kind="grid", options=ReadOptions(missing_value=-2.0)).missing.masked == 0
    )


def test_missing_value_in_toml_as_text_or_number(tmp_path):
    for text, want in (('"none"', "none"), ("0", "0"), ("-9999.5", "-9999.5"), ('"auto"', "auto")):
        f = tmp_path / "c.toml"
        f.write_text(f"[data]\nmissing_value = {text}\n")
        cfg = RunConfig.from_toml(f).validate()
        assert cfg.data.missing_value == want
        assert RunConfig.from_dict(cfg.to_dict()).data.missing_value == want  # round trip
    f.write_text("[data]\nmissing_value = true\n")
    with pytest.raises(ValueError, match="missing_value must be str"):
        RunConfig.from_toml(f)


def test_the_masked_count_is_printed(metr_zeros, capsys):
    from dynst_fast.plan import resolve

    d, vals = metr_zeros
    resolve(RunConfig.from_flags(data=str(d), horizon=3, epochs=3, rounds=2, batch_size=32))
    err = capsys.readouterr().err
    assert f"{int((vals == 0).sum()):,} of {vals.size:,} readings" in err and "equal 0" in err
