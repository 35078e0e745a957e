"""Self-ensemble and purification defenses, on tiny random models and small photo crops."""

from __future__ import annotations

import pytest
import torch

from robustnic.codecs import container, load_codec
from robustnic.codecs.base import payload_bits
from robustnic.codecs.transforms import NUM_TRANSFORMS, apply_transform, inverse_transform, transformed_size
from robustnic.defenses import (
    DEFAULT_PURIFIERS,
    PurifiedCodec,
    SelfEnsembleCodec,
    forward_transforms,
    make_defense,
    parse_purifier,
    transform_groups,
)
from robustnic.defenses.base import oriented_output
from robustnic.defenses.ensemble import proxy_tiles
from robustnic.defenses.evaluate import attack_defense
from robustnic.errors import RobustnicError
from tests.conftest import tiny_codec


@pytest.fixture(scope="module")
def codec():
    return tiny_codec("bmshj2018-hyperprior", seed=1)


@pytest.fixture(params=["square", "odd"])
def image(request, photo, odd_photo):
    """A square 64x64 crop (the 8 transforms batch together) and a 45x71 one (two batches of 4)."""
    return photo[..., :64, 16:80] if request.param == "square" else odd_photo


# ----- self-ensemble: the bitstream ------------------------------------------------------------
def test_transform_index_roundtrips_for_all_eight(codec, image):
    """The header carries each index; decoding equals the plain codec's own round trip of the
    transformed image, transformed back (an independent path: no ensemble code builds the expectation),
    on square and non-square images alike, and the plain codec decodes the ensemble's stream too."""
    ens = SelfEnsembleCodec(codec)
    h, w = image.shape[-2:]
    for t in range(NUM_TRANSFORMS):
        data = ens.compress(image, transform=t)
        header, _ = container.unpack(data)
        assert header.transform == t and (header.height, header.width) == (h, w)
        plain = codec.roundtrip(apply_transform(image, t))
        expected = inverse_transform(plain.x_hat, t)
        decoded = ens.decompress(data)
        assert decoded.shape == image.shape
        torch.testing.assert_close(decoded, expected, atol=1e-6, rtol=0)
        assert payload_bits(data) == plain.payload_bits  # the same latents were coded
        assert torch.equal(codec.decompress(data), decoded)


def test_exhaustive_choice_is_the_best_real_candidate_and_counts_three_bits(codec, odd_photo):
    image = odd_photo
    ens = SelfEnsembleCodec(codec, search="exhaustive")
    choice = ens.choose(image)
    assert sorted(choice.costs) == list(range(NUM_TRANSFORMS))
    assert choice.costs[choice.transform] == min(choice.costs.values())
    plain = [codec.roundtrip(image, t) for t in range(NUM_TRANSFORMS)]
    mses = [torch.mean((c.x_hat - image) ** 2).item() for c in plain]
    assert mses[choice.transform] == pytest.approx(min(mses), rel=1e-6)

    coded = ens.roundtrip(image)
    assert container.unpack(coded.data)[0].transform == choice.transform
    assert coded.side_bits == 3
    assert coded.bpp == pytest.approx((payload_bits(coded.data) + 3) / (image.shape[-2] * image.shape[-1]))
    assert coded.bpp - plain[choice.transform].bpp == pytest.approx(3 / (image.shape[-2] * image.shape[-1]))
    assert torch.equal(coded.x_hat, plain[choice.transform].x_hat)


def test_rd_criterion_with_tiny_lambda_picks_the_cheapest_bitstream(codec, photo):
    ens = SelfEnsembleCodec(codec, criterion="rd", lmbda=1e-12)
    bits = [payload_bits(codec.compress(photo, t)) for t in range(NUM_TRANSFORMS)]
    assert bits[ens.choose(photo).transform] == min(bits)
    assert ens.name.endswith("+ensemble-rd")


def test_proxy_costs_batched_equal_one_by_one(codec, image):
    """The batched forward (8 at once, or two batches of 4 when H != W) matches one-by-one calls."""
    ens = SelfEnsembleCodec(codec, criterion="rd", search="proxy")
    batched = ens.proxy_costs(image, fraction=1.0)[0]
    for t in range(NUM_TRANSFORMS):
        out = codec.forward(apply_transform(image, t), standin="ste", rate=True)
        one = ens._batch_cost(apply_transform(image, t), out, image.shape[-2] * image.shape[-1])
        assert batched[t].item() == pytest.approx(one.item(), rel=1e-4)
    assert transform_groups(tuple(image.shape[-2:])) == (
        [tuple(range(8))] if image.shape[-2] == image.shape[-1] else [(0, 1, 2, 3), (4, 5, 6, 7)]
    )


def test_proxy_search_with_all_candidates_matches_exhaustive(codec, photo):
    exhaustive = SelfEnsembleCodec(codec).choose(photo)
    proxy = SelfEnsembleCodec(codec, search="proxy", top_k=8).choose(photo)
    assert proxy.transform == exhaustive.transform
    assert proxy.costs == pytest.approx(exhaustive.costs)
    top1 = SelfEnsembleCodec(codec, search="proxy", top_k=1, proxy_fraction=1.0).choose(photo)
    assert top1.costs == {} and top1.transform == min(range(8), key=lambda t: top1.proxy_costs[t])


def test_proxy_tiles_cover_the_requested_fraction():
    tiles = proxy_tiles((256, 320), 64, 0.25)
    assert len(tiles) == 5 and len(set(tiles)) == 5
    assert all(0 <= r <= 256 - 64 and 0 <= c <= 320 - 64 and r % 64 == 0 and c % 64 == 0 for r, c in tiles)
    assert proxy_tiles((256, 320), 64, 0.25) == tiles  # deterministic
    assert len(proxy_tiles((100, 70), 64, 0.01)) == 1


def test_ensemble_wraps_a_classical_codec(odd_photo):
    ens = SelfEnsembleCodec(load_codec("jpeg:q50"), search="proxy", top_k=2)
    coded = ens.roundtrip(odd_photo)
    assert coded.x_hat.shape == odd_photo.shape and coded.side_bits == 3


# ----- self-ensemble: what an attack differentiates -----------------------------------------------
def test_eot_forward_averages_the_loss_over_the_eight_transforms(codec, odd_photo):
    x = odd_photo.repeat(2, 1, 1, 1)
    x_adv = (x + 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    ens = SelfEnsembleCodec(codec, attack_mode="eot")
    ref, out = ens.forward(x, standin="ste"), ens.forward(x_adv, standin="ste", rate=True)
    assert out.x_hat.shape == (2, 24, *x.shape[-2:])
    per_image = ((out.x_hat - ref.x_hat) ** 2).flatten(1).mean(1)
    expected = torch.zeros(2)
    bits = torch.zeros(2)
    for t in range(NUM_TRANSFORMS):
        a = inverse_transform(codec.forward(apply_transform(x_adv, t), standin="ste").x_hat, t)
        b = inverse_transform(codec.forward(apply_transform(x, t), standin="ste").x_hat, t)
        expected += ((a - b) ** 2).flatten(1).mean(1) / NUM_TRANSFORMS
        lk = codec.forward(apply_transform(x_adv, t), standin="ste", rate=True).likelihoods
        bits += sum(-torch.log2(v).flatten(1).sum(1) for v in lk.values()) / NUM_TRANSFORMS
    assert torch.allclose(per_image, expected, rtol=1e-4)
    assert torch.allclose(-torch.log2(out.likelihoods["all"]).sum(1), bits, rtol=1e-4)


def test_eot_and_chosen_forwards_pass_gradients(codec, photo):
    for mode in ("eot", "chosen", "identity"):
        x = photo.clone().requires_grad_(True)
        SelfEnsembleCodec(codec, attack_mode=mode).forward(x).x_hat.square().sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0


def test_chosen_forward_goes_through_the_encoders_choice(codec, odd_photo):
    ens = SelfEnsembleCodec(codec, attack_mode="chosen")
    (t,) = ens.chosen_transforms(odd_photo)
    assert t == int(ens.proxy_costs(odd_photo, fraction=1.0)[0].argmin())
    expected = inverse_transform(codec.forward(apply_transform(odd_photo, t)).x_hat, t)
    assert torch.allclose(ens.forward(odd_photo).x_hat, expected)
    outs = forward_transforms(codec, odd_photo)
    assert torch.allclose(outs[t].x_hat, expected, atol=1e-6)


def test_oriented_output_codes_each_image_in_its_own_orientation(codec, photo):
    """Three images, two sharing an orientation: each reconstruction equals that image's own forward
    in its orientation, undone; the rate holds every image's likelihoods (flattened per image)."""
    x = torch.cat([photo[..., :48, :64], photo[..., 16:64, :64], photo[..., :48, 32:96]])
    chosen = [5, 0, 5]
    out = oriented_output(codec, x, chosen, rate=True)
    for i, t in enumerate(chosen):
        own = codec.forward(apply_transform(x[i : i + 1], t), rate=True)
        assert torch.allclose(out.x_hat[i : i + 1], inverse_transform(own.x_hat, t), atol=1e-6)
        bits = sum(-torch.log2(v).sum() for v in own.likelihoods.values())
        assert torch.allclose(-torch.log2(out.likelihoods["all"][i]).sum(), bits, rtol=1e-5)
    assert oriented_output(codec, x, chosen).likelihoods is None


def test_ensemble_rejects_bad_settings(codec):
    with pytest.raises(ValueError):
        SelfEnsembleCodec(SelfEnsembleCodec(codec))
    with pytest.raises(ValueError):
        SelfEnsembleCodec(codec, criterion="speed")
    with pytest.raises(ValueError):
        SelfEnsembleCodec(codec, top_k=9)


# ----- purification ----------------------------------------------------------------------------
@pytest.mark.parametrize("spec", DEFAULT_PURIFIERS)
def test_purifiers_change_the_image_and_pass_gradients(spec, photo):
    p = parse_purifier(spec)
    y = p(photo)
    assert y.shape == photo.shape and 0 <= y.min() and y.max() <= 1
    assert not torch.equal(y, photo)
    x = photo.clone().requires_grad_(True)
    p(x).sum().backward()
    if p.differentiable:
        assert x.grad.abs().sum() > 0
    else:  # straight-through: the gradient of a sum is all ones
        assert torch.equal(x.grad, torch.ones_like(x))


def test_purifier_definitions(photo):
    jpeg = parse_purifier("jpeg:q80")
    assert torch.equal(jpeg(photo), load_codec("jpeg:q80").roundtrip(photo).x_hat)
    levels = torch.unique(parse_purifier("bits:3")(photo))
    assert len(levels) <= 8 and torch.allclose(levels * 7, (levels * 7).round())
    flat = torch.full((1, 3, 64, 64), 0.5)
    assert torch.allclose(parse_purifier("blur:1.5")(flat), flat)
    assert torch.allclose(parse_purifier("resize:0.5")(flat), flat)
    noise = parse_purifier("noise:4")
    n1 = noise(flat) - flat
    assert n1.std().item() * 255 == pytest.approx(4, rel=0.1)
    assert not torch.equal(noise(flat) - flat, n1)  # fresh draws ...
    assert torch.equal(parse_purifier("noise:4")(flat) - flat, n1)  # ... from a seeded generator
    for bad in ("jpeg:q101", "bits:0", "blur:-1", "resize:2", "median:4", "bits:2.5"):
        with pytest.raises(RobustnicError):
            parse_purifier(bad)


def test_purified_codec_codes_the_purified_image(codec, odd_photo):
    pc = PurifiedCodec(codec, "bits:4")
    purified = parse_purifier("bits:4")(odd_photo)
    coded = pc.roundtrip(odd_photo)
    assert torch.equal(coded.x_hat, codec.roundtrip(purified).x_hat)
    assert torch.equal(codec.decompress(coded.data), coded.x_hat)
    assert pc.name == f"{codec.name}+bits:4" and coded.side_bits == 0
    x = odd_photo.clone().requires_grad_(True)
    pc.forward(x).x_hat.sum().backward()
    assert x.grad.abs().sum() > 0


def test_make_defense_composes_left_to_right(codec, photo):
    d = make_defense(codec, "bits:5+ensemble:rd:proxy:top2:chosen")
    assert isinstance(d, PurifiedCodec) and isinstance(d.codec, SelfEnsembleCodec)
    ens = d.codec
    assert (ens.criterion, ens.search, ens.top_k, ens.attack_mode) == ("rd", "proxy", 2, "chosen")
    coded = d.roundtrip(photo)
    assert coded.side_bits == 3 and coded.x_hat.shape == photo.shape
    assert make_defense(codec, "none") is codec
    assert isinstance(make_defense(codec, "self-ensemble"), SelfEnsembleCodec)
    with pytest.raises(RobustnicError):
        make_defense(codec, "ensemble:fast")


# ----- defense-aware attacks ---------------------------------------------------------------------
def test_attack_defense_keeps_the_worst_mode_per_image(codec, photo):
    x = torch.cat([photo[..., :64, :64], photo[..., :64, 32:]])
    ens = SelfEnsembleCodec(codec, search="proxy", proxy_fraction=1.0)
    result = attack_defense(ens, x, method="pgd", references=("source",), budget="psnr:30", steps=2, seed=0)
    assert set(result.by_mode) == {"chosen/source", "eot", "identity/source"}  # EOT: clean reference only
    assert result.x_adv.shape == x.shape
    for i, row in enumerate(result.rows):
        outs = {mode: rows[i]["psnr-out"] for mode, rows in result.by_mode.items()}
        assert row["psnr-out"] == min(outs.values()) and outs[row["attack-mode"]] == row["psnr-out"]
        assert row["budget-ok"] and row["psnr-in"] >= 30 - 1e-6
        # the row is measured on the ensemble's own bitstream of the worst adversarial image
        coded = ens.roundtrip(result.x_adv[i : i + 1])
        assert row["bpp-adv"] == pytest.approx(coded.bpp)
    plain = attack_defense(codec, x, method="pgd", budget="psnr:30", steps=2)
    assert set(plain.by_mode) == {"plain"} and len(plain.rows) == 2


def test_cli_defend(tmp_path, capsys, photo):
    import json

    from robustnic.cli.main import main
    from robustnic.data.images import save_image

    save_image(photo[..., :64, :64], tmp_path / "a.png")
    args = ["defend", "-m", "bmshj2018-hyperprior:N=8:M=16:random", "-d", "bits:5", "-b", "psnr:35", "--steps", "1",
            "--images", str(tmp_path / "a.png"), "--out", str(tmp_path / "out.json")]
    assert main(args) == 0
    report = json.loads((tmp_path / "out.json").read_text())
    row = report["bits:5@psnr:35"]["rows"]["a"]
    assert row["budget-ok"] and row["attack-mode"] in ("bpda", "identity")
    assert main(args[:4] + ["sepia:3"] + args[5:]) == 2
    assert "unknown purifier" in capsys.readouterr().err
