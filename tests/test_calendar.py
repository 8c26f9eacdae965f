"""Calendar inputs (``dynst_fast.calendar``): the features of a step's time, read from
``meta.json`` and DCRNN timestamps, carried by the windows after the data channels (never
as extra sensors); a series driven only by the time of day, on switched-off sensors, is
forecast near its noise floor with them and not without."""

from __future__ import annotations

import json
import math
from datetime import datetime

import numpy as np
import pytest
import torch

from dynst_fast.calendar import FEATURES, Calendar, calendar_from_meta
from dynst_fast.config import RunConfig
from dynst_fast.data import load_dataset, make_windows
from dynst_fast.run import run

SPD = 24  # hourly steps
DAYS = 40
NOISE = 0.1


def test_features_of_a_step():
    cal = Calendar(4, datetime(2012, 3, 1, 6, 0))  # a Thursday, 06:00, 6-hour steps
    f = cal.features(np.array([0, 1, 3, 4]))
    tod = np.array([0.25, 0.5, 0.0, 0.25])  # 06:00, 12:00, 00:00 (Friday), 06:00
    np.testing.assert_allclose(f[:, 0], np.sin(2 * math.pi * tod), atol=1e-6)
    np.testing.assert_allclose(f[:, 1], np.cos(2 * math.pi * tod), atol=1e-6)
    dow = np.array([3, 3, 4, 4])
    np.testing.assert_allclose(f[:, 2], np.sin(2 * math.pi * dow / 7), atol=1e-6)
    np.testing.assert_allclose(cal.features_at(datetime(2012, 3, 2, 6), 2), f[2:], atol=1e-6)
    assert Calendar.from_dict(cal.to_dict()) == cal and len(FEATURES) == 4
    assert calendar_from_meta({"steps_per_day": 288}, "m") is None
    with pytest.raises(ValueError, match="m: start: 'soon' is not an ISO 8601 time"):
        calendar_from_meta({"steps_per_day": 288, "start": "soon"}, "m")
    with pytest.raises(ValueError, match="steps_per_day must be a positive integer"):
        calendar_from_meta({"steps_per_day": "abc", "start": "2012-03-01"}, "m")


@pytest.mark.data
def test_los_loop_and_metr_la_say_when_their_steps_are(los_loop_dir, shared_data):
    ll = load_dataset(los_loop_dir)
    assert ll.calendar == Calendar(288, datetime(2012, 3, 1))
    pytest.importorskip("h5py")
    metr = load_dataset(shared_data / "metr_la_format")
    assert metr.calendar == ll.calendar


def _tod_data(tmp_path):
    """12 sensors on a ring: 0-5 white noise, 6-11 a daily wave of their own phase plus a
    little noise: nothing but the time of day tells the waves."""
    rng = np.random.default_rng(0)
    t = np.arange(SPD * DAYS)
    vals = np.empty((t.size, 12))
    vals[:, :6] = rng.standard_normal((t.size, 6))
    for j in range(6, 12):
        vals[:, j] = 3 * np.sin(2 * np.pi * t / SPD + j) + NOISE * rng.standard_normal(t.size)
    d = tmp_path / "tod"
    d.mkdir()
    ids = [f"s{j}" for j in range(12)]
    np.savetxt(d / "values.csv", vals, delimiter=",", header=",".join(ids), comments="")
    adj = np.eye(12) + np.roll(np.eye(12), 1, 1) + np.roll(np.eye(12), -1, 1)
    np.savetxt(d / "adj.csv", adj, delimiter=",")
    (d / "meta.json").write_text(json.dumps({"steps_per_day": SPD, "start": "2020-01-06T00:00"}))
    (d / "keep.txt").write_text("\n".join(ids[:6]))
    return d


def test_windows_carry_the_calendar_after_the_data(tmp_path):
    ds = load_dataset(_tod_data(tmp_path))
    plain = make_windows(ds, 4, 2)
    with_cal = make_windows(ds, 4, 2, calendar=True)
    x0, y0 = plain.train[5]
    x1, y1 = with_cal.train[5]
    assert x0.shape == (4, 12, 1) and x1.shape == (4, 12, 5) and torch.equal(y0, y1)
    assert torch.equal(x1[..., :1], x0)
    want = torch.from_numpy(ds.calendar.features(np.arange(5, 9)))
    assert torch.equal(x1[:, 3, 1:], want) and torch.equal(x1[:, 0, 1:], want)
    xb, _ = with_cal.val[[0, 3]]
    assert torch.equal(xb[1], with_cal.val[3][0])
    assert torch.equal(with_cal.data_input(xb), plain.val[[0, 3]][0])


@pytest.mark.slow
def test_a_time_of_day_series_is_forecast_from_the_calendar(tmp_path):
    """Sensors 6-11 are switched off (``--mask``) and follow only the time of day: with
    calendar inputs their forecast is near the noise floor, without it it is not."""
    d = _tod_data(tmp_path)
    floor = NOISE * math.sqrt(2 / math.pi)  # the MAE of forecasting the wave exactly
    dropped = {}
    for on in (True, False):
        m = run(RunConfig.from_flags(
            data=str(d), mask=str(d / "keep.txt"), t_in=6, horizon=1, epochs=12,
            hidden=16, option={"calendar": on}, out=str(tmp_path / f"run_{on}"), quiet=True,
            time_repeats=1, time_warmup=0,
        ))  # fmt: skip
        dropped[on] = m["schemes"]["mask"]["dropped"]["mae"]
    assert dropped[True] < 4 * floor, dropped  # near the noise floor (0.08)
    assert dropped[False] > 1.0, dropped  # the wave's own size (mean |3 sin| = 1.9)


@pytest.mark.slow
def test_an_exported_calendar_model_is_served_with_its_time(tmp_path):
    """The sidecar records the calendar; ``dynst predict --time`` appends its features
    (and refuses to guess without it), and the forecast matches PyTorch's."""
    from dynst_fast.artifacts import load_run
    from dynst_fast.cli import main
    from dynst_fast.deploy import deployable

    d = _tod_data(tmp_path)
    out = tmp_path / "run"
    run(RunConfig.from_flags(data=str(d), t_in=4, horizon=2, epochs=2, rounds=1, hidden=8,
                             sparsity=0.5, out=str(out), quiet=True, time_repeats=1))  # fmt: skip
    model = tmp_path / "m.onnx"
    assert main(["export", str(out), "--out", str(model)]) == 0
    meta = json.loads((tmp_path / "m.onnx.json").read_text())
    assert meta["calendar"]["steps_per_day"] == SPD and meta["input"]["shape"][-1] == 1 + 4
    k = len(meta["sensor_ids"])
    x = np.random.default_rng(1).standard_normal((1, 4, k, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    args = ["predict", str(model), "--input", str(tmp_path / "x.npy"), "--out"]
    assert main([*args, str(tmp_path / "y.npy")]) == 2  # no --time: refused, not guessed
    when = "2020-02-03T05:00"
    assert main([*args, str(tmp_path / "y.npy"), "--time", when]) == 0
    got = np.load(tmp_path / "y.npy")
    module = deployable(load_run(out)).module
    cal = Calendar.from_dict(meta["calendar"]).features_at(datetime(2020, 2, 3, 5), 4)
    full = np.concatenate([x, np.broadcast_to(cal[None, :, None, :], (1, 4, k, 4))], axis=3)
    with torch.no_grad():
        want = module(torch.from_numpy(full)).numpy()
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
