"""The field's attack families and objectives (issue 16): madc, ssah, cadv, korhonen, the added-noise
and rate-distortion objectives and the colour space of the distortion.

Budget and determinism checks run on the tiny random model; damage is measured on the shipped
trained ``hyperprior-small`` (a tiny random model reconstructs almost the same image whatever the
input, so it shows no damage to beat noise with), from real bitstreams.
"""

from __future__ import annotations

import json

import pytest
import torch

from robustnic.attacks import (
    L2, PSNR, AddedNoise, AttackSettings, Distortion, Linf, RateDistortion, Targeted, attack_and_verify, make_attack,
    to_color_space, verify_attack,
)
from robustnic.attacks.korhonen import masking_weights
from robustnic.attacks.madc import held_metric
from robustnic.attacks.objectives import AttackContext
from robustnic.codecs.base import CodecOutput
from robustnic.data import bundled_photos, load_image, save_image
from robustnic.errors import RobustnicError
from robustnic.metrics import estimated_bpp
from tests.conftest import tiny_codec

pytestmark = pytest.mark.usefixtures("one_thread")

NEW_METHODS = ["madc", "ssah", "cadv", "korhonen"]


@pytest.fixture(scope="module")
def crops():
    """Three 64x64 photo crops as a batch."""
    return torch.cat(list(bundled_photos(["astronaut", "coffee", "chelsea"], crop=64).values()))


@pytest.fixture(scope="module")
def tiny():
    return tiny_codec(seed=3)


@pytest.fixture(scope="module")
def trained():
    from robustnic.codecs import load_codec, read_manifest

    shipped = sorted(spec for spec in read_manifest() if spec.startswith("hyperprior-small:"))
    if not shipped:
        pytest.skip("no trained hyperprior-small model is shipped (src/robustnic/weights)")
    return load_codec(shipped[0])


def mean(rows, key):
    return sum(r[key] for r in rows) / len(rows)


def band_fraction(delta: torch.Tensor, cutoff: float) -> float:
    """Share of the energy of ``delta`` (mean removed per channel) below ``cutoff`` cycles per pixel."""
    d = delta - delta.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(d.double()).abs() ** 2
    fy = torch.fft.fftfreq(d.shape[-2], dtype=torch.float64).view(-1, 1)
    fx = torch.fft.fftfreq(d.shape[-1], dtype=torch.float64).view(1, -1)
    low = (fy**2 + fx**2).sqrt() < cutoff
    return float(power[..., low].sum() / power.sum())


def chroma_change(shape: tuple[int, ...], cb: float, cr: float) -> torch.Tensor:
    """An RGB change that moves only Cb and Cr (the inverse of the BT.601 map, computed here)."""
    basis = to_color_space(torch.eye(3).view(3, 3, 1, 1), "ycbcr", offset=False)  # columns: images of R, G, B
    m = basis.view(3, 3).T  # ycbcr = m @ rgb
    rgb = torch.linalg.solve(m, torch.tensor([0.0, cb, cr]))
    return rgb.view(1, 3, 1, 1).expand(shape).clone()


# ----- the budget, on the saved 8-bit PNG, through the one verification path -------------------------
CASES = [(m, "distortion", "rgb") for m in NEW_METHODS] + [
    ("paper", "added-noise", "rgb"), ("pgd", "added-noise", "y"), ("ssah", "rate-distortion", "ycbcr"),
    ("madc", "added-noise", "rgb"),
]


@pytest.mark.parametrize("method, objective, color", CASES)
@pytest.mark.parametrize("budget", [PSNR(35), Linf(3), L2(0.6)], ids=str)
def test_the_budget_holds_on_the_saved_png(method, objective, color, budget, tiny, crops, tmp_path):
    x = crops[:2]
    out = attack_and_verify(tiny, x, AttackSettings(method, budget, steps=3, objective=objective, color=color))
    assert all(r["budget-ok"] for r in out.rows)
    assert torch.equal(out.x_adv, (out.x_adv * 255).round() / 255) and not torch.equal(out.x_adv, x)
    for i in range(2):
        save_image(out.x_adv[i : i + 1], tmp_path / f"{i}.png")
        assert budget.satisfied(x[i : i + 1], load_image(tmp_path / f"{i}.png"))


@pytest.mark.parametrize("method", NEW_METHODS)
def test_new_methods_are_bit_identical_under_a_seed(method, tiny, crops):
    runs = []
    for k in range(2):
        torch.manual_seed(100 + k)  # the caller's random state does not matter
        runs.append(make_attack(method, tiny, budget=PSNR(35), steps=3, restarts=2, seed=4)(crops[:2]))
    assert torch.equal(runs[0], runs[1])
    other = make_attack(method, tiny, budget=PSNR(35), steps=3, restarts=2, seed=5)(crops[:2])
    if method == "madc":  # starts from noise: another seed, another start
        assert not torch.equal(runs[0], other)


# ----- damage beyond noise on a trained model, from real bitstreams -------------------------------------
@pytest.fixture(scope="module")
def noisy(trained, crops):
    budget = PSNR(35)
    x_adv = make_attack("noise", trained, budget=budget, seed=0)(crops)
    return x_adv, verify_attack(trained, crops, x_adv, budget=budget)


@pytest.mark.parametrize("method", NEW_METHODS)
def test_new_methods_beat_noise_of_the_same_budget(method, trained, crops, noisy):
    budget = PSNR(35)
    attacked = verify_attack(trained, crops, make_attack(method, trained, budget=budget, steps=20)(crops),
                             budget=budget)
    assert all(r["budget-ok"] and r["psnr-in"] >= 35 for r in attacked)
    # the codec amplifies the attack (VI) where it damps noise, and the reconstruction moves further
    assert mean(attacked, "delta-psnr") > mean(noisy[1], "delta-psnr") + 5
    assert mean(attacked, "psnr-out-clean") < mean(noisy[1], "psnr-out-clean") - 4
    assert all(a["psnr-out"] < n["psnr-out"] for a, n in zip(attacked, noisy[1]))


def _added_noise(codec, x, x_adv) -> float:
    """Mean squared added noise ((x̂′ − x̂) − (x′ − x))² of the real decoded images."""
    clean = torch.cat([codec.roundtrip(x[i : i + 1]).x_hat for i in range(x.shape[0])])
    adv = torch.cat([codec.roundtrip(x_adv[i : i + 1]).x_hat for i in range(x.shape[0])])
    return float((((adv - clean) - (x_adv - x)) ** 2).mean())


def test_the_added_noise_objective_adds_more_noise_than_noise(trained, crops, noisy):
    budget = PSNR(35)
    x_adv = make_attack("paper", trained, budget=budget, steps=20, objective="added-noise")(crops)
    rows = verify_attack(trained, crops, x_adv, budget=budget)
    assert all(r["budget-ok"] for r in rows)
    assert _added_noise(trained, crops, x_adv) > 2 * _added_noise(trained, crops, noisy[0])
    assert mean(rows, "delta-psnr") > mean(noisy[1], "delta-psnr") + 5


def test_the_rate_distortion_objective_raises_bits_and_distortion(trained, crops, noisy):
    budget = PSNR(35)
    rows = verify_attack(trained, crops, make_attack("paper", trained, budget=budget, steps=20,
                                                     objective="rate-distortion")(crops), budget=budget)
    assert mean(rows, "bpp-est-adv") > mean(noisy[1], "bpp-est-adv") + 0.02
    assert mean(rows, "psnr-out-clean") < mean(noisy[1], "psnr-out-clean") - 4


# ----- what is particular to each method ------------------------------------------------------------------
@pytest.mark.parametrize("band", ["low", "high"])
def test_ssah_puts_the_perturbation_in_its_band(band, tiny, crops):
    x = crops[:2]
    delta = make_attack("ssah", tiny, budget=PSNR(35), steps=5, band=band)(x) - x
    noise = make_attack("noise", tiny, budget=PSNR(35))(x) - x
    edge = 0.187 / 1.5  # where the default low-pass (sigma 1.5) passes half
    low = band_fraction(delta, edge)
    assert band_fraction(noise, edge) < 0.1  # white noise: the disc below the edge holds ~5 % of it
    assert (low > 0.85) if band == "low" else (low < 0.05)


def test_korhonen_puts_more_perturbation_where_texture_masks_it(tiny, crops):
    x = crops
    mask = masking_weights(x)
    assert mask.shape == (3, 1, 64, 64) and float(mask.min()) >= 0.05 - 1e-6 and float(mask.max()) <= 1 + 1e-6
    size = (make_attack("korhonen", tiny, budget=PSNR(35), steps=5)(x) - x).abs().mean(1, keepdim=True)
    for i in range(3):
        m, d = mask[i].flatten(), size[i].flatten()
        low, high = m <= m.quantile(0.25), m >= m.quantile(0.75)
        assert float(d[high].mean()) > 4 * float(d[low].mean())
    flat = torch.full((1, 3, 16, 16), 0.5)
    assert torch.allclose(masking_weights(flat), torch.full((1, 1, 16, 16), 0.05))  # no texture: the floor


def test_cadv_is_a_smooth_colour_field_and_can_leave_the_luma_alone(tiny, crops):
    x = crops[:2]
    delta = make_attack("cadv", tiny, budget=PSNR(35), steps=5, cell=16)(x) - x
    assert band_fraction(delta, 0.1) > 0.9
    x_adv = make_attack("cadv", tiny, budget=PSNR(35), steps=5, chroma=True)(x)
    ycc = to_color_space(x_adv - x, "ycbcr", offset=False)
    luma, cbcr = ycc[:, :1].abs() * 255, ycc[:, 1:].abs() * 255
    unclipped = ((x_adv > 0) & (x_adv < 1)).all(1, keepdim=True)
    assert float(unclipped.float().mean()) > 0.8
    assert float(luma[unclipped].max()) <= 0.5 + 1e-4  # the luma moves by 8-bit rounding only
    assert float(cbcr.mean()) > 5 * float(luma.mean())


@pytest.mark.parametrize("size, kind", [(64, "ssim"), (176, "ms-ssim")])
def test_madc_holds_the_input_metric_where_it_started(size, kind, tiny):
    x = torch.cat(list(bundled_photos(["astronaut", "coffee"], crop=size).values()))
    atk = make_attack("madc", tiny, budget=PSNR(35), steps=4)
    x_adv = atk(x)
    assert PSNR(35).satisfied(x, x_adv)
    held = held_metric(x, x_adv)
    assert held.shape == (2,) and torch.allclose(held, held_metric(x, x_adv, kind))
    assert torch.allclose(held, atk.held_start, atol=0.003)  # on the 8-bit image
    assert float(held.max()) < 0.999  # the level held is the noise start's, not the source's
    with pytest.raises(RobustnicError, match="MS-SSIM needs"):
        make_attack("madc", tiny, budget=PSNR(35), steps=1, held="ms-ssim")(x[..., :64, :64])


# ----- the objectives, unit by unit ---------------------------------------------------------------------
def test_ycbcr_is_bt601_full_range():
    white, black = torch.ones(1, 3, 1, 1), torch.zeros(1, 3, 1, 1)
    assert torch.allclose(to_color_space(white, "ycbcr").flatten(), torch.tensor([1.0, 0.5, 0.5]), atol=1e-6)
    assert torch.allclose(to_color_space(black, "ycbcr").flatten(), torch.tensor([0.0, 0.5, 0.5]), atol=1e-6)
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert torch.allclose(to_color_space(red, "y").flatten(), torch.tensor([0.299]))
    assert torch.allclose(to_color_space(red, "ycbcr").flatten(), torch.tensor([0.299, 0.5 - 0.168736, 1.0]),
                          atol=1e-5)
    assert torch.equal(to_color_space(red, "rgb"), red)
    with pytest.raises(RobustnicError, match="colour space"):
        to_color_space(red, "lab")


@pytest.mark.parametrize("make", [lambda color: Distortion("clean", "mse", color),
                                  lambda color: AddedNoise("clean", color)], ids=["distortion", "added-noise"])
def test_the_luma_objectives_ignore_chroma_only_changes(make, crops):
    objective = make("y")
    x = crops[:2]
    ref = x * 0.6 + 0.2  # room for the changes below inside [0, 1] (objectives score the clamped output)
    x_hat = ref + 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    ctx = AttackContext(x=x, reference=ref)
    shift = chroma_change(x.shape, 0.05, -0.04)
    base = objective.gain(CodecOutput(x_hat), ctx, x_adv=x)
    assert torch.allclose(objective.gain(CodecOutput(x_hat + shift), ctx, x_adv=x), base, rtol=1e-4, atol=1e-9)
    rgb = make("rgb")  # the same change counts in RGB
    assert (rgb.gain(CodecOutput(x_hat + shift), ctx, x_adv=x) > rgb.gain(CodecOutput(x_hat), ctx, x_adv=x) + 1e-4).all()


def test_added_noise_is_the_noise_beyond_the_perturbation(crops):
    x = crops[:2] * 0.8 + 0.1  # the reconstructions below stay inside [0, 1]
    g = torch.Generator().manual_seed(1)
    x_adv = (x + 0.01 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ref, x_hat = x.roll(1, -1), x_adv.roll(1, -1) + 0.03
    ctx = AttackContext(x=x, reference=ref)
    gain = AddedNoise().gain(CodecOutput(x_hat), ctx, x_adv=x_adv)
    expected = (((x_hat - ref) - (x_adv - x)) ** 2).flatten(1).mean(1)
    assert torch.allclose(gain, expected)
    # a codec that passes the perturbation through unchanged adds no noise
    assert torch.allclose(AddedNoise().gain(CodecOutput(ref + (x_adv - x)), ctx, x_adv=x_adv), torch.zeros(2),
                          atol=1e-12)
    ycc = AddedNoise(color="ycbcr").gain(CodecOutput(x_hat), ctx, x_adv=x_adv)
    diff = to_color_space((x_hat - ref) - (x_adv - x), "ycbcr", offset=False)
    assert torch.allclose(ycc, (diff**2).flatten(1).mean(1))
    with pytest.raises(RobustnicError, match="x_adv"):
        AddedNoise().gain(CodecOutput(x_hat), ctx)


@pytest.mark.parametrize("objective", [Distortion("clean"), Distortion("source", "mse", "ycbcr"), AddedNoise("clean"),
                                       Targeted()], ids=["distortion", "source-ycbcr", "added-noise", "targeted"])
def test_objectives_score_what_the_decoder_delivers_not_values_past_the_range(objective, crops):
    """The decoder clamps to [0, 1]: a reconstruction pushed past the range scores as its clamp, and
    the push itself gets no gradient (an attack scoring the raw output spent its budget there)."""
    x = crops[:2]
    ctx = AttackContext(x=x, reference=x, target=x.flip(-1))
    x_hat = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))).requires_grad_(True)
    assert bool(((x_hat < 0) | (x_hat > 1)).any())
    gain = objective.gain(CodecOutput(x_hat), ctx, x_adv=x)
    assert torch.allclose(gain, objective.gain(CodecOutput(x_hat.detach().clamp(0, 1)), ctx, x_adv=x))
    (grad,) = torch.autograd.grad(gain.sum(), x_hat)
    outside = (x_hat < 0) | (x_hat > 1)
    assert bool((grad[outside] == 0).all()) and bool(grad[~outside].abs().sum() > 0)


def test_rate_distortion_weighs_bits_against_distortion(crops):
    x = crops[:2]
    ref, x_hat = x, (x + 0.05).clamp(0, 1)
    lk = {"y": torch.full((2, 4, 8, 8), 0.25), "z": torch.full((2, 2, 2, 2), 0.5)}
    ctx = AttackContext(x=x, reference=ref)
    out = CodecOutput(x_hat, lk)
    bpp = estimated_bpp(lk, 64 * 64)
    mse = ((x_hat - ref) ** 2).flatten(1).mean(1)
    assert torch.allclose(RateDistortion().gain(out, ctx), bpp + 0.0018 * 255**2 * mse)
    assert torch.allclose(RateDistortion(rd_weight=0).gain(out, ctx), bpp)
    assert torch.allclose(RateDistortion(rd_weight=0.1).gain(out, ctx), bpp + 0.1 * 255**2 * mse)
    assert RateDistortion(metric="ms-ssim").rd_weight == 2.40
    with pytest.raises(RobustnicError):
        RateDistortion(rd_weight=-1)


def test_settings_and_attacks_take_the_colour_space(tiny):
    s = AttackSettings("paper", "psnr:35", objective="added-noise", color="y", rd_weight=0.5)
    atk = s.make(tiny)
    assert isinstance(atk.objective, AddedNoise) and atk.objective.color == "y"
    assert s.as_dict()["color"] == "y"
    rd = s.replace(objective="rate-distortion").make(tiny).objective
    assert isinstance(rd, RateDistortion) and rd.rd_weight == 0.5 and rd.distortion.color == "y"
    with pytest.raises(RobustnicError, match="color"):
        AttackSettings(color="lab")
    with pytest.raises(RobustnicError, match="colour space"):
        make_attack("pgd", tiny, color="lab")


def test_cli_attack_takes_the_new_methods_objective_and_colour(tmp_path):
    from robustnic.cli.main import main

    folder = tmp_path / "images"
    folder.mkdir()
    save_image(bundled_photos(["coffee"], crop=(45, 71))["coffee"], folder / "coffee.png")
    out = tmp_path / "out"
    rc = main(["attack", "-m", "bmshj2018-hyperprior:N=8:M=16:random", "--images", str(folder), "--method", "ssah",
               "--method", "madc", "--objective", "added-noise", "--color", "y", "--budget", "psnr:35",
               "--steps", "2", "--no-progress", "--out", str(out)])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["color"] == "y" and summary["settings"]["objective"] == "added-noise"
    rows = json.loads((out / "per_image.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"ssah", "madc"}
    for r in rows:
        assert PSNR(35).satisfied(load_image(out / r["source-png"]), load_image(out / r["adversarial-png"]))
