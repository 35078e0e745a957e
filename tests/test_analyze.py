"""``robustnic analyze``: the Jacobian spectrum against a brute-force SVD, layer magnify ratios, the
Spearman helper, the CLI's files, the grid's ``analyze`` kind and its report section."""

from __future__ import annotations

import json
import math

import pytest
import torch

from robustnic.cli.main import main
from robustnic.data import bundled_photos
from robustnic.errors import RobustnicError
from robustnic.studies.analyze import (analyze_images, jacobian_spectrum, layer_magnify, linear_gain_db, spearman)
from tests.conftest import tiny_codec

TINY = "bmshj2018-hyperprior:N=8:M=16:random"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small() -> torch.Tensor:
    return bundled_photos(["chelsea"], crop=16)["chelsea"]


@pytest.fixture(scope="module")
def codec():
    return tiny_codec(seed=3)


def _adversarial(x: torch.Tensor, seed: int = 0, eps: float = 4 / 255) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + eps * torch.randn(x.shape, generator=g)).clamp(0, 1).mul(255).round().div(255)


@pytest.mark.parametrize("standin", ["none", "ste"])
def test_lanczos_top_singular_values_match_a_brute_force_svd(codec, small, standin):
    def relaxed(z: torch.Tensor) -> torch.Tensor:
        return codec.forward(z, standin=standin).x_hat

    full = torch.autograd.functional.jacobian(relaxed, small).reshape(small.numel(), small.numel())
    exact = torch.linalg.svdvals(full.double())[:3].tolist()
    s = jacobian_spectrum(codec, small, k=3, iters=40, seed=0, standin=standin)
    assert s.converged and 1 <= s.iterations <= 40
    assert s.sigmas[0] == pytest.approx(exact[0], rel=0.02)
    assert s.sigmas == pytest.approx(exact, rel=0.02)
    assert s.gain_db == pytest.approx(20 * math.log10(exact[0]), abs=0.2)
    # the top right singular vector is one: J v has norm sigma_1
    assert float(s.direction.norm()) == pytest.approx(1.0, rel=1e-4)
    assert float((full.double() @ s.direction.flatten().double()).norm()) == pytest.approx(exact[0], rel=0.02)


def test_spectrum_is_deterministic_and_bounds_the_linear_gain_of_any_perturbation(codec, small):
    a, b = jacobian_spectrum(codec, small, seed=0), jacobian_spectrum(codec, small, seed=0)
    assert a.sigmas == b.sigmas and a.iterations == b.iterations
    delta = _adversarial(small, seed=1) - small
    assert linear_gain_db(codec, small, delta) <= a.gain_db + 0.05
    with pytest.raises(RobustnicError, match="deterministic"):
        jacobian_spectrum(codec, small, standin="noise")


def test_layer_magnify_covers_every_layer_and_starts_at_the_input(codec, photo):
    x = photo[..., :64, :64]
    x_adv = _adversarial(x)
    rows = layer_magnify(codec, x, x_adv)
    net = codec.net
    names = [r["layer"] for r in rows]
    for transform in ("g_a", "g_s", "h_a", "h_s"):
        expected = [f"{transform}.{n}" for n, _ in getattr(net, transform).named_children()]
        assert [n for n in names if n.startswith(transform + ".")] == expected
    first = rows[0]
    assert first["layer"] == "input" and first["magnify"] == 1.0 and first["rms-gain"] == 1.0
    assert first["distance"] == pytest.approx(float((x_adv - x).norm()), rel=1e-5)
    assert first["relative"] == pytest.approx(float((x_adv - x).norm() / x.norm()), rel=1e-5)
    assert names.index("y_hat") == names.index("g_s.0") - 1  # the rounded latents g_s sees
    row = next(r for r in rows if r["layer"] == "g_a.0")
    assert row["name"] == "g_a.0 Conv2d" and row["type"] == "Conv2d"
    with torch.no_grad():
        a, b = net.g_a[0](x), net.g_a[0](x_adv)
    assert row["distance"] == pytest.approx(float((b - a).norm()), rel=1e-4)
    assert row["magnify"] == pytest.approx(float((b - a).norm() / a.norm()) / first["relative"], rel=1e-4)
    # the relaxation g_s(g_a(x)) runs g_a and g_s only; its last layer is the reconstruction
    relaxed = layer_magnify(codec, x, x_adv, standin="none")
    assert {r["transform"] for r in relaxed} == {"input", "g_a", "g_s"}
    with torch.no_grad():
        out = codec.forward(x_adv).x_hat - codec.forward(x).x_hat
    assert relaxed[-1]["layer"] == f"g_s.{len(net.g_s) - 1}"
    assert relaxed[-1]["distance"] == pytest.approx(float(out.norm()), rel=1e-4)


def test_spearman_is_one_for_monotone_data_and_none_below_three_pairs(monkeypatch):
    assert spearman([1, 2, 3, 4], [10, 20, 25, 100])[0] == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [5, 3, 2, 1])[0] == pytest.approx(-1.0)
    assert spearman([1, 2], [1, 2]) == (None, None)
    assert spearman([1, 2, float("nan"), 4], [1, 2, 3, None]) == (None, None)  # two finite pairs left
    assert spearman([1, 1, 1], [1, 2, 3]) == (None, None)
    with_scipy = spearman([1, 2, 2, 5, 3], [2, 1, 4, 4, 9])[0]
    import builtins

    real_import = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_scipy)
    rho, p = spearman([1, 2, 2, 5, 3], [2, 1, 4, 4, 9])
    assert p is None and rho == pytest.approx(with_scipy)
    assert spearman([3, 1, 2], [30, 10, 20])[0] == pytest.approx(1.0)


def test_analyze_images_correlates_gain_with_the_verified_vi(codec):
    images = bundled_photos(["astronaut", "coffee", "chelsea"], crop=32)
    a = analyze_images(codec, images, steps=2, iters=10)
    assert [r["image"] for r in a.images] == list(images)
    for r in a.images:
        assert {"gain-db", "sigmas", "delta-psnr", "psnr-in", "linear-db", "alignment"} <= set(r)
        assert r["psnr-in"] >= 35 - 1e-6  # the budget holds on the 8-bit image
    assert {r["image"] for r in a.layers} == set(images)
    first = a.correlations[0]
    assert (first["x"], first["y"]) == ("gain-db", "delta-psnr")
    pairs = [(r["gain-db"], r["delta-psnr"]) for r in a.images if math.isfinite(r["delta-psnr"])]
    assert first["n"] == len(pairs)
    assert a.spearman == (spearman(*zip(*pairs))[0] if len(pairs) >= 3 else None)
    alone = analyze_images(codec, images, attack=None, iters=10)
    assert alone.layers == [] and "delta-psnr" not in alone.images[0] and alone.spearman is None
    assert [r["gain-db"] for r in alone.images] == [r["gain-db"] for r in a.images]


def test_cli_writes_analyze_json_with_the_documented_keys(tmp_path, capsys):
    out = tmp_path / "an"
    argv = ["analyze", "-m", TINY, "--images", "bundled", "--crop", "32", "--steps", "1", "--iters", "8",
            "--threads", "1", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "gain dB" in printed and "Spearman(gain-db, delta-psnr)" in printed
    report = json.loads((out / "analyze.json").read_text())
    assert {"command", "robustnic", "code-version", "settings", "images", "layers", "correlation",
            "correlations", "seconds"} <= set(report)
    assert len(report["images"]) == 6 and report["settings"]["attack"]["method"] == "paper"
    assert report["correlation"]["x"] == "gain-db" and report["correlation"]["y"] == "delta-psnr"
    assert report["settings"]["threads"] == 1
    per_image = (out / "per_image.csv").read_text().splitlines()
    layers = (out / "layers.csv").read_text().splitlines()
    assert per_image[0].startswith("image,") and len(per_image) == 7
    assert layers[0].startswith("image,layer,") and len(layers) == 1 + len(report["layers"])
    assert main(["analyze", "-m", TINY, "--crop", "32", "--k", "0", "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


def test_grid_analyze_kind_runs_and_the_report_shows_gain_beside_vi(tmp_path):
    from robustnic.report import build_report
    from robustnic.studies import JOB_KINDS, ResultStore, Row, execute

    configs = list(JOB_KINDS["analyze"].expand({"model": TINY, "images": ["bundled:coffee", "bundled:chelsea",
                                                                          "bundled:china"],
                                                "crop": 32, "steps": 1, "iters": 8}))
    assert len(configs) == 3 and configs[0]["attack"] == "paper" and configs[0]["budget"] == "psnr:35"
    with pytest.raises(RobustnicError, match="deterministic"):
        list(JOB_KINDS["analyze"].expand({"model": TINY, "images": "bundled:coffee", "standin": "noise"}))
    with ResultStore(tmp_path / "s.sqlite") as store:
        for i, config in enumerate(configs):
            out = execute("analyze", config)
            assert {"gain-db", "delta-psnr", "layers"} <= set(out.result) and "spectrum-time" in out.timing
            store.put(Row(f"k{i}", "analyze", config, "v1", out.result, out.timing), out.artifacts)
    page = build_report(tmp_path / "s.sqlite", tmp_path / "report").read_text()
    assert '<section id="analyze">' in page and "Spearman(gain, VI)" in page and 'id="kind-analyze"' not in page
    assert (tmp_path / "report" / "figures" / "analyze-magnify.png").is_file()
