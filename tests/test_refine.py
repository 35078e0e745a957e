"""Latent refinement at the encoder (``refine``): plain streams, RD never worse, attack modes (issue 17)."""

from __future__ import annotations

import pytest
import torch

from robustnic.cli.main import main
from robustnic.codecs import container, load_codec
from robustnic.codecs.base import payload_bits
from robustnic.data.images import save_image
from robustnic.defenses import PurifiedCodec, RefinedCodec, SelfEnsembleCodec, attack_defense, make_defense
from robustnic.errors import RobustnicError
from tests.conftest import tiny_codec

pytestmark = pytest.mark.usefixtures("one_thread")

ARCHS = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean")
#: Small trained models shipped with robustnic, one per refinable architecture.
SHIPPED = ("hyperprior-small:q3", "factorized-small:q3", "mean-small:q3")


@pytest.fixture(scope="module")
def shipped() -> dict:
    return {spec: load_codec(spec) for spec in SHIPPED}


@pytest.fixture(scope="module")
def crop(photo) -> torch.Tensor:
    """A 48x80 crop (odd for the codec: padded to 64x128 inside)."""
    return photo[..., 8:56, 4:84].contiguous()


def real_rd_loss(codec, data: bytes, x: torch.Tensor, lmbda: float) -> float:
    """``λ·255²·MSE + bpp`` of a real bitstream, decoded by the plain model."""
    x_hat = codec.decompress(data)
    return lmbda * 255.0**2 * torch.mean((x_hat - x) ** 2).item() + payload_bits(data) / (x.shape[-2] * x.shape[-1])


# ----- the bitstream ---------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_zero_steps_codes_exactly_the_plain_stream(arch, odd_photo):
    """With no step, the refining encoder's own entropy coding of g_a(x) is byte-identical to the
    model's compress: the latents-to-strings path is the model's."""
    codec = tiny_codec(arch, seed=3)
    assert RefinedCodec(codec, steps=0).compress(odd_photo) == codec.compress(odd_photo)


@pytest.mark.parametrize("spec", SHIPPED)
def test_refined_stream_is_a_plain_stream_and_never_codes_worse(shipped, spec, crop):
    """On trained models: the refined stream carries the model's header and decodes with the plain
    model to the refine codec's own decoding; its real RD loss (coded bits, decoded image) is lower
    than the plain stream's, by what the refinement reported."""
    codec = shipped[spec]
    refined = RefinedCodec(codec, steps=12, lr=0.02)
    data, plain = refined.compress(crop), codec.compress(crop)
    assert data != plain
    header, _ = container.unpack(data)
    assert header.model == codec._model_tag() and header.codec == codec.codec_code
    decoded = codec.decompress(data)
    assert torch.equal(decoded, refined.decompress(data))
    lmbda = refined.lmbda
    assert lmbda == pytest.approx(0.0067)  # the manifest's training λ
    loss_plain, loss_refined = real_rd_loss(codec, plain, crop, lmbda), real_rd_loss(codec, data, crop, lmbda)
    assert loss_refined < loss_plain
    out = refined.refine(crop)
    assert out.refined == [True]
    assert out.loss_plain[0] == pytest.approx(loss_plain, rel=1e-4)
    assert out.loss_sent[0] == pytest.approx(loss_refined, rel=1e-4)
    # the kept iterate is the best of the trajectory, and at least the start
    assert min(t[0] for t in out.trajectory) <= out.trajectory[0][0]


def test_refine_keeps_the_plain_stream_when_refinement_does_not_pay(shipped, crop):
    """A step so small that nothing rounds differently cannot beat the plain latents on real bits:
    the plain stream is sent (the real-loss check), so RD never gets worse."""
    codec = shipped["hyperprior-small:q3"]
    refined = RefinedCodec(codec, steps=1, lr=1e-7)
    assert refined.compress(crop) == codec.compress(crop)
    assert refined.refine(crop).refined == [False]


def test_forward_with_real_rounding_is_what_the_decoder_gives(shipped, crop):
    """What an attack measures (forward, standin ste, no gradient) is the decoded refined stream."""
    refined = RefinedCodec(shipped["mean-small:q3"], steps=4, lr=0.02)
    with torch.no_grad():
        x_hat = refined.forward(crop, standin="ste").x_hat
    torch.testing.assert_close(x_hat.clamp(0, 1), refined.decompress(refined.compress(crop)), atol=2e-5, rtol=0)


def test_decompress_cli_with_the_plain_model_decodes_a_refined_stream(tmp_path, crop, capsys):
    save_image(crop, tmp_path / "in.png")
    assert main(["compress", str(tmp_path / "in.png"), "-o", str(tmp_path / "r.rnic"), "-m", "hyperprior-small:q3",
                 "--defense", "refine:steps=3"]) == 0
    assert main(["decompress", str(tmp_path / "r.rnic"), "-o", str(tmp_path / "out.png"),
                 "-m", "hyperprior-small:q3"]) == 0
    assert "hyperprior-small:q3" in capsys.readouterr().out
    assert (tmp_path / "out.png").stat().st_size > 0


# ----- specs and composition --------------------------------------------------------------------------
def test_spec_options_and_errors():
    codec = tiny_codec("bmshj2018-hyperprior", seed=1)
    r = make_defense(codec, "refine:steps=7:lr=0.03:lambda=0.01:z=recompute:unroll=2:unroll")
    assert isinstance(r, RefinedCodec) and r.name == f"{codec.name}+refine"
    assert (r.steps, r.lr, r.lmbda, r.z_mode, r.unroll, r.attack_mode) == (7, 0.03, 0.01, "recompute", 2, "unroll")
    assert make_defense(codec, "refine").attack_modes == ("bpda", "unroll", "identity")
    for bad in ("refine:steps=x", "refine:foo", "refine:z=maybe", "refine:steps=2:steps=3", "refine:lr=-1"):
        with pytest.raises(RobustnicError):
            make_defense(codec, bad)
    with pytest.raises(RobustnicError, match="last"):
        make_defense(codec, "refine+jpeg:q90")  # refine would wrap a purified codec
    with pytest.raises(RobustnicError, match="learned model"):
        make_defense(load_codec("jpeg:q50"), "refine")
    with pytest.raises(RobustnicError, match="autoregressive"):
        make_defense(tiny_codec("mbt2018"), "refine")


def test_composes_with_purification_and_the_self_ensemble(odd_photo):
    codec = tiny_codec("bmshj2018-hyperprior", seed=1)
    purified = make_defense(codec, "jpeg:q90+refine:steps=2")
    assert isinstance(purified, PurifiedCodec) and isinstance(purified.codec, RefinedCodec)
    assert torch.equal(codec.decompress(purified.compress(odd_photo)), purified.codec.decompress(purified.compress(odd_photo)))
    ens = make_defense(codec, "ensemble+refine:steps=1")
    assert isinstance(ens, SelfEnsembleCodec) and isinstance(ens.codec, RefinedCodec)
    data = ens.compress(odd_photo, transform=5)
    assert container.unpack(data)[0].transform == 5
    assert data == ens.codec.compress(odd_photo, 5)
    assert codec.decompress(data).shape == odd_photo.shape


# ----- attacked through the defense ---------------------------------------------------------------------
def _grad(codec, x):
    x = x.clone().requires_grad_(True)
    out = codec.forward(x, standin="none")
    (g,) = torch.autograd.grad(out.x_hat.square().sum(), x)
    return out.x_hat.detach(), g


def test_bpda_and_unroll_gradients(shipped, crop):
    """bpda: the plain model's relaxed forward at the refined latents; unroll=0 is exactly bpda;
    unrolling the refinement changes the gradient, not the forward value."""
    codec = shipped["hyperprior-small:q3"]
    r = RefinedCodec(codec, steps=3, lr=0.02)
    bpda_hat, bpda_g = _grad(r.with_attack_mode("bpda"), crop)
    unroll0_hat, unroll0_g = _grad(RefinedCodec(codec, steps=3, lr=0.02, unroll=0, attack_mode="unroll"), crop)
    unroll_hat, unroll_g = _grad(r.with_attack_mode("unroll"), crop)
    torch.testing.assert_close(unroll0_g, bpda_g)
    torch.testing.assert_close(unroll_hat, bpda_hat, atol=1e-4, rtol=0)  # the same refinement
    torch.testing.assert_close(unroll0_hat, bpda_hat)
    assert torch.isfinite(unroll_g).all() and unroll_g.abs().sum() > 0
    assert not torch.allclose(unroll_g, bpda_g)
    # the refined value, not the plain one: the refinement moved the reconstruction
    plain_hat, plain_g = _grad(codec, crop)
    assert not torch.allclose(bpda_hat, plain_hat)
    _, identity_g = _grad(r.with_attack_mode("identity"), crop)
    torch.testing.assert_close(identity_g, plain_g)


def test_defense_aware_attack_runs_every_mode_and_is_seeded(odd_photo):
    codec = tiny_codec("bmshj2018-hyperprior", seed=2)
    x = odd_photo.repeat(2, 1, 1, 1)
    x[1] = x[1].flip(-1)
    refined = make_defense(codec, "refine:steps=2:lr=0.05")
    runs = [attack_defense(refined, x, method="paper", budget="psnr:35", steps=3, seed=7) for _ in range(2)]
    assert set(runs[0].by_mode) == {"bpda", "unroll", "identity"}
    assert {r["attack-mode"] for r in runs[0].rows} <= {"bpda", "unroll", "identity"}
    assert torch.equal(runs[0].x_adv, runs[1].x_adv)
    assert [r["psnr-out"] for r in runs[0].rows] == [r["psnr-out"] for r in runs[1].rows]
    for mode in runs[0].by_mode:  # the worst per image is kept
        for kept, row in zip(runs[0].rows, runs[0].by_mode[mode]):
            assert kept["psnr-out"] <= row["psnr-out"] + 1e-9
