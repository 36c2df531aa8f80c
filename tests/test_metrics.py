"""Video-prediction metrics against hand-computed values."""

import numpy as np
import pytest

from wmlab.eval.metrics import (copy_last_baseline, pooled_psnr_per_step, prediction_table, psnr_per_step,
                                ssim_per_step)


def test_psnr_matches_hand_computation():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8)
    pred = truth.copy()
    pred[0, 1] = np.clip(pred[0, 1].astype(int) + 10, 0, 255)
    mse = ((pred[0, 1].astype(np.float64) - truth[0, 1]) ** 2).mean() / 255.0**2
    expected = 10 * np.log10(1.0 / mse)
    values = psnr_per_step(pred, truth)
    # Identical frames are capped at 100 dB; step 1 averages one perfect and one imperfect frame.
    assert values[0] == pytest.approx(100.0)
    assert values[1] == pytest.approx((100.0 + expected) / 2, rel=1e-5)


def test_ssim_identity_and_degradation():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 256, (1, 2, 32, 32, 3), dtype=np.uint8)
    noisy = np.clip(truth + rng.normal(0, 40, truth.shape), 0, 255).astype(np.uint8)
    assert ssim_per_step(truth, truth) == pytest.approx([1.0, 1.0])
    assert (ssim_per_step(noisy, truth) < 0.9).all()


def test_baseline_and_table():
    context = np.arange(2 * 3 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 4, 3)
    base = copy_last_baseline(context, 5)
    assert base.shape == (2, 5, 4, 4, 3) and (base == context[:, -1:]).all()
    truth = np.repeat(context[:, -1:], 5, axis=1)
    table = prediction_table(truth, truth, context)
    assert set(table) == {"psnr", "ssim", "baseline_psnr", "baseline_ssim"}
    assert np.allclose(table["baseline_psnr"], 100.0)


def test_rejects_float_frames():
    with pytest.raises(ValueError, match="uint8"):
        psnr_per_step(np.zeros((1, 1, 4, 4, 3)), np.zeros((1, 1, 4, 4, 3)))


def test_pooled_psnr_is_the_psnr_of_the_mean_error():
    truth = np.zeros((2, 1, 2, 2, 3), np.uint8)
    pred = truth.copy()
    pred[1] = 51  # one frame off by 0.2 everywhere (MSE 0.04), one exact
    pooled = pooled_psnr_per_step(pred, truth)
    assert np.allclose(pooled, -10 * np.log10(0.02))  # mean MSE (0 + 0.04) / 2
    per_frame = psnr_per_step(pred, truth)
    assert np.allclose(per_frame, (100.0 + -10 * np.log10(0.04)) / 2)  # the exact frame counts as 100 dB
