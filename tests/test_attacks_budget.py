"""Budgets: parsing, the exact 8-bit finalisation, and what survives a PNG save and reload."""

from __future__ import annotations

import math

import pytest
import torch

from robustnic.attacks import L2, MSE, PSNR, Linf, parse_budget
from robustnic.data import load_image, save_image
from robustnic.errors import BudgetError
from robustnic.metrics import psnr

pytestmark = pytest.mark.usefixtures("one_thread")


BUDGETS = [PSNR(40), PSNR(30), MSE(3e-4), Linf(3), Linf(2.5), L2(0.6), PSNR(30, linf_cap=4), L2(0.6, linf_cap=2)]


def _far_point(x: torch.Tensor, seed: int) -> torch.Tensor:
    """A continuous point well outside every budget above (|δ| up to 20/255)."""
    g = torch.Generator().manual_seed(seed)
    return (x + (torch.rand(x.shape, generator=g) * 2 - 1) * 20 / 255).clamp(0, 1)


@pytest.mark.parametrize("spec, budget", [
    ("psnr:40", PSNR(40)), ("PSNR:35.5", PSNR(35.5)), ("mse:1e-4", MSE(1e-4)), ("linf:8", Linf(8)),
    ("l2:1.5", L2(1.5)), (" linf = 4 ", Linf(4)),
])
def test_parse_budget(spec, budget):
    parsed = parse_budget(spec)
    assert parsed == budget and type(parsed) is type(budget)
    assert parse_budget(str(parsed)) == parsed  # str() round-trips
    assert parse_budget(budget) is budget


@pytest.mark.parametrize("spec, budget, cap", [
    ("psnr:35,linf:16", PSNR(35, linf_cap=16), 16.0), (" PSNR:40 , linf=2.5 ", PSNR(40, linf_cap=2.5), 2.5),
    ("mse:1e-4,linf:8", MSE(1e-4, linf_cap=8), 8.0), ("l2:1.5,linf:4", L2(1.5, linf_cap=4), 4.0),
    ("psnr:35", PSNR(35), None),
])
def test_a_budget_carries_an_explicit_linf_cap_and_round_trips(spec, budget, cap):
    parsed = parse_budget(spec)
    assert parsed == budget and parsed.linf_cap == cap
    assert str(parsed) == (f"{parsed.kind}:{parsed.value:g}" + ("" if cap is None else f",linf:{cap:g}"))
    assert parse_budget(str(parsed)) == parsed and hash(parse_budget(str(parsed))) == hash(parsed)
    assert (parsed == PSNR(35)) == (spec == "psnr:35")  # the cap is part of the budget's identity


@pytest.mark.parametrize("spec, message", [
    ("psnr:35,linf:0", "cap .* positive"), ("psnr:35,linf:-2", "cap .* positive"), ("psnr:35,linf:abc", "cap .* number"),
    ("psnr:35,l2:3", "only an L∞ cap"), ("psnr:35,linf:16,linf:8", "at most one L∞ cap"),
    ("linf:8,linf:4", "needs no L∞ cap"), ("psnr:35,", "cannot read budget"),
])
def test_a_bad_cap_is_a_clear_budget_error(spec, message):
    with pytest.raises(BudgetError, match=message):
        parse_budget(spec)


def test_the_cap_binds_alone_and_a_cap_below_one_step_is_refused(photo):
    x = photo
    far = _far_point(x, 3)
    free, capped = PSNR(20).finalize(x, far), PSNR(20, linf_cap=4).finalize(x, far)
    assert float((free - x).abs().amax()) * 255 > 4.5  # the ball alone allows more than the cap
    assert float((capped - x).abs().amax()) * 255 <= 4 + 1e-4 and PSNR(20).satisfied(x, capped)
    assert not PSNR(20, linf_cap=4).satisfied(x, free)
    projected = PSNR(20, linf_cap=4).project(x, far)
    assert float((projected - x).abs().amax()) * 255 <= 4 + 1e-4
    with pytest.raises(BudgetError, match="allows no 8-bit change"):
        PSNR(20, linf_cap=0.5).check_possible(x)


@pytest.mark.parametrize("spec", ["psnr", "psnr:", "psnr:abc", "psnr:-3", "mse:0", "linf:nan", "l2:inf", "ssim:3", "", "40"])
def test_bad_budget_specs_raise_budget_errors(spec):
    with pytest.raises(BudgetError):
        parse_budget(spec)


def test_psnr_and_mse_are_the_same_ball():
    assert PSNR(40).tau == pytest.approx(MSE(1e-4).tau, rel=1e-12)
    x = torch.full((1, 3, 10, 10), 0.5)
    # 3 of 300 values moved by 1/255: MSE = 1e-2 / 255² exactly
    y = x.clone()
    y[0, 0, 0, :3] += 1 / 255
    mse = 3 / 300 / 255**2
    assert MSE(mse).satisfied(x, y) and not MSE(mse * 0.999).satisfied(x, y)
    assert PSNR(-10 * math.log10(mse)).satisfied(x, y)


@pytest.mark.parametrize("budget", BUDGETS, ids=str)
def test_finalize_is_8bit_inside_the_budget_and_survives_png(budget, photo, odd_photo, tmp_path):
    for i, x in enumerate([photo, odd_photo]):
        x_adv = budget.finalize(x, _far_point(x, i))
        assert x_adv.dtype == torch.float32 and x_adv.shape == x.shape
        assert torch.equal(x_adv, (x_adv * 255).round() / 255), "values must be multiples of 1/255"
        assert budget.satisfied(x, x_adv)
        path = tmp_path / f"{i}.png"
        save_image(x_adv, path)
        reloaded = load_image(path)
        assert torch.equal(reloaded, x_adv) and budget.satisfied(x, reloaded)


@pytest.mark.parametrize("budget", [PSNR(40), PSNR(30), L2(0.6)], ids=str)
def test_finalize_uses_nearly_the_whole_ball(budget, photo):
    """From a point on the ball's surface, rounding then shrinking loses little of the radius."""
    x_adv = budget.finalize(photo, budget.project(photo, _far_point(photo, 3)))
    used = float((x_adv - photo).norm() / budget.radius(photo)[0])
    assert 0.97 <= used <= 1.0 + 1e-6


def test_finalize_keeps_an_image_already_inside(photo):
    x_adv = PSNR(40).finalize(photo, _far_point(photo, 0))
    assert torch.equal(PSNR(40).finalize(photo, x_adv), x_adv)
    assert torch.equal(PSNR(30).finalize(photo, x_adv), x_adv)  # a looser ball: nothing to undo


def test_linf_budget_is_exact_on_the_grid(photo):
    x_adv = Linf(3).finalize(photo, _far_point(photo, 1))
    assert float((x_adv - photo).abs().max() * 255) == pytest.approx(3, abs=1e-4)


def test_finalize_is_per_image(photo):
    """A batch: each image is shrunk only as much as it needs."""
    x = torch.cat([photo, photo])
    inside = PSNR(45).finalize(photo, _far_point(photo, 0))
    x_adv = PSNR(45).finalize(x, torch.cat([inside, _far_point(photo, 1)]))
    assert torch.equal(x_adv[:1], inside)
    assert PSNR(45).satisfied(x, x_adv) and psnr(photo, x_adv[1:]) >= 45


@pytest.mark.parametrize("budget", [PSNR(200), Linf(0.5), L2(0.001), MSE(1e-12)], ids=str)
def test_budgets_finer_than_8bit_rounding_are_refused(budget, photo):
    with pytest.raises(BudgetError, match="allows no 8-bit change"):
        budget.check_possible(photo)


def test_a_budget_the_nearest_8bit_image_breaks_is_refused():
    """An off-grid source whose own rounding already costs more than the budget."""
    x = torch.full((1, 3, 8, 8), 0.5 / 255 + 0.4)  # half a step off the grid everywhere
    with pytest.raises(BudgetError, match="finer than 8-bit rounding"):
        PSNR(60).finalize(x, x)


def test_project_lands_in_the_ball_and_the_box(photo):
    far = _far_point(photo, 5)
    for budget in BUDGETS:
        p = budget.project(photo, far)
        assert p.min() >= 0 and p.max() <= 1
        assert float((p - photo).flatten(1).norm(dim=1).max() if not budget.is_linf else (p - photo).abs().max()) \
            <= float(budget.radius(photo)[0]) * (1 + 1e-5)


def test_measure_units(photo):
    x_adv = Linf(3).finalize(photo, _far_point(photo, 1))
    assert float(Linf(3).measure(photo, x_adv)[0]) == pytest.approx(3)
    assert float(PSNR(1).measure(photo, x_adv)[0]) == pytest.approx(psnr(photo, x_adv), abs=1e-5)
    assert float(L2(1).measure(photo, x_adv)[0]) == pytest.approx(float((x_adv - photo).norm()), rel=1e-5)
