"""Sensors that lie (``suspect.py``): the rules drawn from training, the check in numpy and
in PyTorch, and ``dynst predict --on-suspect`` on a served window with one stuck and one
absurd sensor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dynst_fast.cli import main
from dynst_fast.suspect import SuspectRules, rules_from_training, suspect_sensors


def _training(b: int = 200, t: int = 6, k: int = 4, seed: int = 0) -> np.ndarray:
    """Graph windows [B, T, K, 1]: sensors 0-2 vary in [0, 10], [100, 110], [-5, 5];
    sensor 3 is constant in most windows (a sensor that legitimately holds a value)."""
    rng = np.random.default_rng(seed)
    x = rng.random((b, t, k, 1)) * 10 + np.array([0, 100, -5, 0])[None, None, :, None]
    x[: int(0.8 * b), :, 3, 0] = 7.0
    return x


def test_rules_are_each_sensors_training_range_widened_by_the_margin():
    x = _training()
    r = rules_from_training([x[:120], x[120:]], "graph", margin=0.1)
    lo, hi = x.min(axis=(0, 1))[:, 0], x.max(axis=(0, 1))[:, 0]
    np.testing.assert_allclose(r.low[:, 0], lo - 0.1 * (hi - lo))
    np.testing.assert_allclose(r.high[:, 0], hi + 0.1 * (hi - lo))
    assert r.check_stuck.tolist() == [True, True, True, False]  # sensor 3 is often constant


def test_flags_stuck_and_out_of_range_but_not_nan_or_a_sensor_that_is_often_constant():
    r = rules_from_training([_training()], "graph")
    x = _training(b=5, seed=1)
    x[1, :, 0, 0] = 4.0  # stuck at a plausible value
    x[2, 3, 1, 0] = 0.0  # a broken sensor's 0: far below its 100-110
    x[3, 2, 2, 0] = np.nan  # missing, not suspect
    x[4, :, 3, 0] = 7.0  # constant, as sensor 3 usually is
    f = r.flags(x, "graph")
    want_stuck = np.zeros((5, 4), bool)
    want_stuck[1, 0] = True
    want_range = np.zeros((5, 4), bool)
    want_range[2, 1] = True
    np.testing.assert_array_equal(f["stuck"], want_stuck)
    np.testing.assert_array_equal(f["out of range"], want_range)
    both = suspect_sensors(x, r)
    np.testing.assert_array_equal(both, want_stuck | want_range)
    t = suspect_sensors(torch.from_numpy(x), r)  # the same check for PyTorch serving
    assert t.dtype == torch.bool and torch.equal(t, torch.from_numpy(want_stuck | want_range))


def test_image_tiles_are_checked_per_patch():
    rng = np.random.default_rng(0)
    tiles = rng.random((50, 3, 4, 1, 2, 2))  # [B, K, T, C, p, p]
    r = rules_from_training([tiles], "image")
    x = rng.random((2, 3, 4, 1, 2, 2))
    x[0, 1] = 0.5  # every pixel of patch 1 the same at every step
    x[1, 2, 0, 0, 1, 1] = 9.0
    f = r.flags(x, "image")
    assert f["stuck"].tolist() == [[False, True, False], [False, False, False]]
    assert f["out of range"].tolist() == [[False, False, False], [False, False, True]]


def test_rules_round_trip_through_the_sidecar_and_refuse_a_bad_one():
    r = rules_from_training([_training()], "graph")
    back = SuspectRules.from_dict(json.loads(json.dumps(r.to_dict())), 4, 1)
    np.testing.assert_array_equal(back.low, r.low)
    np.testing.assert_array_equal(back.check_stuck, r.check_stuck)
    bad = r.to_dict()
    bad["low"] = bad["low"][:2]
    with pytest.raises(ValueError, match="suspect.low must be \\[4\\]\\[1\\]"):
        SuspectRules.from_dict(bad, 4, 1)


# ------------------------------------------------------------------ served
@pytest.fixture(scope="module")
def lying(tiny_export, tmp_path_factory) -> tuple[Path, dict, Path]:
    """Two plausible windows; in window 1 sensor 2 is stuck and sensor 5 reads 10x its
    training maximum."""
    meta = json.loads(Path(f"{tiny_export}.json").read_text())
    low = np.array([r[0] for r in meta["suspect"]["low"]])
    high = np.array([r[0] for r in meta["suspect"]["high"]])
    rng = np.random.default_rng(0)
    x = (low + high) / 2 + (high - low) / 4 * (2 * rng.random((2, meta["t_in"], len(low))) - 1)
    x = x[..., None].astype(np.float32)
    x[1, :, 2, 0] = x[1, -1, 2, 0]  # stuck: its last value at every step
    x[1, 6, 5, 0] = 10 * high[5]  # absurd
    f = tmp_path_factory.mktemp("lying") / "x.npy"
    np.save(f, x)
    return tiny_export, meta, f


def test_a_stuck_and_an_absurd_sensor_are_switched_off_with_a_warning(lying, tmp_path, capsys):
    model, meta, x = lying
    ids = meta["sensor_ids"]
    assert main(["predict", str(model), "--input", str(x), "--out", str(tmp_path / "d.npy")]) == 0
    err = capsys.readouterr().err
    assert f"sensor(s) {ids[2]!r} are stuck" in err and "window(s) [1]" in err
    assert f"sensor(s) {ids[5]!r} read out of their training range" in err
    dropped = np.load(tmp_path / "d.npy")
    # the same as switching both off by hand (NaN = missing)
    by_hand = np.load(x)
    by_hand[1, :, [2, 5], 0] = np.nan
    np.save(tmp_path / "h.npy", by_hand)
    assert main(["predict", str(model), "--input", str(tmp_path / "h.npy"),
                 "--out", str(tmp_path / "h_out.npy"), "--on-suspect", "keep"]) == 0  # fmt: skip
    np.testing.assert_allclose(dropped, np.load(tmp_path / "h_out.npy"), rtol=1e-5, atol=1e-4)
    capsys.readouterr()
    assert main(["predict", str(model), "--input", str(x), "--out", str(tmp_path / "k.npy"),
                 "--on-suspect", "keep"]) == 0  # fmt: skip
    kept = np.load(tmp_path / "k.npy")
    assert "stuck" not in capsys.readouterr().err
    np.testing.assert_allclose(kept[0], dropped[0], rtol=1e-5, atol=1e-4)  # window 0 is clean
    assert np.abs(kept[1] - dropped[1]).max() > 1e-2  # the liars change the forecast


def test_on_suspect_fail_is_one_line_and_exit_2(lying, tmp_path, capsys):
    model, meta, x = lying
    code = main(["predict", str(model), "--input", str(x), "--out", str(tmp_path / "y.npy"),
                 "--on-suspect", "fail"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"sensor {meta['sensor_ids'][2]!r} is stuck" in err and "window 1" in err
    assert not (tmp_path / "y.npy").exists()
