"""Bjøntegaard delta rate and PSNR (VCEG-M33): the average difference between two RD curves.

Each curve is fitted with a cubic polynomial (log-rate as a function of PSNR for BD-rate, PSNR as a
function of log-rate for BD-PSNR) and integrated over the interval where both curves have data.
"""

from __future__ import annotations

import numpy as np


def _integral_gap(x_a, y_a, x_b, y_b) -> float:
    """Mean of (fit_b - fit_a) over the overlap of x ranges (cubic fits, or lower degree if few points)."""
    x_a, y_a, x_b, y_b = map(np.asarray, (x_a, y_a, x_b, y_b))
    lo, hi = max(x_a.min(), x_b.min()), min(x_a.max(), x_b.max())
    if not hi > lo:
        raise ValueError("the two RD curves do not overlap")
    fits = []
    for x, y in ((x_a, y_a), (x_b, y_b)):
        fits.append(np.polyint(np.polyfit(x, y, min(3, len(x) - 1))))
    area_a = np.polyval(fits[0], hi) - np.polyval(fits[0], lo)
    area_b = np.polyval(fits[1], hi) - np.polyval(fits[1], lo)
    return float((area_b - area_a) / (hi - lo))


def bd_rate(rate_ref, psnr_ref, rate_test, psnr_test) -> float:
    """Average bitrate difference of ``test`` vs ``ref`` at equal PSNR, in percent (negative = test saves bits)."""
    if min(len(rate_ref), len(rate_test)) < 2:
        raise ValueError("BD-rate needs at least two RD points per curve")
    gap = _integral_gap(psnr_ref, np.log(rate_ref), psnr_test, np.log(rate_test))
    return float((np.exp(gap) - 1) * 100)


def bd_psnr(rate_ref, psnr_ref, rate_test, psnr_test) -> float:
    """Average PSNR difference (dB) of ``test`` vs ``ref`` at equal rate (positive = test is better)."""
    if min(len(rate_ref), len(rate_test)) < 2:
        raise ValueError("BD-PSNR needs at least two RD points per curve")
    return _integral_gap(np.log(rate_ref), psnr_ref, np.log(rate_test), psnr_test)
