"""Tests for dynst_fast.metrics against hand-computed numbers and numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dynst_fast.metrics import (
    StreamingMetrics,
    evaluate,
    image_metrics,
    mae,
    masked_mae,
    masked_rmse,
    mse,
    per_horizon,
    psnr,
    rmse,
    ssim,
)


def test_hand_computed():
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0])
    target = torch.tensor([2.0, 2.0, 1.0, 8.0])  # errors 1, 0, 2, 4
    assert float(mae(pred, target)) == pytest.approx(7 / 4)
    assert float(mse(pred, target)) == pytest.approx(21 / 4)
    assert float(rmse(pred, target)) == pytest.approx(math.sqrt(21 / 4))
    mask = torch.tensor([True, True, True, False])
    assert float(mae(pred, target, mask)) == pytest.approx(1.0)
    assert float(rmse(pred, target, mask)) == pytest.approx(math.sqrt(5 / 3))


def test_nan_targets_are_excluded_and_combined_with_mask():
    pred = torch.tensor([[1.0, 5.0], [0.0, 0.0]])
    target = torch.tensor([[2.0, float("nan")], [3.0, -1.0]])  # errors 1, -, 3, 1
    for f in (mae, masked_mae):
        assert float(f(pred, target)) == pytest.approx(5 / 3)
    assert float(masked_rmse(pred, target)) == pytest.approx(math.sqrt(11 / 3))
    row = torch.tensor([[True], [False]])  # broadcast mask: keep the first row only
    assert float(masked_mae(pred, target, row)) == pytest.approx(1.0)
    assert float(masked_mae(pred, target, null_val=-1.0)) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="no valid entries"):
        mae(pred, target, torch.zeros(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="no valid entries"):
        rmse(pred, torch.full((2, 2), float("nan")))


def test_matches_numpy_and_accepts_numpy():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(8, 3, 5, 2))
    t = rng.normal(size=(8, 3, 5, 2))
    t[rng.random(t.shape) < 0.2] = np.nan
    ok = ~np.isnan(t)
    assert float(mae(p, t)) == pytest.approx(np.abs(p - t)[ok].mean(), rel=1e-12)
    assert float(rmse(p, t)) == pytest.approx(np.sqrt(((p - t)[ok] ** 2).mean()), rel=1e-12)
    m = rng.random(t.shape) < 0.5
    both = ok & m
    assert float(masked_mae(p, t, m)) == pytest.approx(np.abs(p - t)[both].mean(), rel=1e-12)
    hz = per_horizon(mae, p, t)
    expect = [np.abs(p[:, h] - t[:, h])[ok[:, h]].mean() for h in range(3)]
    np.testing.assert_allclose(hz, expect, rtol=1e-12)
    hm = per_horizon(masked_rmse, p, t, m)
    expect = [np.sqrt(((p[:, h] - t[:, h])[both[:, h]] ** 2).mean()) for h in range(3)]
    np.testing.assert_allclose(hm, expect, rtol=1e-12)


def test_evaluate():
    pred = np.zeros((2, 2, 1, 1))
    target = np.array([1.0, 3.0, np.nan, -2.0]).reshape(2, 2, 1, 1)
    # horizon 0 holds target[0,0]=1 and target[1,0]=NaN; horizon 1 holds 3 and -2
    out = evaluate(torch.from_numpy(pred).float(), target)
    assert out["mae"] == pytest.approx(2.0) and out["count"] == 3
    assert out["rmse"] == pytest.approx(math.sqrt(14 / 3))
    assert out["mae_per_horizon"] == pytest.approx([1.0, 2.5])
    assert out["rmse_per_horizon"] == pytest.approx([1.0, math.sqrt(13 / 2)])
    assert all(isinstance(v, float) for v in out["mae_per_horizon"])
    bad = target.copy()
    bad[:, 1] = np.nan
    with pytest.raises(ValueError, match="horizon 1"):
        evaluate(pred, bad)


def test_differentiable_and_errors():
    pred = torch.tensor([1.0, 2.0], requires_grad=True)
    target = torch.tensor([0.0, float("nan")])
    loss = masked_mae(pred, target)
    loss.backward()
    assert loss.dim() == 0 and pred.grad.tolist() == [1.0, 0.0]  # no NaN leaks into grads
    with pytest.raises(ValueError, match="shapes differ"):
        mae(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(TypeError, match="boolean"):
        mae(torch.zeros(2), torch.ones(2), torch.ones(2))
    with pytest.raises(ValueError, match="broadcast"):
        mae(torch.zeros(2, 3), torch.ones(2, 3), torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="B, T"):
        per_horizon(mae, torch.zeros(3), torch.zeros(3))


# --------------------------------------------------------------------------- images
@pytest.mark.parametrize("shape", [(33, 49), (7, 7), (2, 3, 1, 12, 9)])
@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_and_psnr_match_scikit_image(shape, seed):
    skm = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(seed)
    target = rng.random(shape) * 20 + 270
    pred = target + rng.standard_normal(shape) * (0.5 + seed)
    r = float(target.max() - target.min())
    frames = target.reshape(-1, *shape[-2:])
    preds = pred.reshape(-1, *shape[-2:])
    want = np.mean(
        [skm.structural_similarity(t, p, data_range=r) for t, p in zip(frames, preds, strict=True)]
    )
    assert float(ssim(torch.tensor(pred), torch.tensor(target), r)) == pytest.approx(want, rel=1e-9)
    want_psnr = skm.peak_signal_noise_ratio(target, pred, data_range=r)
    got = float(psnr(torch.tensor(pred), torch.tensor(target), r))
    assert got == pytest.approx(want_psnr, rel=1e-9)


def test_image_metrics_defaults_and_errors():
    t = torch.rand(2, 3, 1, 9, 10) * 4 + 1
    m = image_metrics(t.clone(), t)
    assert m["ssim"] == pytest.approx(1.0)
    assert m["data_range"] == pytest.approx(float(t.max() - t.min()))
    assert math.isinf(m["psnr"])
    worse = image_metrics(t + 0.5 * torch.randn_like(t), t)
    assert worse["ssim"] < 0.99 and 0 < worse["psnr"] < 100
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim(torch.rand(6, 9), torch.rand(6, 9), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        ssim(torch.rand(8, 8), torch.full((8, 8), float("nan")), 1.0)
    with pytest.raises(ValueError, match="data_range must be a positive"):
        psnr(torch.rand(8, 8), torch.rand(8, 8), 0.0)


# ---------------------------------------------------------------- streamed
@pytest.mark.parametrize("seed", range(4))
def test_streaming_metrics_equal_the_whole_split(seed):
    """Batch by batch (uneven batches, NaN targets) gives evaluate()'s and
    image_metrics()' figures on the whole split."""
    from dynst_fast.metrics import StreamingMetrics, evaluate, image_metrics

    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(23, 3, 2, 9, 8, generator=g, dtype=torch.float64)
    target = torch.randn(23, 3, 2, 9, 8, generator=g, dtype=torch.float64)
    graph_target = target.clone()
    graph_target[torch.rand(target.shape, generator=g) < 0.2] = float("nan")
    rng = float(target.max() - target.min())
    graph, image = StreamingMetrics(3), StreamingMetrics(3, data_range=rng)
    for lo, hi in [(0, 5), (5, 6), (6, 17), (17, 23)]:
        graph.update(pred[lo:hi], graph_target[lo:hi])
        image.update(pred[lo:hi], target[lo:hi])
    want = evaluate(pred, graph_target)
    got = graph.result()
    assert got["count"] == want["count"]
    for key in ("mae", "rmse"):
        assert got[key] == pytest.approx(want[key], rel=1e-12)
        assert got[f"{key}_per_horizon"] == pytest.approx(want[f"{key}_per_horizon"], rel=1e-12)
    want_img = {**evaluate(pred, target), **image_metrics(pred, target)}
    got_img = image.result()
    for key in ("mae", "ssim", "psnr", "data_range"):
        assert got_img[key] == pytest.approx(want_img[key], rel=1e-12)


def test_streaming_metrics_refuse_what_evaluate_refuses():
    from dynst_fast.metrics import StreamingMetrics

    acc = StreamingMetrics(2)
    with pytest.raises(ValueError, match="no valid entries"):
        acc.result()
    acc.update(torch.zeros(1, 2, 3), torch.tensor([[[1.0, 2, 3], [float("nan")] * 3]]))
    with pytest.raises(ValueError, match="horizon 1"):
        acc.result()
    with pytest.raises(ValueError, match=r"\[B, 2, \.\.\.\]"):
        acc.update(torch.zeros(1, 3, 3), torch.zeros(1, 3, 3))


def test_kept_and_dropped_add_up_to_the_whole_field() -> None:
    """A hand-made case: 2 windows, 2 steps, 4 sensors (1 and 3 kept), one NaN target."""
    target = torch.tensor(
        [[[1.0, 2.0, 3.0, 4.0], [1.0, float("nan"), 3.0, 4.0]],
         [[0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0]]]
    )[..., None]  # fmt: skip
    pred = torch.tensor(
        [[[1.5, 2.0, 2.0, 4.0], [1.0, 9.0, 3.0, 6.0]],
         [[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 5.0, 2.0]]]
    )[..., None]  # fmt: skip
    kept = torch.tensor([False, True, False, True])[:, None]  # [N, C]
    acc = StreamingMetrics(2).split_by(kept)
    acc.update(pred[:1], target[:1])
    acc.update(pred[1:], target[1:])
    r = acc.result()
    # kept: sensors 1, 3: |0|, |0|, (NaN), |2|, |0|, |1|, |0|, |0| -> 3 over 7 values
    assert r["kept"]["count"] == 7 and r["kept"]["mae"] == pytest.approx(3 / 7)
    # dropped: sensors 0, 2: .5, 1, 0, 0, 1, 0, 0, 3 -> 5.5 over 8 values
    assert r["dropped"]["count"] == 8 and r["dropped"]["mae"] == pytest.approx(5.5 / 8)
    assert r["count"] == 15
    whole = (r["kept"]["mae"] * 7 + r["dropped"]["mae"] * 8) / 15
    assert r["mae"] == pytest.approx(whole)
    assert r["kept"]["mae_per_horizon"] == pytest.approx([1 / 4, 2 / 3])
    assert r["dropped"]["mae_per_horizon"] == pytest.approx([2.5 / 4, 3 / 4])
    assert evaluate(pred, target, kept.expand(4, 1))["mae"] == pytest.approx(3 / 7)
    with pytest.raises(ValueError, match="does not fit"):
        StreamingMetrics(2).split_by(torch.ones(3, dtype=torch.bool)).update(pred, target)
