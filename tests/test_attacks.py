"""The attack engine: every method, budget, objective and stand-in, verified on real bitstreams.

Two codecs: CompressAI's tiny random hyperprior (the real interface, odd shapes, batches) and
``BlockCodec``, a toy transform codec written here against the bare ``Codec`` interface (4x4
block means, uniform quantisation, a Gaussian entropy coder from CompressAI): tiny random
learned models reconstruct almost the same image whatever the input, so the behaviour tests
(damage beyond noise, rate, targeted) use the toy codec, whose response is known, fast and
deterministic - and which shows that attacks need nothing but ``forward``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from compressai.entropy_models import GaussianConditional

from robustnic.attacks import (
    ATTACKS, L2, PSNR, Linf, NoiseAttack, PaperAttack, PaperReferenceAttack, make_attack, verify_attack,
)
from robustnic.codecs.base import Codec, CodecOutput
from robustnic.data import bundled_photos, load_image, save_image
from robustnic.data.images import crop_to, pad_to_multiple
from robustnic.errors import BudgetError, ImageError, RobustnicError
from robustnic.metrics import ms_ssim, psnr
from tests.conftest import tiny_codec


class BlockCodec(Codec):
    """Toy codec: y = levels·(4x4 block mean - 1/2), rounded, coded with a fixed Gaussian (scale 3)."""

    name = "block-toy"
    differentiable = True

    def __init__(self, levels: float = 16.0, scale: float = 3.0):
        self.levels, self.scale = levels, scale
        self.gc = GaussianConditional([scale])
        self.gc.update()
        self.forward_calls = 0

    def _analysis(self, x):
        xp, _ = pad_to_multiple(x, 4)
        return (F.avg_pool2d(xp, 4) - 0.5) * self.levels

    def _synthesis(self, y, size):
        return crop_to(F.interpolate(y / self.levels + 0.5, scale_factor=4, mode="nearest"), size)

    def forward(self, x, standin="none", rate=False):
        self.forward_calls += 1
        y = self._analysis(x)
        rounded = y + (y.round() - y).detach()
        y_hat = {"none": y, "noise": y + torch.rand_like(y) - 0.5, "ste": rounded}[standin]
        likelihoods = None
        if rate:
            q = rounded if standin == "none" else y_hat
            lk = self.gc._likelihood(q, torch.full_like(q, self.scale))
            likelihoods = {"y": self.gc.likelihood_lower_bound(lk)}
        return CodecOutput(self._synthesis(y_hat, tuple(x.shape[-2:])), likelihoods)

    def _encode(self, x):
        y = self._analysis(x).round()
        strings = self.gc.compress(y, torch.zeros_like(y, dtype=torch.int32))
        return [strings[0]], tuple(y.shape[-2:])

    def _decode(self, strings, shape, size):
        idx = torch.zeros((1, 3, *shape), dtype=torch.int32)
        return self._synthesis(self.gc.decompress([strings[0]], idx), size)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy():
    return BlockCodec()


@pytest.fixture(scope="module")
def pair():
    """Two photos of one odd size (45x71: not a multiple of 64), as a batch."""
    return torch.cat(list(bundled_photos(["coffee", "chelsea"], crop=(45, 71)).values()))


@pytest.fixture(scope="module")
def crops():
    """Three 64x64 photo crops as a batch, and three others as targets."""
    photos = bundled_photos(["astronaut", "coffee", "chelsea", "china", "flower", "grace_hopper"], crop=64)
    x = torch.cat(list(photos.values()))
    return x[:3], x[3:]


def mean(rows, key):
    return sum(r[key] for r in rows) / len(rows)


# ----- every method: shapes, batches, 8-bit output, the budget on the saved image -----------------
@pytest.mark.parametrize("method", list(ATTACKS))
@pytest.mark.parametrize("budget", [PSNR(35), Linf(4), L2(0.8)], ids=str)
def test_every_method_returns_8bit_images_inside_the_budget_after_png(method, budget, pair, tmp_path):
    codec = tiny_codec()
    atk = make_attack(method, codec, budget=budget, steps=2, seed=0)
    x_adv = atk(pair)
    assert x_adv.shape == pair.shape and x_adv.dtype == torch.float32
    assert torch.equal(x_adv, (x_adv * 255).round() / 255)
    assert budget.satisfied(pair, x_adv)
    for i in range(2):
        save_image(x_adv[i : i + 1], tmp_path / f"{i}.png")
        assert budget.satisfied(pair[i : i + 1], load_image(tmp_path / f"{i}.png"))
    assert atk.elapsed > 0


@pytest.mark.parametrize("method, standin", [("paper", "none"), ("pgd", "noise"), ("cw", "none"), ("noise", "none"),
                                             ("paper", "noise")])
def test_attacks_are_bit_identical_under_a_seed(method, standin, toy, crops):
    x, _ = crops
    a = make_attack(method, toy, budget=PSNR(35), steps=5, seed=7, standin=standin)(x)
    torch.rand(3)  # the caller's random state does not matter
    b = make_attack(method, toy, budget=PSNR(35), steps=5, seed=7, standin=standin)(x)
    assert torch.equal(a, b)


@pytest.mark.parametrize("method", ["pgd", "noise"])
def test_random_methods_depend_on_the_seed(method, toy, crops):
    x, _ = crops
    a = make_attack(method, toy, budget=PSNR(35), steps=3, seed=0)(x)
    b = make_attack(method, toy, budget=PSNR(35), steps=3, seed=1)(x)
    assert not torch.equal(a, b)


def test_a_single_chw_image_is_attacked_as_a_batch_of_one(toy, photo):
    x_adv = PaperAttack(toy, budget=PSNR(38), steps=3, seed=0)(photo[0])
    batched = PaperAttack(toy, budget=PSNR(38), steps=3, seed=0)(photo)
    assert x_adv.shape == photo.shape
    assert torch.equal(x_adv, batched) and not torch.equal(x_adv, photo)


# ----- what the attacks achieve, measured on real bitstreams ---------------------------------------
@pytest.mark.parametrize("method", ["paper", "paper-reference", "pgd", "ifgsm", "mifgsm", "cw", "fgsm"])
def test_distortion_attacks_beat_noise_of_the_same_budget(method, toy, crops):
    x, _ = crops
    budget = PSNR(35)
    steps = {"paper-reference": 60}.get(method, 20)
    attacked = verify_attack(toy, x, make_attack(method, toy, budget=budget, steps=steps)(x), budget=budget)
    noisy = verify_attack(toy, x, NoiseAttack(toy, budget=budget)(x), budget=budget)
    assert all(r["budget-ok"] for r in attacked + noisy)
    # the attack moves the real reconstruction further from the clean one than noise does
    assert mean(attacked, "psnr-out-clean") < mean(noisy, "psnr-out-clean") - 3
    assert mean(attacked, "delta-psnr") > mean(noisy, "delta-psnr") + 3


def test_a_larger_budget_does_more_damage(toy, crops):
    x, _ = crops
    adv = PaperAttack(toy, steps=20).sweep([PSNR(30), PSNR(35), PSNR(40)], x)
    assert list(adv) == ["psnr:30", "psnr:35", "psnr:40"]
    out = {k: mean(verify_attack(toy, x, v, budget=k), "psnr-out") for k, v in adv.items()}
    assert out["psnr:30"] < out["psnr:35"] < out["psnr:40"]
    for k, v in adv.items():
        assert PSNR(float(k.split(":")[1])).satisfied(x, v)


def test_rate_objective_raises_the_real_bitrate(toy, crops):
    x, _ = crops
    budget = PSNR(35)
    attacked = verify_attack(toy, x, PaperAttack(toy, budget=budget, objective="rate", steps=20)(x))
    noisy = verify_attack(toy, x, NoiseAttack(toy, budget=budget)(x))
    assert all(r["bpp-adv"] > r["bpp-clean"] for r in attacked)
    assert mean(attacked, "bpp-increase") > mean(noisy, "bpp-increase") + 0.01
    assert all(r["bpp-est-adv"] > r["bpp-est-clean"] for r in attacked)


def test_targeted_objective_moves_the_reconstruction_toward_the_target(toy, crops):
    x, target = crops
    x_adv = PaperAttack(toy, budget=PSNR(30), objective="targeted", steps=20)(x, target=target)
    for i in range(3):
        before = psnr(target[i : i + 1], toy.roundtrip(x[i : i + 1]).x_hat)
        after = psnr(target[i : i + 1], toy.roundtrip(x_adv[i : i + 1]).x_hat)
        assert after > before + 0.3


def test_targeted_objective_with_a_mask_leaves_the_rest_alone(toy, crops):
    x, target = crops
    mask = torch.zeros(64, 64)
    mask[16:48, 16:48] = 1
    atk = PaperAttack(toy, budget=PSNR(30), objective="targeted", steps=20)
    x_masked, x_full = atk(x, target=target, mask=mask), atk(x, target=target)
    inside, outside = mask.bool(), ~mask.bool()
    for i in range(3):
        clean = toy.roundtrip(x[i : i + 1]).x_hat
        masked, full = toy.roundtrip(x_masked[i : i + 1]).x_hat, toy.roundtrip(x_full[i : i + 1]).x_hat
        err = lambda a, b, m: float(((a - b) ** 2)[..., m].mean())  # noqa: E731
        # outside the region the masked attack changes the reconstruction less than the full one,
        assert err(masked, clean, outside) < err(full, clean, outside)
        # and inside it still gets closer to the target than the clean reconstruction is
        assert err(masked, target[i : i + 1], inside) < err(clean, target[i : i + 1], inside)


def test_distortion_from_the_source_and_ms_ssim_variants_run(toy):
    x = bundled_photos(["astronaut"], crop=176)["astronaut"]
    for kwargs in ({"reference": "source"}, {"metric": "ms-ssim"}):
        x_adv = PaperAttack(toy, budget=PSNR(35), steps=3, **kwargs)(x)
        assert PSNR(35).satisfied(x, x_adv)


@pytest.mark.parametrize("standin", ["none", "noise", "ste"])
def test_every_standin_runs_and_is_reported(standin, toy, crops):
    x, _ = crops
    x_adv = make_attack("pgd", toy, budget=PSNR(35), standin=standin, steps=5)(x)
    rows = verify_attack(toy, x, x_adv, standin=standin)
    assert all(r["standin"] == standin for r in rows)
    if standin == "ste":  # rounding in the forward is what the decoder does: no gap
        assert all(r["standin-gap"] == float("inf") for r in rows)
    else:
        assert all(r["standin-gap"] < float("inf") for r in rows)


def test_attacks_only_call_forward(crops):
    """A codec with nothing but the Codec interface; the attack never asks what it is."""
    x, _ = crops
    codec = BlockCodec()
    x_adv = PaperAttack(codec, budget=PSNR(35), steps=7, check_every=3)(x)
    assert codec.forward_calls >= 7 and PSNR(35).satisfied(x, x_adv)


# ----- verification ---------------------------------------------------------------------------------
def test_verify_attack_reports_real_bitstream_numbers(toy, crops):
    x, _ = crops
    budget = PSNR(35)
    atk = PaperAttack(toy, budget=budget, steps=5)
    x_adv = atk(x)
    rows = verify_attack(toy, x, x_adv, budget=budget, attack_time=atk.elapsed)
    assert len(rows) == 3
    for i, r in enumerate(rows):
        clean, adv = toy.roundtrip(x[i : i + 1]), toy.roundtrip(x_adv[i : i + 1])
        assert r["psnr-in"] == pytest.approx(psnr(x[i : i + 1], x_adv[i : i + 1])) and r["psnr-in"] >= 35
        assert r["psnr-clean"] == pytest.approx(psnr(x[i : i + 1], clean.x_hat))
        assert r["psnr-out"] == pytest.approx(psnr(x[i : i + 1], adv.x_hat))
        assert r["psnr-drop"] == pytest.approx(r["psnr-clean"] - r["psnr-out"])
        assert r["bpp-clean"] == clean.bpp and r["bpp-adv"] == adv.bpp
        assert r["bpp-increase"] == pytest.approx(adv.bpp - clean.bpp)
        assert r["budget-ok"] is True and r["attack-time"] == pytest.approx(atk.elapsed / 3)
        # 64 px: three MS-SSIM scales, recorded beside the value
        assert r["ms-ssim-scales"] == 3
        assert r["ms-ssim-out"] == pytest.approx(ms_ssim(x[i : i + 1], adv.x_hat))
        assert 0 < r["ms-ssim-out"] < r["ms-ssim-clean"] <= 1


def test_verify_attack_rejects_mismatched_shapes(toy, crops):
    x, _ = crops
    with pytest.raises(ImageError):
        verify_attack(toy, x, x[:2])


# ----- the two paper attacks -----------------------------------------------------------------------
def test_paper_reference_follows_the_scripts_schedule(toy):
    atk = PaperReferenceAttack(toy)
    assert atk.steps == 1001 and atk.budget == PSNR(40) and atk.budget.linf_cap is None  # no hidden cap
    lrs = [atk.lr_at(i) for i in (0, 1, 333, 334, 666, 667, 1000)]
    assert lrs == pytest.approx([0.01, 0.0033, 0.0033, 0.01 * 0.33**2, 0.01 * 0.33**2, 0.01 * 0.33**3,
                                 0.01 * 0.33**3])


@pytest.mark.parametrize("method", ["paper", "paper-reference", "pgd", "fgsm", "cw"])
def test_a_budgets_linf_cap_holds_on_the_saved_image_for_every_method(method, toy, crops, tmp_path):
    x, _ = crops
    capped = make_attack(method, toy, budget="psnr:25,linf:3", steps=10, seed=0)(x)
    save_image(capped[:1], tmp_path / "adv.png")
    saved = load_image(tmp_path / "adv.png")
    assert float((saved - x[:1]).abs().max()) * 255 <= 3 + 1e-4  # the cap, on the reloaded 8-bit PNG
    assert float((capped - x).abs().max()) * 255 <= 3 + 1e-4
    assert PSNR(25, linf_cap=3).satisfied(x, capped)
    if method in ("paper", "pgd"):  # without the cap the same attack moves values further: no hidden cap
        free = make_attack(method, toy, budget="psnr:25", steps=10, seed=0)(x)
        assert float((free - x).abs().max()) * 255 > 3


def test_restarts_keep_the_best_per_image(toy, crops):
    x, _ = crops
    one = verify_attack(toy, x, PaperAttack(toy, budget=PSNR(35), steps=10)(x))
    three = verify_attack(toy, x, PaperAttack(toy, budget=PSNR(35), steps=10, restarts=3)(x))
    # the first run of both is identical; the best of three is at least as damaging per image
    assert all(b["psnr-out-clean"] <= a["psnr-out-clean"] + 1e-9 for a, b in zip(one, three))


# ----- bad input --------------------------------------------------------------------------------------
def test_impossible_budget_is_a_budget_error(toy, photo):
    with pytest.raises(BudgetError, match="psnr:200"):
        PaperAttack(toy, budget="psnr:200", steps=2)(photo)


def test_target_of_another_size_is_an_image_error(toy, crops):
    x, _ = crops
    atk = PaperAttack(toy, objective="targeted", steps=2)
    with pytest.raises(ImageError, match="target"):
        atk(x, target=torch.rand(1, 3, 32, 64))
    with pytest.raises(ImageError, match="needs a target"):
        atk(x)
    with pytest.raises(ImageError, match="mask"):
        atk(x, target=x, mask=torch.ones(32, 32))
    with pytest.raises(ImageError, match="empty"):
        atk(x, target=x, mask=torch.zeros(64, 64))
    with pytest.raises(ImageError, match="no target"):
        PaperAttack(toy, steps=2)(x, target=x)


@pytest.mark.parametrize("bad", [torch.rand(2, 64, 64), torch.full((1, 3, 8, 8), 2.0), torch.zeros(1, 3, 8, 8).long()])
def test_bad_images_are_image_errors(toy, bad):
    with pytest.raises(ImageError):
        PaperAttack(toy, steps=2)(bad)


def test_bad_settings_are_refused(toy):
    with pytest.raises(RobustnicError, match="unknown attack"):
        make_attack("nope", toy)
    with pytest.raises(RobustnicError, match="stand-in"):
        make_attack("pgd", toy, standin="soft")
    with pytest.raises(RobustnicError, match="objective"):
        make_attack("pgd", toy, objective="fun")
    with pytest.raises(BudgetError):
        make_attack("pgd", toy, budget="psnr:x")
    with pytest.raises(RobustnicError, match="steps"):
        make_attack("pgd", toy, steps=0)
    with pytest.raises(RobustnicError, match="Codec"):
        make_attack("pgd", torch.nn.Identity())


def test_rate_objective_needs_likelihoods(photo):
    from robustnic.codecs import load_codec

    with pytest.raises(RobustnicError, match="likelihoods"):
        PaperAttack(load_codec("jpeg:q75"), objective="rate", steps=1)(photo)


# ----- a trained model (the shipped one; its in-training checkpoint until it ships) -------------------
@pytest.fixture(scope="module")
def trained():
    from pathlib import Path

    from robustnic.codecs import load_codec, read_manifest

    shipped = sorted(spec for spec in read_manifest() if spec.startswith("hyperprior-small"))
    if shipped:
        return load_codec(shipped[0])
    checkpoint = Path(__file__).resolve().parent.parent / "runs/zoo/hyperprior-small-q3/last.pth.tar"
    if checkpoint.is_file():
        return load_codec(str(checkpoint))
    pytest.skip("no trained hyperprior-small model is shipped (src/robustnic/weights) or being trained")


def test_on_a_trained_model_attacks_beat_noise_and_raise_the_rate(trained, crops):
    x, _ = crops
    budget = PSNR(35)
    noisy = verify_attack(trained, x, NoiseAttack(trained, budget=budget)(x))
    attacked = verify_attack(trained, x, PaperAttack(trained, budget=budget, steps=20)(x))
    assert mean(attacked, "delta-psnr") > mean(noisy, "delta-psnr") + 3
    assert all(a["psnr-out"] < n["psnr-out"] for a, n in zip(attacked, noisy))
    rate = verify_attack(trained, x, PaperAttack(trained, budget=budget, objective="rate", steps=20)(x))
    assert all(r["bpp-adv"] > r["bpp-clean"] for r in rate)
    assert mean(rate, "bpp-increase") > mean(noisy, "bpp-increase") + 0.03 * mean(rate, "bpp-clean")


def test_paper_attack_leaves_a_flat_start(crops):
    """Through JPEG (real rounding, straight-through gradient) the gradient at the clean image is
    zero; the default attack starts from a random point instead of returning the image unchanged."""
    from robustnic.codecs import load_codec

    x, _ = crops
    jpeg = load_codec("jpeg:q50")
    x_adv = PaperAttack(jpeg, budget=PSNR(35), steps=5)(x)
    rows = verify_attack(jpeg, x, x_adv)
    assert all(35 <= r["psnr-in"] < 45 for r in rows)
    assert all(r["psnr-out"] < r["psnr-clean"] for r in rows)


@pytest.mark.parametrize("budget, target_db", [(PSNR(30), 30.0), (PSNR(35), 35.0), (Linf(4), None)], ids=str)
def test_shift_is_a_uniform_brightness_change_that_fills_the_budget(budget, target_db, toy, crops):
    x, _ = crops
    x_adv = make_attack("shift", toy, budget=budget)(x)
    assert budget.satisfied(x, x_adv)
    levels = ((x_adv - x) * 255).round()
    inside = (x > 0.1) & (x < 0.9)  # away from clipping
    for i in range(x.shape[0]):
        d = levels[i][inside[i]]
        assert (d > 0).all() or (d < 0).all()  # one direction per image
        assert d.abs().max() - d.abs().min() <= 1  # k or k+1 levels everywhere
        if target_db is None:
            assert (d.abs() == 4).all()
        else:  # within a row's worth of the budget
            assert target_db <= psnr(x[i : i + 1], x_adv[i : i + 1]) < target_db + 0.05


# ----- the one attack path: settings, adaptive = worst over the defense's attack modes ---------------
def test_attack_and_verify_crafts_on_the_undefended_model_unless_adaptive(crops):
    from robustnic.attacks import AttackSettings, attack_and_verify
    from robustnic.defenses import make_defense

    x = crops[0][:2]
    codec = tiny_codec(seed=1)
    defended = make_defense(codec, "bits:5")
    settings = AttackSettings("pgd", "psnr:32", steps=3, seed=0)
    plain = attack_and_verify(codec, x, settings)
    assert set(plain.by_mode) == {"plain"} and "attack-mode" not in plain.rows[0]
    assert torch.equal(plain.x_adv, settings.make(codec)(x).cpu())  # exactly the attack object's result
    blind = attack_and_verify(defended, x, settings)
    assert set(blind.by_mode) == {"undefended"} and torch.equal(blind.x_adv, plain.x_adv)
    assert blind.rows[0]["bpp-adv"] == pytest.approx(defended.roundtrip(blind.x_adv[:1]).bpp)  # defended bytes
    adaptive = attack_and_verify(defended, x, settings, adaptive=True)
    assert set(adaptive.by_mode) == set(defended.attack_modes)
    for i, row in enumerate(adaptive.rows):
        outs = {m: rows[i]["psnr-out"] for m, rows in adaptive.by_mode.items()}
        assert row["psnr-out"] == min(outs.values()) and outs[row["attack-mode"]] == row["psnr-out"]


def test_adaptive_worst_follows_the_objective(crops):
    from robustnic.attacks import AttackSettings, attack_and_verify
    from robustnic.defenses import make_defense

    defended = make_defense(tiny_codec(seed=2), "blur:0.8")
    out = attack_and_verify(defended, crops[0][:2], AttackSettings("pgd", "psnr:30", steps=2, objective="rate"),
                            adaptive=True)
    for i, row in enumerate(out.rows):  # the rate attack that raised the real bitrate most is kept
        assert row["bpp-adv"] == max(rows[i]["bpp-adv"] for rows in out.by_mode.values())


def test_attack_settings_check_their_fields():
    from robustnic.attacks import AttackSettings

    s = AttackSettings("paper", "psnr:35,linf:16", restarts=2)
    assert s.budget == PSNR(35, linf_cap=16) and s.as_dict()["budget"] == "psnr:35,linf:16"
    assert s.replace(method="pgd").method == "pgd" and s.replace(method="pgd").budget == s.budget
    for bad in ({"method": "nope"}, {"metric": "ssim"}, {"reference": "x"}, {"standin": "round"},
                {"restarts": 0}, {"steps": 0}):
        with pytest.raises(RobustnicError):
            AttackSettings(**bad)
    with pytest.raises(ImageError, match="target"):
        AttackSettings(objective="targeted")
