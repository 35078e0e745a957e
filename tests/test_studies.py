"""Studies: recompression, bpp matching, robustness curves and their AUC, transfer, and the job kinds."""

from __future__ import annotations

import math

import pytest
import torch

from robustnic.attacks import make_attack, verify_attack, verify_images
from robustnic.codecs import ClassicalCodec
from robustnic.data.images import quantize_8bit
from robustnic.errors import RobustnicError
from robustnic.metrics import psnr
from robustnic.studies import (
    Row,
    curve_auc,
    execute,
    expand_spec,
    group_means,
    match_quality,
    recompress,
    robustness_curves,
    transfer_across_images,
    transfer_across_models,
)
from robustnic.studies.jobs import load_ref, png_tensor
from robustnic.studies.recompression import recompression_series
from tests.conftest import tiny_codec

TINY = "bmshj2018-hyperprior:N=8:M=16:random"


# ----- recompression -----------------------------------------------------------------------------------
def test_recompression_chains_real_roundtrips_of_8bit_images(photo):
    jpeg = ClassicalCodec("jpeg", 40)
    res = recompress(jpeg, photo, generations=4, snapshots=(1, 3, 9))
    assert res.generations == 4 and len(res.bpp) == 4 and sorted(res.snapshots) == [1, 3]
    # generation by generation, by hand
    current = photo
    for g in range(4):
        coded = jpeg.roundtrip(current)
        current = quantize_8bit(coded.x_hat)
        assert res.psnr[g] == pytest.approx(psnr(photo, current))
        assert res.bpp[g] == pytest.approx(coded.bpp)
    assert torch.equal(res.snapshots[3], quantize_8bit(res.snapshots[3]))  # kept images are 8-bit
    s = res.summary()
    assert s["psnr-first"] == res.psnr[0] and s["psnr-drop"] == pytest.approx(res.psnr[0] - res.psnr[-1])
    assert 1 <= s["generation-min"] <= 4


def test_recompression_of_a_learned_codec_is_deterministic(odd_photo):
    a = recompress(tiny_codec(seed=3), odd_photo, generations=3)
    b = recompress(tiny_codec(seed=3), odd_photo, generations=3)
    assert a.psnr == b.psnr and a.bpp == b.bpp
    with pytest.raises(ValueError):
        recompress(tiny_codec(), odd_photo, generations=0)


def test_match_quality_finds_the_closest_bpp(photo):
    target = ClassicalCodec("webp", 60).roundtrip(photo).bpp
    codec, bpp = match_quality("webp", photo, target)
    assert bpp == pytest.approx(target)  # an exact match exists, so the distance is 0
    assert codec.roundtrip(photo).bpp == pytest.approx(bpp)
    codec, bpp = match_quality("jpeg", photo, 1.3)
    for q in (1, 10, 30, 50, 70, 90, 100):
        assert abs(bpp - 1.3) <= abs(ClassicalCodec("jpeg", q).roundtrip(photo).bpp - 1.3) + 1e-12


# ----- curves ---------------------------------------------------------------------------------------------
def test_curve_auc_is_the_mean_over_the_budget_range():
    assert curve_auc([30, 40, 50], [25.0, 25.0, 25.0]) == pytest.approx(25.0)
    assert curve_auc([50, 30], [30.0, 20.0]) == pytest.approx(25.0)  # linear: mean of the ends, order-free
    # trapezoids on uneven spacing: (10*(20+22)/2 + 5*(22+32)/2) / 15
    assert curve_auc([30, 40, 45], [20.0, 22.0, 32.0]) == pytest.approx((210 + 135) / 15)
    assert curve_auc([40], [21.5]) == 21.5
    assert curve_auc([30, 40, 50], [20.0, math.nan, 30.0]) == pytest.approx(25.0)
    assert math.isnan(curve_auc([], []))


def _row(budget: str, image: str, psnr_out: float, model: str = "m", defense: str = "none") -> Row:
    config = {"kind": "attack", "model": model, "defense": defense, "attack": "paper", "budget": budget,
              "objective": "distortion", "standin": "none", "steps": 10, "adaptive": False, "crop": 64, "seed": 0,
              "image": {"name": image}}
    result = {"psnr-in": 40.0, "psnr-clean": 30.0, "psnr-out": psnr_out, "psnr-drop": 30.0 - psnr_out,
              "delta-psnr": 5.0, "bpp-clean": 0.5, "bpp-adv": 0.6, "bpp-increase": 0.1, "budget-ok": True}
    return Row(f"{model}{defense}{budget}{image}", "attack", config, "v", result)


def test_robustness_curves_group_settings_and_average_images():
    rows = [_row("psnr:30", "a", 20.0), _row("psnr:30", "b", 22.0), _row("psnr:50", "a", 29.0),
            _row("psnr:50", "b", 27.0), _row("psnr:30", "a", 28.0, defense="ensemble"),
            _row("psnr:50", "a", 29.5, defense="ensemble"), _row("linf:4", "a", 15.0)]
    curves = robustness_curves(rows)
    assert [(c.budget_kind, c.label) for c in curves] == [
        ("linf", "m, paper"), ("psnr", "m +ensemble, paper"), ("psnr", "m, paper")]
    vanilla = curves[2]
    assert vanilla.budgets == [30.0, 50.0] and vanilla.points["psnr-out"] == [21.0, 28.0]
    assert vanilla.images == [2, 2] and vanilla.auc == pytest.approx(24.5)
    assert curves[1].auc > vanilla.auc  # the defended setting keeps more quality
    means = group_means(rows, ("defense",), ("psnr-out", "budget-ok"))
    assert {m["defense"]: (m["n"], m["budget-ok"]) for m in means} == {"none": (5, 1.0), "ensemble": (2, 1.0)}


# ----- transfer -------------------------------------------------------------------------------------------
def _paper(steps: int = 2):
    return lambda codec: make_attack("paper", codec, budget="psnr:35", steps=steps, seed=0)


def test_cross_image_diagonal_is_the_white_box_attack(photo):
    codec = tiny_codec(seed=1)
    images = {"a": photo, "b": photo.flip(-1).contiguous()}
    matrix = transfer_across_images(codec, _paper(), images)
    assert matrix.rows == matrix.cols == ["a", "b"]
    own = verify_attack(codec, photo, _paper()(codec)(photo))[0]
    assert matrix.metric("psnr-out")[0][0] == pytest.approx(own["psnr-out"])
    assert matrix.metric("psnr-drop")[0][0] == pytest.approx(own["psnr-drop"])
    with pytest.raises(RobustnicError, match="one size"):
        transfer_across_images(codec, _paper(), {"a": photo, "c": photo[..., :32]})


def test_cross_model_matrix_covers_every_target(photo):
    sources = {"h": tiny_codec(seed=1), "f": tiny_codec("bmshj2018-factorized", seed=2)}
    targets = {"h": sources["h"], "jpeg": ClassicalCodec("jpeg", 75)}
    matrix = transfer_across_models(sources, targets, _paper(), photo)
    assert matrix.rows == ["h", "f"] and matrix.cols == ["h", "jpeg"]
    psnr_in = matrix.metric("psnr-in")
    assert all(34.9 <= v for row in psnr_in for v in row)  # every crafted image kept its budget
    # the white-box cell is the attack itself, verified on h's real bitstreams
    direct = verify_images(sources["h"], photo, _paper()(sources["h"])(photo))[0].row
    assert matrix.metric("psnr-out")[0][0] == pytest.approx(direct["psnr-out"], abs=1e-6)
    # the same crafted image meets two different decoders: their outputs differ
    assert matrix.metric("psnr-out")[0][0] != pytest.approx(matrix.metric("psnr-out")[0][1], abs=1e-3)
    with pytest.raises(RobustnicError, match="differentiable"):
        transfer_across_models({"jpeg": ClassicalCodec("jpeg", 50)}, targets, _paper(), photo)


# ----- job kinds ------------------------------------------------------------------------------------------
def _one(kind: str, **params) -> dict:
    spec = {"seed": 0, "crop": 64, "images": ["bundled:astronaut"], "study": [{"kind": kind, **params}]}
    (job,) = expand_spec(spec)
    return job.config


def test_attack_job_verifies_and_keeps_its_images():
    config = _one("attack", model=TINY, attack="paper", budget="psnr:38", steps=2, defense="ensemble", adaptive=True)
    out = execute("attack", config)
    assert out.result["budget-ok"] is True and out.result["psnr-in"] >= 38 - 1e-6
    assert out.result["codec"].endswith("ensemble") and out.result["attack-mode"] in ("chosen", "eot", "identity")
    names = sorted(a.name for a in out.artifacts)
    assert names == ["adversarial.png", "reconstruction-adversarial.png", "reconstruction-clean.png", "source.png"]
    images = {a.name: png_tensor(a.data) for a in out.artifacts}
    assert torch.equal(images["source.png"], load_ref(config["image"], 64))
    assert psnr(images["source.png"], images["adversarial.png"]) == pytest.approx(out.result["psnr-in"])
    assert "attack-time" in out.timing and not any("time" in k for k in out.result)


def test_matched_recompression_job_records_the_chosen_quality():
    config = _one("recompression", model="webp:match", match=TINY, generations=2, snapshots=[2])
    out = execute("recompression", config)
    assert out.result["codec"] == f"webp:q{out.result['matched-quality']}"
    assert out.result["bpp"][0] == out.result["matched-bpp"]
    series = recompression_series([Row("k", "recompression", config, "v", out.result)])
    assert series[0]["label"] == f"webp (bpp-matched to {TINY})" and series[0]["qualities"] == [out.result["matched-quality"]]
    with pytest.raises(RobustnicError, match="unknown defense|cannot understand|purifier"):
        execute("rd", _one("rd", model=TINY, defense="nonsense"))


def test_robust_models_are_found_by_family_or_note_not_by_rd_finetunes():
    from robustnic.codecs.zoo import ShippedModel
    from robustnic.studies.presets import robust_models

    def shipped(family: str, q: int, note: str) -> ShippedModel:
        return ShippedModel(family, q, "bmshj2018-hyperprior", 64, 96, "mse", "f", "s", {"note": note})

    manifest = {
        "hyperprior-small:q2": shipped("hyperprior-small", 2, "fine-tuned from hyperprior-small:q3 at a lower lambda"),
        "hyperprior-small:q3": shipped("hyperprior-small", 2, "trained from scratch"),
        "hyperprior-robust:q2": shipped("hyperprior-robust", 2, "robustnic finetune"),
        "mean-small-adv:q2": shipped("mean-small-adv", 2, "adversarially fine-tuned at psnr:35"),
    }
    assert robust_models(manifest) == ["hyperprior-robust:q2", "mean-small-adv:q2"]


def test_curve_points_average_the_same_images_at_every_budget():
    rows = [_row("psnr:30", "a", 20.0), _row("psnr:40", "a", 25.0), _row("psnr:40", "b", 29.0),
            _row("psnr:40", "c", 29.0), _row("psnr:50", "a", 28.0)]
    for r in rows:
        r.config["image"]["sha256"] = r.config["image"]["name"] * 8
    (curve,) = robustness_curves(rows)
    assert curve.points["psnr-out"] == [20.0, 25.0, 28.0] and curve.images == [1, 1, 1]


# ----- the grid's attack kind: every option of the attack CLI, one attack path ------------------------
GRID_YAML = f"""
seed: 0
crop: 192          # MS-SSIM needs more than 160 px a side
images: ["bundled:astronaut"]
study:
  - kind: attack
    models: ["{TINY}"]
    attacks: ["pgd"]
    budgets: ["psnr:35"]
    steps: 2
    restarts: 2
    reference: source
    metric: ms-ssim
"""


def test_a_grid_attack_study_takes_restarts_reference_and_metric(tmp_path):
    from robustnic.studies import ResultStore
    from robustnic.studies.grid import load_spec, run_spec

    (tmp_path / "grid.yaml").write_text(GRID_YAML)
    spec = load_spec(tmp_path / "grid.yaml")
    (job,) = expand_spec(spec)
    assert {k: job.config[k] for k in ("restarts", "reference", "metric")} == {
        "restarts": 2, "reference": "source", "metric": "ms-ssim"}
    summary = run_spec(spec, tmp_path / "s.sqlite", progress=False)
    assert summary.done == 1 and not summary.failed
    with ResultStore(tmp_path / "s.sqlite", readonly=True) as store:
        (row,) = store.rows("attack")
    assert row.config["restarts"] == 2 and row.result["budget-ok"] is True and row.result["psnr-in"] >= 35 - 1e-6
    assert 0 < row.result["ms-ssim-out"] <= 1 and (row.result["width"], row.result["height"]) == (192, 192)
    # the same settings through the attack CLI's path give the same numbers
    from robustnic.attacks import run_attacks

    x = load_ref(job.config["image"], 192)
    (res,) = run_attacks(tiny_codec(seed=0), {"astronaut": x}, methods=["pgd"], budgets=["psnr:35"], steps=2,
                         restarts=2, reference="source", metric="ms-ssim", seed=0)
    assert res.row["psnr-out"] == pytest.approx(row.result["psnr-out"], abs=1e-9)
    assert res.row["ms-ssim-out"] == pytest.approx(row.result["ms-ssim-out"], abs=1e-9)


def test_attack_options_at_their_defaults_leave_job_configs_as_they_were():
    plain = _one("attack", model=TINY, attack="paper", budget="psnr:38", steps=2)
    assert set(plain) == {"kind", "model", "attack", "budget", "defense", "image", "objective", "standin", "steps",
                          "adaptive", "seed", "crop"}  # the keys of configurations written before the options
    spelled = {"kind": "attack", "model": TINY, "attack": "paper", "budget": "psnr:38", "steps": 2, "restarts": 1,
               "reference": "clean", "metric": "mse", "color": "rgb", "rd_weight": None, "also_against": None}
    spec = {"seed": 0, "crop": 64, "images": ["bundled:astronaut"], "study": [spelled]}
    (job,) = expand_spec(spec)
    assert job.config == plain  # explicit defaults: the same configuration, so the same key
    with pytest.raises(RobustnicError, match="unknown attack reference"):
        _one("attack", model=TINY, attack="paper", budget="psnr:38", reference="elsewhere")
    with pytest.raises(RobustnicError, match="restarts"):
        _one("attack", model=TINY, attack="paper", budget="psnr:38", restarts=0)
    with pytest.raises(RobustnicError, match="needs 'target'"):
        _one("attack", model=TINY, attack="paper", budget="psnr:38", objective="targeted")
    with pytest.raises(RobustnicError, match="cap"):
        _one("attack", model=TINY, attack="paper", budget="psnr:38,linf:0")


TINY_FACTORIZED = "bmshj2018-factorized:N=8:M=16:random"


def test_a_grid_attack_takes_color_rd_weight_and_also_against_as_the_attack_cli_does():
    from robustnic.attacks import run_attacks
    from robustnic.attacks.ensemble_models import CodecFamily
    from robustnic.studies.jobs import build_codec

    config = _one("attack", model=TINY, attack="pgd", budget="psnr:35", steps=2, objective="rate-distortion",
                  color="y", rd_weight=0.5, also_against=TINY_FACTORIZED)
    assert (config["color"], config["rd_weight"], config["also_against"]) == ("y", 0.5, [TINY_FACTORIZED])
    out = execute("attack", config)
    assert out.result["budget-ok"] is True
    # the API path: one perturbation crafted on both models, every number measured on the first
    x = load_ref(config["image"], 64)
    family = CodecFamily([build_codec(m, "none", 0, "cpu") for m in (TINY, TINY_FACTORIZED)])
    (res,) = run_attacks(family, {"astronaut": x}, methods=["pgd"], budgets=["psnr:35"], steps=2, seed=0,
                         objective="rate-distortion", color="y", rd_weight=0.5)
    assert res.row["psnr-out"] == pytest.approx(out.result["psnr-out"], abs=1e-9)
    assert res.row["bpp-adv"] == pytest.approx(out.result["bpp-adv"], abs=1e-12)
    # without also_against the perturbation is another one
    alone = execute("attack", {k: v for k, v in config.items() if k != "also_against"})
    adversarial = {a.name: a.data for a in out.artifacts}["adversarial.png"]
    assert {a.name: a.data for a in alone.artifacts}["adversarial.png"] != adversarial
    with pytest.raises(RobustnicError, match="adaptive"):
        _one("attack", model=TINY, attack="pgd", budget="psnr:35", also_against=[TINY_FACTORIZED], adaptive=True)
    with pytest.raises(RobustnicError, match="also_against"):
        _one("attack", model=TINY, attack="pgd", budget="psnr:35", also_against=3)


def test_a_grid_targeted_attack_fingerprints_its_target_and_keeps_a_mask_rectangle():
    config = _one("attack", model=TINY, attack="pgd", budget="psnr:30,linf:8", steps=2, objective="targeted",
                  target="bundled:coffee", mask="16,16,48,48")
    assert config["target"]["name"] == "coffee" and len(config["target"]["sha256"]) == 64
    assert config["mask"] == "16,16,48,48"
    out = execute("attack", config)
    assert out.result["budget-ok"] is True and math.isfinite(out.result["psnr-target"])
    assert out.result["linf-in"] <= 8  # the budget's cap holds on the saved image


def test_adaptive_grid_attack_keeps_the_worst_attack_mode():
    config = _one("attack", model=TINY, attack="pgd", budget="psnr:32", steps=2, defense="bits:5", adaptive=True)
    out = execute("attack", config)
    assert out.result["attack-mode"] in ("bpda", "identity")
    from robustnic.attacks import AttackSettings, attack_and_verify
    from robustnic.studies.jobs import build_codec

    both = attack_and_verify(build_codec(TINY, "bits:5", 0, "cpu"), load_ref(config["image"], 64),
                             AttackSettings("pgd", "psnr:32", steps=2), adaptive=True)
    assert set(both.by_mode) == {"bpda", "identity"}
    assert out.result["psnr-out"] == pytest.approx(min(rows[0]["psnr-out"] for rows in both.by_mode.values()))


def test_capped_budgets_make_their_own_curves_and_the_cli_reads_them():
    from robustnic.cli.commands.curves import split_budgets

    assert split_budgets("psnr:30,linf:16, psnr:40,linf:16") == ["psnr:30,linf:16", "psnr:40,linf:16"]
    assert split_budgets("linf:1,linf:4") == ["linf:1", "linf:4"]
    rows = [_row("psnr:30", "a", 20.0), _row("psnr:40", "a", 25.0), _row("psnr:30,linf:4", "a", 27.0),
            _row("psnr:40,linf:4", "a", 28.0)]
    free, capped = sorted(robustness_curves(rows), key=lambda c: "L∞" in c.label)
    assert free.budget_specs == ["psnr:30", "psnr:40"] and free.points["psnr-out"] == [20.0, 25.0]
    assert capped.budget_specs == ["psnr:30,linf:4", "psnr:40,linf:4"] and capped.points["psnr-out"] == [27.0, 28.0]
    assert "L∞ ≤ 4/255" in capped.label and "L∞" not in free.label
    rows.append(_row("psnr:30", "a", 10.0))
    rows[-1].config["restarts"] = 2  # another attack setting: its own curve
    assert len(robustness_curves(rows)) == 3
