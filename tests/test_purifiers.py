"""The field's non-neural purifiers (median, unsharp, colour quantisation, differentiable JPEG, random
crop / rotation / flip) and the expectation-over-transforms attack of randomised purifiers, on tiny
random models and small photo crops."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from robustnic.codecs import container
from robustnic.codecs.transforms import apply_transform, inverse_transform
from robustnic.data.images import to_uint8
from robustnic.defenses import PURIFIERS, PurifiedCodec, SelfEnsembleCodec, make_defense, parse_purifier
from robustnic.defenses.diffjpeg import CHROMA_TABLE, LUMA_TABLE, quality_table, smooth_jpeg, soft_round
from robustnic.defenses.evaluate import attack_defense
from robustnic.defenses.purification import EOT_DRAWS, RandomizedPurifier
from robustnic.errors import RobustnicError
from robustnic.metrics import psnr
from tests.conftest import tiny_codec

NEW = ("median:3", "unsharp:1", "quantize:16", "diffjpeg:q75", "crop:0.9", "rotate:5", "flip", "flip:4")
RANDOMIZED = ("noise:2", "crop:0.9", "rotate:5", "flip", "flip:4")


@pytest.fixture(scope="module")
def codec():
    return tiny_codec("bmshj2018-hyperprior", seed=1)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def saturated(photo: torch.Tensor) -> torch.Tensor:
    """Four copies of the photo with black and white pixels in it (values at both ends of [0, 1])."""
    x = photo.repeat(4, 1, 1, 1).clone()
    x[..., 10:14, 20:24] = 0.0
    x[..., 30:34, 40:44] = 1.0
    return x


# ----- every purifier ------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", NEW)
def test_purifier_maps_unit_images_to_unit_images_and_changes_a_textured_one(spec, photo):
    x = saturated(photo)
    p = parse_purifier(spec)
    y = p(x, generator=gen(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert 0 <= y.min() and y.max() <= 1
    changed = [not torch.equal(y[i], x[i]) for i in range(4)]
    # a flip may draw the identity for an image; everything else changes each image
    assert any(changed) if p.orientation else all(changed)
    assert p.name == (spec if ":" in spec else f"{spec}:2")
    assert isinstance(p, PURIFIERS[p.kind])


@pytest.mark.parametrize("spec", NEW)
def test_purifier_gradients(spec, photo):
    p = parse_purifier(spec)
    x = photo.clone().requires_grad_(True)
    p(x, generator=gen(0)).mul(torch.linspace(0, 1, x.numel()).view_as(x)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    if not p.differentiable:  # straight-through: the gradient is the output weight itself
        assert torch.equal(x.grad, torch.linspace(0, 1, x.numel()).view_as(x))


def test_bad_values_are_refused():
    for bad in ("median:4", "median:0", "median:2.5", "unsharp:0", "unsharp:1:-1", "quantize:1", "quantize:300",
                "diffjpeg:q101", "crop:1", "crop:0", "rotate:0", "rotate:90", "flip:3", "flip:8", "unsharp:x"):
        with pytest.raises(RobustnicError):
            parse_purifier(bad)


# ----- filters -------------------------------------------------------------------------------------
def test_median_removes_salt_and_pepper(photo):
    smooth = parse_purifier("blur:2")(photo)  # a natural image without fine texture
    noisy = smooth.clone()
    mask = torch.rand(smooth.shape[-2:], generator=gen(0))
    noisy[..., mask < 0.03] = 0.0
    noisy[..., mask > 0.97] = 1.0
    cleaned = parse_purifier("median:3")(noisy)
    assert psnr(smooth, noisy) < 20 and psnr(smooth, cleaned) > psnr(smooth, noisy) + 12
    flat = torch.full((1, 3, 16, 16), 0.5)
    salted = flat.clone()
    salted[..., 3, 4], salted[..., 9, 12] = 1.0, 0.0
    assert torch.equal(parse_purifier("median:3")(salted), flat)  # isolated outliers are gone exactly
    assert torch.equal(parse_purifier("median:1")(salted), salted)


def test_median_gradient_goes_to_the_median_pixel():
    x = torch.tensor([0.1, 0.9, 0.5, 0.2, 0.7, 0.3, 0.8, 0.4, 0.6]).view(1, 1, 3, 3).repeat(1, 3, 1, 1)
    x.requires_grad_(True)
    y = parse_purifier("median:3")(x)
    assert y[0, 0, 1, 1].item() == pytest.approx(0.5)  # the median of the nine values
    y[0, 0, 1, 1].backward()
    expected = torch.zeros_like(x)
    expected[0, 0, 0, 2] = 1.0  # 0.5 sits at row 0, column 2
    assert torch.equal(x.grad, expected)


def test_unsharp_sharpens_an_edge_and_keeps_flat_regions():
    step = torch.cat([torch.full((1, 3, 16, 8), 0.3), torch.full((1, 3, 16, 8), 0.6)], -1)
    y = parse_purifier("unsharp:1")(step)
    assert torch.allclose(y[..., :, :4], step[..., :, :4], atol=1e-4)  # far from the edge: unchanged
    assert y[..., 8, 8].min() > 0.62 and y[..., 8, 7].max() < 0.28  # overshoot on both sides of the edge
    weak, wide = parse_purifier("unsharp:0.5"), parse_purifier("unsharp:1:2")
    assert (weak.amount, weak.sigma, wide.amount, wide.sigma) == (0.5, 1.0, 1.0, 2.0) and wide.name == "unsharp:1:2"
    assert (weak(step) - step).abs().max() < (y - step).abs().max()


# ----- colour quantisation -------------------------------------------------------------------------
def test_quantize_uses_at_most_k_colours_and_more_colours_fit_better(photo):
    errors = []
    for k in (4, 16, 64):
        y = parse_purifier(f"quantize:{k}")(photo)
        colours = torch.unique((y * 255).round().flatten(2).squeeze(0).T, dim=0)
        assert len(colours) <= k
        errors.append(psnr(photo, y))
    assert errors[0] < errors[1] < errors[2]
    assert torch.allclose(y * 255, (y * 255).round(), atol=1e-4)  # 8-bit values


# ----- differentiable JPEG -------------------------------------------------------------------------
def test_quality_tables_are_libjpegs(photo):
    assert torch.equal(quality_table(LUMA_TABLE, 50), torch.tensor(LUMA_TABLE, dtype=torch.float32).view(8, 8))
    assert torch.equal(quality_table(CHROMA_TABLE, 100), torch.ones(8, 8))
    for q in (30, 75, 90):  # the tables Pillow writes into the file (natural order)
        buf = io.BytesIO()
        Image.fromarray(to_uint8(photo)).save(buf, format="JPEG", quality=q)
        tables = Image.open(io.BytesIO(buf.getvalue())).quantization
        assert list(quality_table(LUMA_TABLE, q).flatten().int()) == list(tables[0])
        assert list(quality_table(CHROMA_TABLE, q).flatten().int()) == list(tables[1])


def test_soft_round_is_smooth_rounding():
    k = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0])
    assert torch.allclose(soft_round(k), k) and torch.allclose(soft_round(k + 0.5), k + 0.5)
    x = torch.linspace(-2, 2, 4001, requires_grad=True)
    soft_round(x).sum().backward()
    assert x.grad.mean().item() == pytest.approx(1.0, abs=1e-3)  # mean slope 1 ...
    assert x.grad[2000].item() == pytest.approx(0.0, abs=1e-6)  # ... flat at integers
    assert (soft_round(x) - torch.round(x)).abs().max() <= 0.5 + 1e-6


@pytest.mark.parametrize("quality", [50, 75, 90])
def test_smooth_jpeg_is_close_to_pillows_jpeg(quality, photo, odd_photo):
    """Threshold: 34 dB between the stand-in and Pillow's JPEG (about 35-44 dB measured on these
    crops; soft rounding costs about 6 dB against exact rounding), and the stand-in is closer to
    Pillow's JPEG than the source image is, by at least 3 dB."""
    for x in (photo, odd_photo):
        real = parse_purifier(f"jpeg:q{quality}")(x)
        stand_in = smooth_jpeg(x, quality)
        assert stand_in.shape == x.shape
        assert psnr(real, stand_in) > 34
        assert psnr(real, stand_in) > psnr(real, x) + 3


def test_diffjpeg_is_real_jpeg_with_the_stand_ins_gradient(photo):
    dj, jpeg = parse_purifier("diffjpeg:q75"), parse_purifier("jpeg:q75")
    x = photo.clone().requires_grad_(True)
    y = dj(x)
    assert torch.equal(y.detach(), jpeg(photo))  # the forward is Pillow's JPEG, exactly
    w = torch.randn(photo.shape, generator=gen(0))
    (y * w).sum().backward()
    x2 = photo.clone().requires_grad_(True)
    (smooth_jpeg(x2, 75) * w).sum().backward()
    assert x.grad.abs().sum() > 0 and torch.allclose(x.grad, x2.grad, atol=1e-6)
    assert not torch.allclose(x.grad, w, atol=1e-2)  # not the straight-through (identity) gradient
    # the stand-in's gradient drops what JPEG drops: a checkerboard (the highest DCT frequency, which
    # q75 quantises with a step of 50) hardly reaches the input, where straight-through passes it whole
    r = torch.arange(32)
    checker = ((r[:, None] + r[None, :]) % 2).float().mul(2).sub(1)
    xs = photo[..., :32, :32].clone().requires_grad_(True)
    (dj(xs) * checker).sum().backward()
    assert xs.grad.abs().mean() < 0.2


# ----- randomised purifiers ------------------------------------------------------------------------
@pytest.mark.parametrize("spec", RANDOMIZED)
def test_randomized_purifier_is_reproducible_under_a_seed(spec, photo):
    x = photo.repeat(8, 1, 1, 1)
    p = parse_purifier(spec)
    assert isinstance(p, RandomizedPurifier) and p.randomized
    a, b, c = p(x, generator=gen(3)), p(x, generator=gen(3)), p(x, generator=gen(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # its own generator: fresh draws at every call, the same sequence for the same seed
    first, second = p(x), p(x)
    assert not torch.equal(first, second)
    q = parse_purifier(spec)
    assert torch.equal(q(x), first) and torch.equal(q(x), second)
    q.reseed(0)
    assert torch.equal(q(x), first)
    # one draw per image: identical images in a batch are purified differently
    assert any(not torch.equal(a[0], a[i]) for i in range(1, 8))


def test_rotation_round_trip_keeps_the_geometry(photo):
    rot = parse_purifier("rotate:10")
    x = photo[..., :48, :48]
    y = rot(x.repeat(4, 1, 1, 1), generator=gen(0))
    centre = (slice(16, 32), slice(16, 32))
    for yi in y:  # near the centre a turn and its inverse leave the pixels almost unchanged
        assert psnr(x[..., centre[0], centre[1]], yi[None][..., centre[0], centre[1]]) > 30
    # one turn alone (half of the round trip) moves the image: the round trip is what keeps it
    from robustnic.defenses.randomized import rotation_grid

    turned = torch.nn.functional.grid_sample(x, rotation_grid(torch.tensor([math.radians(10)]), (48, 48)),
                                             padding_mode="reflection", align_corners=False)
    assert psnr(x, turned) < min(psnr(x, yi[None]) for yi in y) - 3


def test_crop_resamples_a_window_and_leaves_the_rest(photo):
    """Changes stay inside one window whose two sides are the same fraction (>= 0.5) of the image's
    (the resampling may leave a window's edge pixel unchanged: allow a pixel either way)."""
    y = parse_purifier("crop:0.5")(photo, generator=gen(1))
    diff = (y - photo).abs().amax(1)[0] > 1e-6
    rows, cols = diff.any(1).nonzero(), diff.any(0).nonzero()
    height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
    assert height < 64 and width < 96  # the window is smaller than the image, the rest untouched
    assert height / 64 >= 0.5 - 1 / 32 and abs(height / 64 - width / 96) <= 2 / 64
    assert psnr(photo, y) > 25


def test_flip_is_signalled_in_the_header_and_undone_by_the_plain_decoder(codec, photo):
    x = photo[..., :32, :48]
    flip = PurifiedCodec(codec, "flip:4")
    assert flip.side_bits == 3 and flip.attack_modes == ("bpda", "eot", "identity")
    twin = parse_purifier("flip:4")  # the same seed: the draws the codec makes
    expected_t = [twin.orientations(1)[0] for _ in range(6)]
    for t in expected_t:
        coded = flip.roundtrip(x)
        assert container.unpack(coded.data)[0].transform == t
        assert torch.equal(codec.decompress(coded.data), coded.x_hat)  # the plain model decodes it ...
        assert torch.equal(coded.x_hat, codec.roundtrip(x, t).x_hat)  # ... in the original orientation
    assert len(set(expected_t)) > 1
    # the forward goes through the same draws, undone
    fwd = PurifiedCodec(codec, "flip:4")
    (t,) = parse_purifier("flip:4").orientations(1)
    assert torch.allclose(fwd.forward(x).x_hat, inverse_transform(codec.forward(apply_transform(x, t)).x_hat, t))
    with pytest.raises(RobustnicError, match="transform field"):
        make_defense(codec, "flip+ensemble")
    with pytest.raises(RobustnicError, match="chooses the transform"):
        make_defense(codec, "ensemble+flip").compress(x)


# ----- expectation over transforms -----------------------------------------------------------------
class Counting:
    """Wraps a randomised purifier's ``transform`` to count the draws (one call draws for a batch)."""

    def __init__(self, purifier: RandomizedPurifier):
        self.calls = 0
        name = "orientations" if purifier.orientation else "transform"  # what a draw calls
        self.inner = getattr(purifier, name)
        setattr(purifier, name, self)

    def __call__(self, *args):
        self.calls += 1
        return self.inner(*args)


@pytest.mark.parametrize("spec", ["crop:0.9", "noise:4", "flip"])
def test_eot_forward_is_the_mean_over_a_fixed_sample_of_eight_draws(spec, codec, photo):
    x = torch.cat([photo[..., :32, :32], photo[..., 32:, 40:72]])
    pc = PurifiedCodec(codec, spec, attack_mode="eot", eot_seed=5)
    assert EOT_DRAWS >= 8 and pc.eot_draws == EOT_DRAWS
    ref, out = pc.forward(x, standin="ste"), pc.forward(x, standin="ste", rate=True)
    assert out.x_hat.shape == (2, 3 * EOT_DRAWS, 32, 32)
    assert torch.equal(ref.x_hat, out.x_hat)  # the same draws at every forward (paired with the reference)
    g = gen(5)  # draw by draw, independently of the EOT code
    bits = torch.zeros(2)
    for k in range(EOT_DRAWS):
        one = pc.forward_draw(x, g, standin="ste", rate=True)
        assert torch.allclose(out.x_hat[:, 3 * k : 3 * k + 3], one.x_hat)
        bits += sum(-torch.log2(v).flatten(1).sum(1) for v in one.likelihoods.values()) / EOT_DRAWS
    g = gen(5)
    draws = [pc.purifier(x, g) for _ in range(EOT_DRAWS)]  # what the eight draws code
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    assert torch.allclose(-torch.log2(out.likelihoods["all"]).sum(1), bits, rtol=1e-4)
    counter = Counting(pc.purifier)
    pc.forward(x)
    assert counter.calls == EOT_DRAWS


def test_eot_gradient_is_the_mean_of_the_draws_gradients(codec, photo):
    x0 = photo[..., :32, :32]
    pc = PurifiedCodec(codec, "rotate:5", attack_mode="eot", eot_seed=2)
    x = x0.clone().requires_grad_(True)
    pc.forward(x).x_hat.square().mean().backward()
    g, expected = gen(2), torch.zeros_like(x0)
    for _ in range(EOT_DRAWS):
        xi = x0.clone().requires_grad_(True)
        pc.forward_draw(xi, g).x_hat.square().mean().backward()
        expected += xi.grad / EOT_DRAWS
    assert torch.allclose(x.grad, expected, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("spec", ["crop:0.9", "rotate:5"])
def test_eot_attack_is_seeded_reproducible_and_uses_eight_draws(spec, codec, photo):
    x = photo[..., :32, :32]

    def run(eot_seed: int = 0, seed: int = 0):
        pc = PurifiedCodec(codec, spec, eot_seed=eot_seed)
        counter = Counting(pc.purifier)
        calls_before = counter.calls
        result = attack_defense(pc, x, method="pgd", modes=("eot",), budget="psnr:30", steps=2, seed=seed)
        return result, counter.calls - calls_before

    first, calls = run()
    again, _ = run()
    assert torch.equal(first.x_adv, again.x_adv) and first.rows[0]["psnr-out"] == again.rows[0]["psnr-out"]
    # the clean reference and 2 steps at least, each forward drawing 8 times (+1 per verifying call)
    assert calls >= 3 * EOT_DRAWS
    other, _ = run(eot_seed=1)
    assert not torch.equal(first.x_adv, other.x_adv)  # the draws matter
    assert first.rows[0]["budget-ok"] and first.rows[0]["attack-mode"] == "eot"


def test_attack_defense_runs_eot_beside_bpda_and_identity(codec, photo):
    x = photo[..., :32, :32]
    result = attack_defense(make_defense(codec, "noise:2"), x, method="pgd", references=("clean", "source"),
                            budget="psnr:30", steps=1, seed=0)
    assert set(result.by_mode) == {"bpda", "bpda/source", "eot", "identity", "identity/source"}
    outs = {mode: rows[0]["psnr-out"] for mode, rows in result.by_mode.items()}
    assert result.rows[0]["psnr-out"] == min(outs.values())


# ----- composition ---------------------------------------------------------------------------------
def test_new_purifiers_compose_with_other_defenses(codec, photo):
    d = make_defense(codec, "median:3+ensemble")
    assert isinstance(d, PurifiedCodec) and isinstance(d.codec, SelfEnsembleCodec) and d.name.endswith("+median:3")
    coded = d.roundtrip(photo)
    assert coded.side_bits == 3 and torch.equal(codec.decompress(coded.data), coded.x_hat)
    chain = make_defense(codec, "crop:0.9+diffjpeg:q80+quantize:64")
    assert [type(c.purifier).__name__ for c in (chain, chain.codec, chain.codec.codec)] == [
        "RandomCropPurifier", "DiffJpegPurifier", "ColourQuantizePurifier"]
    assert chain.attack_modes == ("bpda", "eot", "identity") and chain.codec.attack_modes == ("bpda", "identity")
    x = photo[..., :32, :32].clone().requires_grad_(True)
    chain.with_attack_mode("eot").forward(x).x_hat.sum().backward()
    assert x.grad.abs().sum() > 0
    assert chain.roundtrip(photo).x_hat.shape == photo.shape
    for spec in ("unsharp:0.5:2", "rotate:3", "flip:4"):
        assert make_defense(codec, spec).purifier.name == spec
    assert np.isfinite(psnr(photo, make_defense(codec, "flip").roundtrip(photo).x_hat))
