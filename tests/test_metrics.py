"""Metrics: PSNR/MS-SSIM on 8-bit values, VI, estimated rate, Bjøntegaard deltas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pytorch_msssim
import torch

from robustnic.metrics import delta_psnr, estimated_bpp, ms_ssim, ms_ssim_scales, mse_to_psnr, psnr, psnr_to_mse
from robustnic.metrics.bd import bd_psnr, bd_rate


def test_psnr_is_computed_on_8bit_values():
    x = torch.full((1, 3, 8, 8), 100 / 255)
    assert psnr(x, x + 0.001) == math.inf  # below half a code value: same 8-bit image
    y = x.clone()
    y[..., 0, 0] += 1 / 255
    expected = 10 * math.log10(1 / ((1 / 255) ** 2 * 3 / (3 * 64)))
    assert psnr(x, y) == pytest.approx(expected)
    assert psnr_to_mse(mse_to_psnr(1e-4)) == pytest.approx(1e-4)


def test_ms_ssim_uses_the_scales_an_image_allows():
    assert [ms_ssim_scales(s, 500) for s in (10, 11, 20, 21, 41, 80, 81, 160, 161, 4000)] == [0, 1, 1, 2, 3, 3, 4, 4, 5, 5]
    g = torch.Generator().manual_seed(0)
    big = torch.rand(1, 3, 176, 176, generator=g)
    noisy = (big + 0.05 * torch.randn(big.shape, generator=g)).clamp(0, 1)
    assert ms_ssim(big, big) == pytest.approx(1.0)
    # five scales: the value CompressAI's pytorch-msssim gives
    assert ms_ssim(big, noisy) == pytest.approx(
        pytorch_msssim.ms_ssim(big.mul(255).round(), noisy.mul(255).round(), data_range=255).item(), abs=1e-4)
    # a 128-px crop gets four scales, a 64x96 photo three: a number, worse for more noise
    for side in (128, 64):
        a, b = big[..., :side, :side], noisy[..., :side, :side]
        worse = (a + 0.15 * torch.randn(a.shape, generator=g)).clamp(0, 1)
        assert 0 < ms_ssim(a, worse) < ms_ssim(a, b) < 1
    assert ms_ssim(big[..., :10, :10], noisy[..., :10, :10]) is None  # no 11-px window fits


def test_ms_ssim_on_a_small_photo_is_reported_with_its_scale_count(photo):
    assert ms_ssim(photo, photo) == pytest.approx(1.0)  # 64x96: three scales
    assert ms_ssim_scales(*photo.shape[-2:]) == 3


def test_delta_psnr_measures_amplification():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 32, 32, generator=g)
    x_adv = (x + 4 / 255).clamp(0, 1)
    x_hat = x.clone()
    amplified = (x_hat + 8 / 255).clamp(0, 1)
    assert delta_psnr(x, x_adv, x_hat, amplified) == pytest.approx(10 * math.log10(4), abs=0.3)


def test_estimated_bpp_sums_every_latent():
    lk = {"y": torch.full((2, 4, 2, 2), 0.5), "z": torch.full((2, 1, 1, 1), 0.25)}
    bpp = estimated_bpp(lk, num_pixels=16)
    assert torch.allclose(bpp, torch.tensor([(16 * 1 + 2) / 16] * 2))


def test_bd_rate_of_a_curve_with_half_the_rate():
    rate = np.array([0.2, 0.4, 0.8, 1.6])
    quality = np.array([28.0, 31.0, 34.0, 37.0])
    assert bd_rate(rate, quality, rate / 2, quality) == pytest.approx(-50.0, abs=1e-6)
    assert bd_rate(rate, quality, rate, quality) == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(rate, quality, rate, quality + 1) == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError):
        bd_rate(rate, quality, rate, quality + 100)
