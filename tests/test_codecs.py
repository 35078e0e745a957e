"""The codec layer: every architecture, real bitstreams, the container, odd sizes, transforms."""

from __future__ import annotations

import pytest
import torch

from robustnic.codecs import ARCHITECTURES, ClassicalCodec, apply_transform, container, inverse_transform, load_codec
from robustnic.codecs.checkpoint import file_sha256
from robustnic.codecs.zoo import WEIGHTS_DIR, read_manifest
from robustnic.data.photos import bundled_photos
from robustnic.errors import BitstreamError, CodecLoadError
from robustnic.metrics import psnr
from tests.conftest import tiny_codec


@pytest.fixture(scope="module")
def odd_large() -> torch.Tensor:
    """A 333x517 crop: neither side divisible by 64 (nor by 2)."""
    return bundled_photos(["china"], crop=(333, 517))["china"]


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_architecture_round_trips_odd_sizes(arch, odd_large):
    codec = tiny_codec(arch)
    coded = codec.roundtrip(odd_large)
    assert coded.x_hat.shape == odd_large.shape
    # bpp counts the entropy-coded strings only, counted here from the container itself
    _, strings = container.unpack(coded.data)
    assert coded.payload_bits == 8 * sum(len(s) for s in strings) > 0
    assert coded.bpp == pytest.approx(coded.payload_bits / (333 * 517))
    assert len(coded.data) * 8 > coded.payload_bits  # the header is there, but not in bpp
    # decoding is deterministic and the codec's differentiable forward keeps the shape
    assert torch.equal(codec.decompress(coded.data), coded.x_hat)
    assert codec(odd_large).x_hat.shape == odd_large.shape


@pytest.mark.parametrize("arch", ["bmshj2018-hyperprior", "mbt2018-mean", "bmshj2018-factorized"])
def test_ste_standin_matches_the_real_decoder(arch, photo):
    codec = tiny_codec(arch)
    real = codec.roundtrip(photo).x_hat
    with torch.no_grad():
        ste = codec(photo, standin="ste").x_hat.clamp(0, 1)
    assert (ste - real).abs().max() < 1e-3


def test_standins_differ_and_rate_gives_likelihoods(tiny, photo):
    with torch.no_grad():
        none = tiny(photo, standin="none")
        noisy = tiny(photo, standin="noise", rate=True)
    assert none.likelihoods is None
    assert set(noisy.likelihoods) == {"y", "z"}
    assert not torch.equal(none.x_hat, noisy.x_hat)
    assert not tiny.net.training  # the stand-in context restores eval mode
    with pytest.raises(ValueError):
        tiny(photo, standin="magic")


def test_gradients_reach_the_input(tiny, photo):
    x = photo.clone().requires_grad_(True)
    tiny(x, standin="ste", rate=True).x_hat.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny.net.parameters())  # frozen weights


def test_file_round_trip_equals_in_memory(tiny, photo, tmp_path):
    coded = tiny.roundtrip(photo)
    path = tmp_path / "x.rnic"
    path.write_bytes(tiny.compress(photo))
    assert torch.equal(tiny.decompress(path.read_bytes()), coded.x_hat)


@pytest.mark.parametrize("t", range(8))
def test_transform_index_round_trips(tiny, odd_photo, t):
    data = tiny.compress(odd_photo, transform=t)
    decoded = tiny.decompress(data)
    assert decoded.shape == odd_photo.shape
    direct = tiny.roundtrip(apply_transform(odd_photo, t)).x_hat
    assert torch.equal(decoded, inverse_transform(direct, t))
    assert torch.equal(inverse_transform(apply_transform(odd_photo, t), t), odd_photo)


def test_wrong_model_truncation_and_corruption_are_clear_errors(photo):
    a, b = tiny_codec(seed=0), tiny_codec(seed=1)
    data = a.compress(photo)
    with pytest.raises(BitstreamError, match="another codec"):
        b.decompress(data)
    with pytest.raises(BitstreamError, match="checksum|truncated"):
        a.decompress(data[:-7])
    corrupted = bytearray(data)
    corrupted[len(data) // 2] ^= 0x10
    with pytest.raises(BitstreamError, match="checksum"):
        a.decompress(bytes(corrupted))
    with pytest.raises(BitstreamError, match="magic"):
        a.decompress(b"not a bitstream at all")
    with pytest.raises(BitstreamError):
        load_codec("jpeg:q50").decompress(data)


def test_classical_codecs_rate_grows_with_quality(odd_photo):
    low, high = ClassicalCodec("jpeg", 20).roundtrip(odd_photo), ClassicalCodec("jpeg", 90).roundtrip(odd_photo)
    assert low.bpp < high.bpp
    assert psnr(odd_photo, low.x_hat) < psnr(odd_photo, high.x_hat)
    webp = load_codec("webp:q60")
    assert webp.roundtrip(odd_photo).x_hat.shape == odd_photo.shape
    x = odd_photo.clone().requires_grad_(True)
    webp(x).x_hat.sum().backward()  # straight-through gradient
    assert torch.allclose(x.grad, torch.ones_like(x))


def test_every_manifest_row_ships_its_file():
    """A manifest row without its weights (or with other weights) breaks `make eval` for everyone."""
    manifest = read_manifest()
    assert manifest
    for spec, row in manifest.items():
        path = WEIGHTS_DIR / row.file
        assert path.is_file(), f"{spec}: {row.file} is not shipped"
        assert file_sha256(path) == row.sha256, f"{spec}: {row.file} does not match its sha256"
    listed = {row.file for row in manifest.values()}
    stray = {p.relative_to(WEIGHTS_DIR).as_posix() for p in WEIGHTS_DIR.rglob("*.pt")} - listed
    assert not stray, f"weights without a manifest row: {sorted(stray)}"


def test_quality_labels_are_compressai_lambdas():
    """``family:qK`` is trained at CompressAI's λ for quality K, in every shipped family."""
    from robustnic.codecs.architectures import LAMBDAS

    for spec, row in read_manifest().items():
        assert row.info["lambda"] == pytest.approx(LAMBDAS[row.metric][row.quality]), spec


def test_pre_0_2_labels_resolve_with_one_deprecation_message():
    import warnings

    from robustnic.codecs.zoo import LabelDeprecationWarning, ShippedModel, resolve_shipped_spec

    def row(family: str, q: int) -> ShippedModel:
        return ShippedModel(family, q, "bmshj2018-hyperprior", 64, 96, "mse", "f", "s", {"lambda": q / 100})

    manifest = {r.spec: r for r in [row("hyperprior-small", 3), row("hyperprior-long", 3), row("hyperprior-long", 4),
                                      row("brand-new", 2)]}
    with pytest.warns(LabelDeprecationWarning, match="pre-0.2 label of hyperprior-small:q3") as record:
        assert resolve_shipped_spec("hyperprior-small:q2", manifest) == "hyperprior-small:q3"
    assert len(record) == 1 and "\n" not in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # a label that exists under both conventions means CompressAI's quality, silently
        assert resolve_shipped_spec("hyperprior-long:q3", manifest) == "hyperprior-long:q3"
        assert resolve_shipped_spec("hyperprior-long:q4", manifest) == "hyperprior-long:q4"
        assert resolve_shipped_spec("hyperprior-small:q3", manifest) == "hyperprior-small:q3"
        assert resolve_shipped_spec("hyperprior-long", manifest) == "hyperprior-long:q4"
        with pytest.raises(CodecLoadError, match="no shipped model"):
            resolve_shipped_spec("brand-new:q1", manifest)  # families new in 0.2 have no old labels
    with pytest.warns(LabelDeprecationWarning):
        codec = load_codec("hyperprior-small:q2")
    assert codec.name == "hyperprior-small:q3" and codec.quality == 3


def test_spec_errors_are_clear():
    with pytest.raises(CodecLoadError, match="no shipped model"):
        load_codec("no-such-model:q1")
    with pytest.raises(CodecLoadError, match="cannot understand"):
        load_codec("bmshj2018-hyperprior:q2:banana")
    with pytest.raises(CodecLoadError, match="no quality"):
        load_codec("cheng2020-anchor:q8:random")


def test_pretrained_offline_fails_fast_and_names_the_alternative(monkeypatch):
    import compressai.zoo.image as zoo_image

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(zoo_image, "load_state_dict_from_url", offline)
    with pytest.raises(CodecLoadError, match="Offline.*hyperprior-small"):
        load_codec("bmshj2018-hyperprior:q2:pretrained")


def test_cli_prints_an_old_label_deprecation_as_one_line(tmp_path, photo, capsys):
    from robustnic.cli.main import main
    from robustnic.data.images import save_image

    save_image(photo, tmp_path / "x.png")
    assert main(["compress", str(tmp_path / "x.png"), "-m", "hyperprior-small:q2", "-o", str(tmp_path / "x.rnic")]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == ["robustnic: warning: hyperprior-small:q2 is the pre-0.2 label of hyperprior-small:q3 (labels follow "
                   "CompressAI's qualities since 0.2; old labels stop working in 0.3)"]


# ----- codec specs: one parser for loading and fingerprints ---------------------------------------
@pytest.mark.parametrize("text, kind, fields", [
    ("hyperprior-small:q3", "zoo", {"name": "hyperprior-small", "quality": 3}),
    ("hyperprior-small", "zoo", {"name": "hyperprior-small", "quality": None}),
    ("zoo:hyperprior-long:6", "zoo", {"name": "hyperprior-long", "quality": 6}),
    ("runs/x/ckpt.pth.tar", "file", {"name": None, "path": "runs/x/ckpt.pth.tar"}),
    ("runs/x/model.weights", "file", {"path": "runs/x/model.weights"}),
    ("mbt2018-mean@ckpt.bin", "file", {"name": "mbt2018-mean", "path": "ckpt.bin"}),
    ("file:model.weights", "file", {"name": None, "path": "model.weights"}),
    ("file:cheng2020-anchor@model", "file", {"name": "cheng2020-anchor", "path": "model"}),
    ("bmshj2018-hyperprior:q3", "pretrained", {"name": "bmshj2018-hyperprior", "quality": 3, "metric": None}),
    ("mbt2018:Q4:ms-ssim:pretrained", "pretrained", {"name": "mbt2018", "quality": 4, "metric": "ms-ssim"}),
    ("pretrained:bmshj2018-factorized:2:mse", "pretrained", {"quality": 2, "metric": "mse"}),
    ("bmshj2018-hyperprior:N=8:M=16:random", "random", {"N": 8, "M": 16, "quality": None}),
    ("random:mbt2018-mean:q2", "random", {"name": "mbt2018-mean", "quality": 2, "N": None}),
    ("jpeg:q75", "classical", {"name": "jpeg", "quality": 75}),
    (" WEBP:80 ", "classical", {"name": "webp", "quality": 80}),
    ("classical:jpeg", "classical", {"name": "jpeg", "quality": None}),
])
def test_every_spec_form_parses(text, kind, fields):
    from pathlib import Path

    from robustnic.codecs import parse_codec_spec

    spec = parse_codec_spec(text)
    assert spec.kind == kind and spec.text == text.strip()
    for key, value in fields.items():
        assert getattr(spec, key) == (Path(value) if key == "path" else value), key
    assert parse_codec_spec(str(spec)) == spec  # the canonical string reads back to the same spec
    assert spec.explicit == text.strip().lower().startswith(f"{kind}:")


def test_explicit_prefixes_load_what_bare_specs_load(tmp_path, photo):
    """``classical:``, ``random:`` and ``file:`` give the codec their bare form gives (same bytes)."""
    assert load_codec("classical:jpeg:q60").compress(photo) == load_codec("jpeg:q60").compress(photo)
    torch.manual_seed(0)
    bare = load_codec("bmshj2018-hyperprior:N=8:M=16:random")
    torch.manual_seed(0)
    explicit = load_codec("random:bmshj2018-hyperprior:N=8:M=16")
    assert explicit.name == "bmshj2018-hyperprior:N=8:M=16:random" and bare.name == explicit.name
    assert explicit.compress(photo) == bare.compress(photo)
    torch.save(bare.net.state_dict(), tmp_path / "model.weights")
    for spec in (str(tmp_path / "model.weights"), f"file:{tmp_path / 'model.weights'}",
                 f"bmshj2018-hyperprior@{tmp_path / 'model.weights'}"):
        assert load_codec(spec).fingerprint == bare.fingerprint, spec


def test_a_checkpoint_with_any_suffix_is_fingerprinted_by_its_content(tmp_path):
    """A grid keys rows on model fingerprints: a checkpoint named ``model.weights`` must get one, and
    a new one when its weights change (else the grid reuses rows of the old weights)."""
    import os

    from robustnic.studies.jobs import model_fingerprint

    path = tmp_path / "model.weights"
    torch.save(tiny_codec(seed=0).net.state_dict(), path)
    specs = [str(path), f"file:{path}", f"bmshj2018-hyperprior@{path}"]
    first = {model_fingerprint(s) for s in specs}
    assert first == {file_sha256(path)}
    torch.save(tiny_codec(seed=1).net.state_dict(), path)  # same size, other weights
    st = path.stat()  # the hash cache keys on mtime: make sure the rewrite is seen as one even on coarse clocks
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    second = {model_fingerprint(s) for s in specs}
    assert second == {file_sha256(path)} and second != first
    assert model_fingerprint(f"file:{tmp_path / 'missing.weights'}") is None


def test_shipped_specs_keep_their_fingerprints():
    """Grid stores key on fingerprints: a shipped label's is its manifest sha256, as before; a bare
    family or a pre-0.2 label gets the model it loads (silently: loading it warns once)."""
    import warnings

    from robustnic.studies.jobs import model_fingerprint

    manifest = read_manifest()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for spec, row in manifest.items():
            assert model_fingerprint(spec) == model_fingerprint(f"zoo:{spec}") == row.sha256
        assert model_fingerprint("hyperprior-small:q2") == manifest["hyperprior-small:q3"].sha256
    for spec in ("jpeg:q75", "jpeg:match", "bmshj2018-hyperprior:N=8:M=16:random", "bmshj2018-hyperprior:q3",
                 "no-such-model:q1"):
        assert model_fingerprint(spec) is None, spec


@pytest.mark.parametrize("text, message", [
    ("", "non-empty string"),
    ("zoo:", "names nothing after zoo:"),
    ("jpeg:q101", "quality must be in 0..100"),
    ("jpeg:ms-ssim", "cannot understand 'ms-ssim' in codec spec 'jpeg:ms-ssim'"),
    ("classical:png:q3", "unknown classical codec 'png'"),
    ("pretrained:resnet50", "unknown architecture 'resnet50'"),
    ("random:mbt2018:pretrained", "cannot be both random and pretrained"),
    ("bmshj2018-hyperprior:N=8", r"add :random"),
    ("bmshj2018-hyperprior:M=8:random", "M= needs N="),
    ("hyperprior-small:q3:q4", "gives its quality twice"),
    ("hyperprior-small:mse", "cannot understand 'mse'"),
    ("mbt2018-mean@", "names no checkpoint file"),
])
def test_a_bad_spec_is_one_clear_error(text, message):
    from robustnic.codecs import parse_codec_spec

    with pytest.raises(CodecLoadError, match=message) as info:
        parse_codec_spec(text)
    assert "\n" not in str(info.value)
    with pytest.raises(CodecLoadError, match=message):
        load_codec(text)


def test_spec_parser_imports_no_torch_and_knows_every_classical_codec():
    import subprocess
    import sys

    from robustnic.codecs.classical import CLASSICAL_FORMATS
    from robustnic.codecs.options import CLASSICAL_CODECS

    assert set(CLASSICAL_CODECS) == set(CLASSICAL_FORMATS)
    code = ("import sys; from robustnic.codecs import parse_codec_spec; parse_codec_spec('jpeg:q5'); "
            "print(sorted(m for m in ('torch', 'compressai') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
