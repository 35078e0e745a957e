"""The wavelet attack (T-MLA family) and the agnostic-ratio attack (one perturbation against several models).

Budget, round-trip and determinism checks run on the tiny random models; damage and the targeted
mode are measured on shipped trained models (a tiny random model reconstructs almost the same
image whatever the input), from real bitstreams.
"""

from __future__ import annotations

import json

import pytest
import torch

from robustnic.attacks import (
    L2, PSNR, AgnosticAttack, CodecFamily, Linf, MeanObjective, WaveletAttack, WaveletTransform, evaluate_on_models,
    make_attack, verify_attack,
)
from robustnic.cli.main import main
from robustnic.data import bundled_photos, load_image, save_image
from robustnic.data.images import quantize_8bit
from robustnic.errors import RobustnicError
from tests.conftest import tiny_codec

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def crops():
    """Three 64x64 photo crops as a batch."""
    return torch.cat(list(bundled_photos(["astronaut", "coffee", "chelsea"], crop=64).values()))


@pytest.fixture(scope="module")
def odd():
    """Two photos of an odd size (45x71), as a batch."""
    return torch.cat(list(bundled_photos(["china", "flower"], crop=(45, 71)).values()))


@pytest.fixture(scope="module")
def tiny():
    return tiny_codec(seed=5)


def shipped(*specs: str):
    """The shipped models ``specs`` (the test is skipped when one is not shipped)."""
    from robustnic.codecs import load_codec, read_manifest

    missing = [s for s in specs if s not in read_manifest()]
    if missing:
        pytest.skip(f"model(s) {missing} not shipped (src/robustnic/weights)")
    return [load_codec(s) for s in specs]


@pytest.fixture(scope="module")
def trained():
    return shipped("hyperprior-small:q3")[0]


def mean(rows, key):
    return sum(r[key] for r in rows) / len(rows)


# ----- the transform and the map --------------------------------------------------------------------
@pytest.mark.parametrize("wavelet, levels", [("haar", 3), ("haar", 1), ("db2", 2)])
def test_the_wavelet_round_trip_is_exact(wavelet, levels, odd):
    t = WaveletTransform(wavelet, levels)
    bands = t.decompose(odd)
    assert len(bands) == 1 + 3 * t.levels_for((45, 71))
    back = t.reconstruct(bands, (45, 71))
    assert back.shape == odd.shape
    assert (back - odd).abs().max() < 1e-5
    assert torch.equal(quantize_8bit(back), odd)


def test_levels_are_lowered_to_what_the_size_allows():
    t = WaveletTransform("haar", 9)
    x = torch.rand(1, 3, 16, 16)
    assert t.levels_for((16, 16)) == 4
    assert (t.reconstruct(t.decompose(x), (16, 16)) - x).abs().max() < 1e-5


@pytest.mark.parametrize("parametrisation", ["logexp", "masking"])
def test_no_perturbation_gives_the_image_back(parametrisation, tiny, odd):
    atk = WaveletAttack(tiny, budget=PSNR(35), parametrisation=parametrisation)
    bands = atk.transform.decompose(odd)
    zeros = [torch.zeros_like(b) for b in bands]
    for before, after in zip(bands, atk.perturbed_bands(bands, zeros)):
        assert (after - before).abs().max() < 1e-5
    assert torch.equal(quantize_8bit(atk.image(odd, bands, zeros)), odd)


def test_logexp_map_moves_small_coefficients_more_and_does_not_overflow(tiny):
    atk = WaveletAttack(tiny, parametrisation="logexp")
    c = torch.tensor([0.0, 0.05, -0.05, 1.0, -4.0, 200.0]).view(1, 1, 1, -1)
    theta = torch.full_like(c, 0.1)
    (moved,) = atk.perturbed_bands([c], [theta])
    change = (moved - c).abs().flatten()
    assert torch.isfinite(moved).all()
    assert change[0] > change[3] > change[4] > change[5]  # T-MLA's map: the smaller |c|, the larger the change
    assert torch.allclose(change[0], torch.log(torch.tensor(1.1)), atol=1e-6)  # |c'| = log(e^0 + 0.1)
    assert torch.equal(torch.sign(moved[..., 1:5]), torch.sign(c[..., 1:5]))


def test_masking_map_moves_large_coefficients_more(tiny):
    atk = WaveletAttack(tiny, parametrisation="masking", floor=0.25)
    c = torch.tensor([0.0, 0.1, -1.0, 3.0]).view(1, 1, 1, -1)
    (moved,) = atk.perturbed_bands([c], [torch.full_like(c, 0.1)])
    change = (moved - c).abs().flatten()
    assert change[0] > 0  # the floor lets a zero coefficient move
    assert change[0] < change[1] < change[2] < change[3]


def test_bad_arguments_are_clear_errors(tiny):
    with pytest.raises(RobustnicError, match="parametrisation"):
        WaveletAttack(tiny, parametrisation="sparse")
    with pytest.raises(RobustnicError, match="wavelet"):
        WaveletAttack(tiny, wavelet="nope")
    with pytest.raises(RobustnicError, match="levels"):
        WaveletAttack(tiny, levels=0)
    with pytest.raises(RobustnicError, match="target_psnr"):
        WaveletAttack(tiny, target_psnr=float("nan"))


# ----- the budget and determinism -----------------------------------------------------------------------
@pytest.mark.parametrize("parametrisation", ["logexp", "masking"])
@pytest.mark.parametrize("budget", [PSNR(35), Linf(3), L2(0.6), PSNR(33, linf_cap=4)], ids=str)
def test_the_budget_holds_on_the_saved_png(parametrisation, budget, tiny, odd, tmp_path):
    x_adv = WaveletAttack(tiny, budget=budget, steps=4, parametrisation=parametrisation)(odd)
    assert torch.equal(x_adv, (x_adv * 255).round() / 255) and not torch.equal(x_adv, odd)
    rows = verify_attack(tiny, odd, x_adv, budget=budget)
    assert all(r["budget-ok"] for r in rows)
    for i in range(2):
        save_image(x_adv[i : i + 1], tmp_path / f"{i}.png")
        assert budget.satisfied(odd[i : i + 1], load_image(tmp_path / f"{i}.png"))


def test_the_whole_budget_is_used(tiny, crops):
    budget = PSNR(35)
    x_adv = WaveletAttack(tiny, budget=budget, steps=3)(crops)
    assert (budget.measure(crops, x_adv) < 35.2).all()  # on the sphere, not somewhere inside the ball


def test_bit_identical_under_a_seed(tiny, crops):
    runs = []
    for k in range(2):
        torch.manual_seed(100 + k)  # the caller's random state does not matter
        runs.append(make_attack("wavelet", tiny, budget=PSNR(35), steps=3, restarts=2, seed=4)(crops[:2]))
    assert torch.equal(runs[0], runs[1])


# ----- damage on a trained model, from real bitstreams ----------------------------------------------
@pytest.fixture(scope="module")
def noisy(trained, crops):
    budget = PSNR(35)
    return verify_attack(trained, crops, make_attack("noise", trained, budget=budget, seed=0)(crops), budget=budget)


@pytest.mark.parametrize("parametrisation", ["logexp", "masking"])
def test_wavelet_beats_noise_of_the_same_budget(parametrisation, trained, crops, noisy):
    budget = PSNR(35)
    x_adv = WaveletAttack(trained, budget=budget, steps=20, parametrisation=parametrisation)(crops)
    attacked = verify_attack(trained, crops, x_adv, budget=budget)
    assert all(r["budget-ok"] for r in attacked)
    assert mean(attacked, "psnr-out-clean") < mean(noisy, "psnr-out-clean") - 5
    assert mean(attacked, "delta-psnr") > mean(noisy, "delta-psnr") + 5
    assert mean(attacked, "psnr-drop") > mean(noisy, "psnr-drop") + 0.1


def test_targeted_mode_stops_near_its_target_with_a_cleaner_input(trained, crops):
    x = crops[:1]
    budget = PSNR(28)
    clean = verify_attack(trained, x, x)[0]["psnr-clean"]
    target = clean - 1.0
    hit = verify_attack(trained, x, WaveletAttack(trained, budget=budget, steps=40, target_psnr=target)(x),
                        budget=budget)[0]
    full = verify_attack(trained, x, WaveletAttack(trained, budget=budget, steps=40)(x), budget=budget)[0]
    assert hit["budget-ok"]
    assert full["psnr-out"] < target - 0.3  # pushing on would have gone well past the target,
    assert target - 0.4 < hit["psnr-out"] < target + 0.1  # the targeted run stopped at it,
    assert hit["psnr-in"] > full["psnr-in"] + 0.5  # with a smaller perturbation


# ----- the agnostic-ratio attack --------------------------------------------------------------------
def test_a_family_forwards_every_member_and_codes_with_the_primary(crops):
    a, b = tiny_codec(seed=1), tiny_codec(seed=2)
    family = CodecFamily([a, b])
    out = family.forward(crops[:1], standin="ste", rate=True)
    assert torch.equal(out.x_hat, a.forward(crops[:1], standin="ste").x_hat)
    assert torch.equal(out.members[1].x_hat, b.forward(crops[:1], standin="ste").x_hat)
    assert family.compress(crops[:1]) == a.compress(crops[:1])
    assert family.fingerprint == f"{a.fingerprint}+{b.fingerprint}"
    with pytest.raises(RobustnicError, match="family"):
        CodecFamily([family, a])


def test_an_attack_on_a_family_maximises_the_mean_objective(crops):
    a, b = tiny_codec(seed=1), tiny_codec(seed=2)
    atk = make_attack("pgd", CodecFamily([a, b]), budget=PSNR(35), steps=2)
    assert isinstance(atk.objective, MeanObjective)
    x = crops[:2]
    ctx = atk.objective.prepare(atk.codec, x)
    x_adv = atk(x)
    out = atk.codec.forward(x_adv)
    each = [atk.objective.inner.gain(o, c, x_adv) for o, c in zip(out.members, ctx.members)]
    assert torch.allclose(atk.objective.gain(out, ctx, x_adv), (each[0] + each[1]) / 2)


def test_log_mean_combines_the_logarithms_and_refuses_the_targeted_objective(crops):
    a, b = tiny_codec(seed=1), tiny_codec(seed=2)
    atk = AgnosticAttack([a, b], method="pgd", combine="log-mean", budget=PSNR(35), steps=1, objective="rate")
    x = crops[:2]
    ctx = atk.attack.objective.prepare(atk.family, x)
    out = atk.family.forward(x, rate=True)
    each = [atk.attack.objective.inner.gain(o, c, x) for o, c in zip(out.members, ctx.members)]
    assert torch.allclose(atk.attack.objective.gain(out, ctx, x), (each[0].log() + each[1].log()) / 2)
    with pytest.raises(RobustnicError, match="targeted"):
        AgnosticAttack([a, b], combine="log-mean", objective="targeted")
    with pytest.raises(RobustnicError, match="combination"):
        CodecFamily([a, b], combine="max")


def test_the_agnostic_perturbation_damages_every_model_it_was_crafted_on_more_than_noise(crops):
    q2, q4, q3 = shipped("hyperprior-long:q2", "hyperprior-long:q4", "hyperprior-long:q3")
    budget = PSNR(35)
    x = crops[:2]
    x_adv = AgnosticAttack([q2, q4], method="paper", budget=budget, steps=12)(x)
    noise = make_attack("noise", q2, budget=budget, seed=0)(x)
    models = {"q2": q2, "q3": q3, "q4": q4}
    attacked = evaluate_on_models(models, x, x_adv, budget=budget, crafted_on=["q2", "q4"])
    noisy = evaluate_on_models(models, x, noise, budget=budget, crafted_on=["q2", "q4"])
    assert all(r["budget-ok"] for r in attacked)
    assert {r["model"] for r in attacked if r["seen"]} == {"q2", "q4"}
    for name in models:  # the held-out q3 too
        adv = [r for r in attacked if r["model"] == name]
        ref = [r for r in noisy if r["model"] == name]
        assert mean(adv, "psnr-out-clean") < mean(ref, "psnr-out-clean") - 5
        assert mean(adv, "psnr-drop") > mean(ref, "psnr-drop") + 0.1


def test_the_wavelet_method_runs_on_a_family(crops):
    a, b = tiny_codec(seed=1), tiny_codec(seed=2)
    x_adv = AgnosticAttack([a, b], method="wavelet", budget=PSNR(35), steps=2, objective="rate")(crops[:2])
    assert PSNR(35).satisfied(crops[:2], x_adv) and not torch.equal(x_adv, crops[:2])


def test_cli_also_against_crafts_one_perturbation_and_measures_it_on_every_model(tmp_path, capsys):
    folder = tmp_path / "images"
    for name, x in bundled_photos(["coffee", "chelsea"], crop=48).items():
        save_image(x, folder / f"{name}.png")
    a, b = "bmshj2018-hyperprior:N=8:M=16:random", "bmshj2018-factorized:N=8:M=16:random"
    out = tmp_path / "out"
    rc = main(["attack", "-m", a, "--also-against", b, "--images", str(folder), "--method", "wavelet",
               "--budget", "psnr:35", "--steps", "2", "--no-progress", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"one perturbation crafted against {a}, {b}" in printed
    report = json.loads((out / "models.json").read_text())
    assert report["models"] == [a, b] and report["crafted-on"] == [a, b]
    assert {(r["model"], r["image"]) for r in report["rows"]} == {(m, i) for m in (a, b) for i in ("coffee", "chelsea")}
    assert all(r["budget-ok"] for r in report["rows"])
    per_image = json.loads((out / "per_image.json").read_text())
    assert per_image["settings"]["also_against"] == [b]
    # the attack folder's own numbers are --model's: the same as its rows in models.json
    main_rows = {r["image"]: r["psnr-out"] for r in per_image["rows"]}
    assert all(abs(main_rows[r["image"]] - r["psnr-out"]) < 1e-4 for r in report["rows"] if r["model"] == a)
