"""Perceptual metrics from piq (VIF, GMSD, HaarPSI): values, sizes, and the attack and eval rows carrying them."""

from __future__ import annotations

import math

import pytest
import torch

from robustnic.metrics import HAARPSI_MIN_SIDE, PERCEPTUAL, VIF_MIN_SIDE, gmsd, gmsd_pixels, haarpsi, vif

pytestmark = pytest.mark.usefixtures("one_thread")

#: Whether a metric's value gets worse as it rises (GMSD) or as it falls (VIF, HaarPSI).
HIGHER_IS_WORSE = {"vif": False, "gmsd": True, "haarpsi": False}


def _noisy(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)


def test_identical_images_score_perfect(photo):
    assert vif(photo, photo) == pytest.approx(1.0, abs=1e-4)
    assert gmsd(photo, photo) == pytest.approx(0.0, abs=1e-6)
    assert haarpsi(photo, photo) == pytest.approx(1.0, abs=1e-4)
    assert haarpsi(photo[0], photo[0]) == pytest.approx(1.0, abs=1e-4)  # (3, H, W) works as well
    black = torch.zeros(1, 3, 48, 48)  # piq's HaarPSI divides zero weights here: identical is still 1
    assert haarpsi(black, black) == 1.0 and vif(black, black) == pytest.approx(1.0)
    # below half a code value the 8-bit images are the same
    assert gmsd(photo, (photo + 0.001).clamp(0, 1)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", list(PERCEPTUAL))
def test_more_noise_scores_worse(photo, name):
    fn, sign = PERCEPTUAL[name], (1 if HIGHER_IS_WORSE[name] else -1)
    scores = [fn(photo, _noisy(photo, sigma, seed=1)) for sigma in (0.0, 0.02, 0.05, 0.15)]
    badness = [sign * s for s in scores]
    assert badness == sorted(badness) and len(set(badness)) == len(badness), scores


def test_vif_takes_the_source_first(photo):
    blurred = torch.nn.functional.avg_pool2d(photo, 3, stride=1, padding=1, count_include_pad=False)
    assert vif(photo, blurred) < 1 and vif(photo, blurred) != pytest.approx(vif(blurred, photo), abs=1e-3)
    assert gmsd(photo, blurred) == pytest.approx(gmsd(blurred, photo), abs=1e-6)  # symmetric


def test_too_small_images_give_none():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 64, 64, generator=g)
    y = _noisy(x, 0.05, seed=2)

    def at(h: int, w: int) -> dict[str, float | None]:
        return {name: fn(x[..., :h, :w], y[..., :h, :w]) for name, fn in PERCEPTUAL.items()}

    assert at(VIF_MIN_SIDE - 1, 64)["vif"] is None and at(64, VIF_MIN_SIDE - 1)["vif"] is None
    assert at(VIF_MIN_SIDE, VIF_MIN_SIDE)["vif"] is not None  # piq's own minimum, not a guess
    assert at(HAARPSI_MIN_SIDE - 1, 64)["haarpsi"] is None
    assert at(HAARPSI_MIN_SIDE, HAARPSI_MIN_SIDE)["haarpsi"] is not None
    # GMSD: a one-pixel similarity map (both sides under 3 px) has no deviation to measure
    assert [gmsd_pixels(h, w) for h, w in ((1, 1), (2, 2), (2, 1), (2, 3), (3, 3))] == [1, 1, 1, 2, 4]
    assert at(2, 2)["gmsd"] is None and at(2, 3)["gmsd"] is not None and at(3, 3)["gmsd"] > 0
    assert all(v is None for v in at(2, 2).values())


def test_an_attack_row_carries_the_perceptual_columns(tiny, photo):
    from robustnic.attacks import verify_images

    x_adv = _noisy(photo, 3 / 255, seed=3)
    row = verify_images(tiny, photo, x_adv, budget="psnr:30")[0].row
    for name in PERCEPTUAL:
        for where in ("in", "clean", "out"):
            value = row[f"{name}-{where}"]
            assert isinstance(value, float) and math.isfinite(value), (name, where, value)
    assert row["vif-in"] > row["vif-out"] and row["haarpsi-in"] > row["haarpsi-out"]  # a random codec is poor
    assert row["gmsd-in"] < row["gmsd-out"]
    assert row["vif-in"] == pytest.approx(vif(photo, x_adv))


def test_an_eval_row_carries_the_perceptual_columns(tiny, photo):
    from robustnic.codecs.evaluate import RD_KEYS, evaluate_codec

    ev = evaluate_codec(tiny, {"photo": photo, "small": photo[..., :32, :32]}, progress=False)
    row = ev["per_image"]["photo"]
    assert {"vif", "gmsd", "haarpsi"} <= set(RD_KEYS)
    assert all(isinstance(row[k], float) and math.isfinite(row[k]) for k in ("vif", "gmsd", "haarpsi"))
    # a 32-px crop has no VIF: it leaves the mean, which is the full-size photo's, and says why
    small = ev["per_image"]["small"]
    assert small["vif"] is None and small["haarpsi"] is not None
    assert list(ev["left_out"]) == ["small"] and f"{VIF_MIN_SIDE} px" in ev["left_out"]["small"]
    assert ev["results"]["vif"] == row["vif"] and ev["results"]["bpp"] == row["bpp"]
