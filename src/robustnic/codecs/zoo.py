"""One place that turns a name into a codec (as timm's ``create_model``).

Accepted specs (``load_codec(spec)``; the grammar, with its optional ``zoo:``, ``file:``,
``pretrained:``, ``random:`` and ``classical:`` prefixes, is :mod:`robustnic.codecs.spec`)::

    hyperprior-small:q3                  a model robustnic ships (see ``robustnic models``); qK is
                                         CompressAI's quality K (its λ)
    bmshj2018-hyperprior:q3[:mse|:ms-ssim][:pretrained]
                                         CompressAI's pretrained weights (needs internet once)
    bmshj2018-hyperprior:q3:random       CompressAI's widths, random weights (tests)
    bmshj2018-hyperprior:N=8:M=16:random tiny random model (tests)
    path/to/checkpoint.pth.tar           a CompressAI-format checkpoint (architecture inferred)
    file:path/to/model.weights           ... any file name
    mbt2018-mean@path/to/ckpt.pth        ... with the architecture named
    jpeg:q75   webp:q80                  classical baselines through Pillow

A CompressAI model instance is wrapped directly by :class:`LearnedCodec`.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.parse
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from compressai.models.base import CompressionModel

from robustnic.codecs.architectures import ARCHITECTURES, METRICS, get_architecture, infer_architecture, widths_of
from robustnic.codecs.base import Codec
from robustnic.codecs.checkpoint import file_sha256, load_into, read_state_dict
from robustnic.codecs.classical import CLASSICAL_FORMATS, ClassicalCodec
from robustnic.codecs.learned import LearnedCodec
from robustnic.codecs.options import DEFAULT_MODEL
from robustnic.codecs.spec import CodecSpec, parse_codec_spec
from robustnic.errors import CheckpointError, CodecLoadError, LabelDeprecationWarning
from robustnic.utils.runtime import resolve_device

#: Where the shipped models and their manifest live (inside the package, so wheels carry them).
WEIGHTS_DIR = Path(os.environ.get("ROBUSTNIC_WEIGHTS", Path(__file__).resolve().parent.parent / "weights"))


@dataclass
class ShippedModel:
    """One manifest row: a model family trained by ``robustnic train`` at one quality."""

    family: str
    quality: int
    architecture: str
    N: int
    M: int
    metric: str
    file: str
    sha256: str
    info: dict[str, Any]

    @property
    def spec(self) -> str:
        return f"{self.family}:q{self.quality}"


def read_manifest(weights_dir: Path | None = None) -> dict[str, ShippedModel]:
    """The shipped models by spec (``family:qK``); empty if no manifest is present."""
    weights_dir = weights_dir or WEIGHTS_DIR
    path = weights_dir / "manifest.json"
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text())["models"]
    out = {}
    for row in rows:
        m = ShippedModel(
            family=row["family"], quality=int(row["quality"]), architecture=row["architecture"],
            N=int(row["N"]), M=int(row["M"]), metric=row["metric"], file=row["file"],
            sha256=row["sha256"], info=row,
        )
        out[m.spec] = m
    return out


#: Families shipped before robustnic 0.2, whose labels were one below CompressAI's quality (``q2`` was
#: λ = 0.0067, CompressAI's q3). Since 0.2 ``:qK`` means CompressAI's λ for quality K in every family;
#: the old labels of these families still resolve, with a one-line deprecation message, until 0.3.
RELABELED_IN_0_2 = frozenset({
    "factorized-small", "factorized-small-robust", "hyperprior-long", "hyperprior-small", "hyperprior-small-robust",
    "hyperprior-ssim", "joint-small", "mean-small",
})


def resolve_shipped_spec(spec: str, manifest: dict[str, ShippedModel], warn: bool = True) -> str:
    """The manifest key ``spec`` names: itself, a family's middle quality for a bare family name, or
    (with a :class:`LabelDeprecationWarning`, unless ``warn`` is false) the model a pre-0.2 label named
    when that label is not a label of today. A label valid under both conventions (``hyperprior-long:q3``)
    means CompressAI's quality: warning on it would warn on every correct use. Raises
    :class:`CodecLoadError` when nothing matches."""
    family, _, rest = spec.partition(":")
    shipped = sorted(m.quality for m in manifest.values() if m.family == family)
    if not rest and shipped:
        return f"{family}:q{shipped[len(shipped) // 2]}"
    quality = rest.lower().removeprefix("q")
    if family in RELABELED_IN_0_2 and quality.isdigit():
        old, new = int(quality), int(quality) + 1
        current = f"{family}:q{old}"
        if current in manifest:  # a label valid under both conventions means CompressAI's quality
            return current
        if new in shipped:
            if warn:
                warnings.warn(f"{current} is the pre-0.2 label of {family}:q{new} (labels follow CompressAI's "
                              f"qualities since 0.2; old labels stop working in 0.3)", LabelDeprecationWarning,
                              stacklevel=3)
            return f"{family}:q{new}"
    if spec not in manifest:
        raise CodecLoadError(f"no shipped model {spec!r}; shipped: {', '.join(sorted(manifest)) or 'none'}")
    return spec


def load_shipped(spec: str, device: str | torch.device = "cpu", weights_dir: Path | None = None) -> LearnedCodec:
    """Load a shipped model (``family:qK``, K = CompressAI's quality), checking its sha256 against the manifest."""
    weights_dir = weights_dir or WEIGHTS_DIR
    manifest = read_manifest(weights_dir)
    row = manifest[resolve_shipped_spec(spec, manifest)]
    path = weights_dir / row.file
    if not path.is_file():
        raise CodecLoadError(f"shipped model file {path} is missing")
    if file_sha256(path) != row.sha256:
        raise CodecLoadError(f"shipped model file {path} does not match its manifest sha256 (corrupt?)")
    net = get_architecture(row.architecture).build(row.N, row.M)
    load_into(net, read_state_dict(path), str(path))
    return LearnedCodec(net, name=row.spec, quality=row.quality, metric=row.metric, device=device)


def load_checkpoint_codec(
    path: str | os.PathLike, architecture: str | None = None, device: str | torch.device = "cpu",
    quality: int = 0, metric: str = "mse",
) -> LearnedCodec:
    """A codec from a CompressAI-format checkpoint file (weights_only loading, clear mismatch errors)."""
    state_dict = read_state_dict(path)
    try:
        arch = architecture or infer_architecture(state_dict)
        N, M = widths_of(arch, state_dict)
    except KeyError as exc:
        raise CheckpointError(f"{path}: not a CompressAI image model state dict (no key {exc})") from None
    net = get_architecture(arch).build(N, M)
    load_into(net, state_dict, f"{path} (as {arch} N={N} M={M})")
    return LearnedCodec(net, name=f"{arch}@{Path(path).name}", quality=quality, metric=metric, device=device)


def pretrained_url(arch: str, quality: int, metric: str = "mse") -> str:
    """The URL CompressAI's zoo downloads ``arch`` at ``quality`` (trained for ``metric``) from."""
    from compressai.zoo.image import model_urls

    get_architecture(arch).widths(quality)  # validates the architecture and quality
    try:
        return model_urls[arch][metric][quality]
    except KeyError:
        raise CodecLoadError(f"CompressAI has no pretrained {arch} q{quality} for metric {metric!r}") from None


def pretrained_cache_path(arch: str, quality: int, metric: str = "mse") -> Path:
    """Where torch's hub cache keeps those weights: ``$TORCH_HOME/hub/checkpoints/<file name of the URL>``
    (where CompressAI's own ``pretrained=True`` looks too)."""
    url = pretrained_url(arch, quality, metric)
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urllib.parse.urlparse(url).path)


def _download(url: str, path: Path, what: str) -> None:
    """Fetch ``url`` into ``path`` (atomically, as torch.hub does); one-line :class:`CodecLoadError` if offline."""
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=False)
    except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise CodecLoadError(
            f"{what} is not in the torch hub cache ({path}) and could not be downloaded ({reason}). "
            f"Offline? Use a model robustnic ships (e.g. {DEFAULT_MODEL!r}; list: `robustnic models`) "
            f"or a local checkpoint file path."
        ) from None
    finally:
        socket.setdefaulttimeout(old_timeout)


def load_pretrained(
    arch: str, quality: int, metric: str = "mse", device: str | torch.device = "cpu", download: bool = True,
) -> LearnedCodec:
    """CompressAI's own pretrained weights, from torch's hub cache (downloaded there once, as CompressAI's
    zoo does, unless ``download=False``).

    The file is read safely (tensors only) into CompressAI's widths for ``quality``; the codec flags
    its bitstreams as CompressAI zoo streams, so :func:`codec_for_bitstream` finds the same weights
    again. Raises :class:`CodecLoadError` (one line) when the weights are neither cached nor reachable.
    """
    what = f"CompressAI's pretrained {arch} q{quality} ({metric})"
    path = pretrained_cache_path(arch, quality, metric)
    if not path.is_file():
        if not download:
            raise CodecLoadError(f"{what} is not in the torch hub cache ({path})")
        _download(pretrained_url(arch, quality, metric), path, what)
    architecture = get_architecture(arch)
    net = architecture.build(*architecture.widths(quality))
    load_into(net, read_state_dict(path), f"{path} ({what})")
    return LearnedCodec(net, name=f"{arch}:q{quality}:{metric}", quality=quality, metric=metric, device=device,
                        pretrained=True)


def load_codec(spec: str | CodecSpec | CompressionModel | Codec, device: str | torch.device = "cpu") -> Codec:
    """Resolve any codec spec (see :mod:`robustnic.codecs.spec`) into a ready :class:`Codec` on ``device``
    (``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto``; see :func:`robustnic.utils.runtime.resolve_device`)."""
    device = resolve_device(device)
    if isinstance(spec, Codec):
        return spec.to(device)
    if isinstance(spec, CompressionModel):
        return LearnedCodec(spec, device=device)
    parsed = parse_codec_spec(spec)
    if parsed.kind == "classical":
        return ClassicalCodec(parsed.name, parsed.quality)
    if parsed.kind == "file":
        return load_checkpoint_codec(parsed.path, parsed.name, device)
    if parsed.kind == "random":
        arch = get_architecture(parsed.name)
        if parsed.N is not None:
            N, M = parsed.N, parsed.M or parsed.N
        else:
            N, M = arch.widths(parsed.quality or 3)
        name = str(parsed) if parsed.explicit else parsed.text
        return LearnedCodec(arch.build(N, M), name=name, quality=parsed.quality or 0, metric=parsed.metric or "mse",
                            device=device)
    if parsed.kind == "pretrained":
        return load_pretrained(parsed.name, parsed.quality or 3, parsed.metric or "mse", device)
    return load_shipped(_shipped_label(parsed), device)


def _shipped_label(spec: CodecSpec) -> str:
    """``family:qK`` (or the bare family) of a ``zoo`` spec, as the manifest is keyed."""
    return spec.name if spec.quality is None else f"{spec.name}:q{spec.quality}"


def weights_sha256(spec: str | CodecSpec, file_hash: Callable[[Path], str] = file_sha256) -> str | None:
    """sha256 of the weights file a spec names, whatever the file is called: a shipped model's manifest
    hash (the file is checked against it when loaded) or a checkpoint's content (``file_hash(path)``;
    None while the file does not exist). None for specs whose string says everything: classical and
    random codecs, and CompressAI's pretrained weights (their published URL pins the file).
    Raises :class:`CodecLoadError` for a spec that does not parse or names no shipped model."""
    parsed = parse_codec_spec(spec)
    if parsed.kind == "zoo":
        manifest = read_manifest()
        return manifest[resolve_shipped_spec(_shipped_label(parsed), manifest, warn=False)].sha256
    if parsed.kind == "file" and parsed.path is not None and parsed.path.is_file():
        return file_hash(parsed.path)
    return None


def list_models() -> list[dict[str, Any]]:
    """Rows describing every shipped model (for ``robustnic models``)."""
    return [m.info | {"spec": m.spec} for m in read_manifest().values()]


def codec_for_bitstream(data: bytes, device: str | torch.device = "cpu") -> Codec:
    """The codec that wrote ``data``: a classical codec from its header, CompressAI's pretrained model
    the header names (from torch's hub cache, downloaded once if need be), or the shipped model whose
    weight fingerprint the header names. Raises :class:`BitstreamError` when none matches, and
    :class:`CodecLoadError` when CompressAI's weights are neither cached nor reachable (offline)."""
    from robustnic.codecs import container
    from robustnic.errors import BitstreamError

    device = resolve_device(device)
    header, _ = container.unpack(data)
    for fmt, (code, _, _) in CLASSICAL_FORMATS.items():
        if header.codec == code:
            return ClassicalCodec(fmt, header.quality)
    if header.compressai_zoo:
        zoo_model = _zoo_model_of(header)
        codec = load_pretrained(*zoo_model, device=device)
        if codec._model_tag() != header.model:
            raise BitstreamError(
                f"bitstream names CompressAI's pretrained {codec.name} with weight fingerprint {header.model.hex()}, "
                f"but the weights in the torch hub cache ({pretrained_cache_path(*zoo_model)}) have "
                f"{codec.fingerprint}; name the model that wrote it with --model"
            )
        return codec
    for row in read_manifest().values():
        if bytes.fromhex(row.info.get("fingerprint", "")) == header.model:
            return load_shipped(row.spec, device)
    # A stream from before the header flagged zoo models: the named CompressAI model, if already cached.
    try:
        codec = load_pretrained(*_zoo_model_of(header), device=device, download=False)
        if codec._model_tag() == header.model:
            return codec
    except (BitstreamError, CodecLoadError, CheckpointError):
        pass
    raise BitstreamError(
        f"bitstream was written by a model robustnic does not ship (fingerprint {header.model.hex()}); "
        "name it with --model"
    )


def _zoo_model_of(header: Any) -> tuple[str, int, str]:
    """(architecture, quality, metric) of the CompressAI zoo model a container header names, or
    :class:`BitstreamError` if the header cannot name one."""
    from robustnic.errors import BitstreamError

    arch = next((a for a in ARCHITECTURES.values() if a.code == header.codec), None)
    if arch is None or header.metric not in METRICS:
        raise BitstreamError(f"bitstream codec code {header.codec} / metric {header.metric} name no CompressAI model")
    try:
        arch.widths(header.quality)
    except CodecLoadError:
        raise BitstreamError(f"bitstream names {arch.name} quality {header.quality}, which CompressAI does not have") from None
    return arch.name, header.quality, header.metric
