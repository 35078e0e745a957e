"""The one parser of codec specs: a string -> a :class:`CodecSpec` (what to load, not yet loaded).

:func:`robustnic.codecs.load_codec` loads what it returns, and the benchmark grid fingerprints the
weights it names (:func:`robustnic.codecs.zoo.weights_sha256`), so both read a spec the same way.
As in timm, a spec may start with an explicit kind; without one the kind is inferred (the specs
robustnic always took)::

    explicit                                  bare (inferred)                       kind
    zoo:hyperprior-small:q3                   hyperprior-small:q3, hyperprior-small  a shipped model
    file:runs/x/model.weights                 runs/x/ckpt.pth.tar, an existing file  a checkpoint
    file:mbt2018-mean@ckpt.bin                mbt2018-mean@ckpt.bin                  ... architecture named
    pretrained:bmshj2018-hyperprior:q3:mse    bmshj2018-hyperprior:q3[:ms-ssim][:pretrained]
                                                                                    CompressAI's weights
    random:bmshj2018-hyperprior:N=8:M=16      bmshj2018-hyperprior:N=8:M=16:random  random weights (tests)
    classical:jpeg:q75                        jpeg:q75, webp:80                      Pillow's JPEG/WebP

A bare spec is, in this order: a classical format (``jpeg``, ``webp``); ``ARCH@PATH``; a path (a
known checkpoint suffix ``.pt .pth .tar .ckpt``, a ``/`` in it, or an existing file); an
architecture of :data:`~robustnic.codecs.architectures.ARCHITECTURES` (pretrained unless
``:random``); else a shipped model ``family[:qK]``. Options: ``qK`` or ``K`` (quality), ``mse`` or
``ms-ssim`` (metric), ``N=..`` and ``M=..`` (widths of a random model). Anything else is one
:class:`~robustnic.errors.CodecLoadError` naming the spec. Defenses are not part of a codec spec:
they wrap a loaded codec (:func:`robustnic.defenses.make_defense`, ``jpeg:q90+ensemble``).

This module imports neither torch nor compressai.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from robustnic.codecs.architectures import ARCHITECTURES, METRICS
from robustnic.codecs.options import CLASSICAL_CODECS
from robustnic.errors import CodecLoadError

#: The kinds of codec a spec names, each usable as an explicit prefix (``zoo:...``).
SPEC_KINDS = ("zoo", "file", "pretrained", "random", "classical")
#: Suffixes that make a bare spec a checkpoint path even before the file exists.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".tar", ".ckpt")

_GRAMMAR = ("family[:qK] | PATH | ARCH@PATH | ARCH[:qK][:mse|:ms-ssim][:pretrained] | ARCH[:qK|:N=..:M=..]:random "
            "| jpeg|webp[:qK], optionally prefixed zoo:, file:, pretrained:, random:, classical:")


@dataclass(frozen=True)
class CodecSpec:
    """A parsed codec spec (see the module docstring).

    ``name`` is the shipped family (``zoo``), the architecture (``pretrained``, ``random``, and
    ``file`` when named with ``ARCH@``) or the format (``classical``); ``path`` is set for ``file``
    only; ``N``/``M`` for ``random`` only. ``text`` is the spec as written (stripped; not compared).
    """

    kind: str
    name: str | None = None
    quality: int | None = None
    metric: str | None = None
    path: Path | None = None
    N: int | None = None
    M: int | None = None
    text: str = field(default="", compare=False)

    @property
    def explicit(self) -> bool:
        """Whether the spec was written with its kind as a prefix (``zoo:...``)."""
        return self.text.partition(":")[0].lower() == self.kind and self.text != self.kind

    @property
    def file_backed(self) -> bool:
        """Whether the weights come from a file (a shipped model, a checkpoint, CompressAI's download)."""
        return self.kind in ("zoo", "file", "pretrained")

    def __str__(self) -> str:
        """A spec string that parses back to this spec (bare where that is unambiguous)."""
        q = f":q{self.quality}" if self.quality is not None else ""
        if self.kind == "file":
            return f"file:{self.name}@{self.path}" if self.name else f"file:{self.path}"
        if self.kind == "zoo":
            return f"zoo:{self.name}{q}"
        if self.kind == "classical":
            return f"{self.name}{q}"
        metric = f":{self.metric}" if self.metric else ""
        if self.kind == "random":
            widths = f":N={self.N}" + (f":M={self.M}" if self.M is not None else "") if self.N is not None else ""
            return f"{self.name}{q}{widths}{metric}:random"
        return f"{self.name}{q}{metric}:pretrained"


def parse_codec_spec(spec: str | CodecSpec) -> CodecSpec:
    """Parse a codec spec (see the module docstring); a :class:`CodecSpec` is returned unchanged.

    Raises :class:`~robustnic.errors.CodecLoadError` (one line, naming the spec) when it cannot be
    read. Whether the model exists (a shipped label, a file, a quality CompressAI has) is checked
    when it is loaded.
    """
    if isinstance(spec, CodecSpec):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise CodecLoadError(f"codec spec must be a non-empty string, got {spec!r}")
    text = spec.strip()
    prefix, sep, rest = text.partition(":")
    if sep and prefix.lower() in SPEC_KINDS:
        rest = rest.strip()
        if not rest:
            raise CodecLoadError(f"codec spec {text!r} names nothing after {prefix}:")
        return _PARSERS[prefix.lower()](rest, text)
    head = prefix.lower()
    if head in CLASSICAL_CODECS:
        return _classical(text, text)
    if "@" in text and text.split("@", 1)[0] in ARCHITECTURES:
        return _file(text, text)
    if _looks_like_path(text):
        return _file(text, text)
    if prefix in ARCHITECTURES:
        return _architecture(text, text, None)
    return _zoo(text, text)


def _looks_like_path(text: str) -> bool:
    path = Path(text)
    if path.suffix in CHECKPOINT_SUFFIXES or "/" in text or "\\" in text:
        return True
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name the file system cannot hold
        return False


def _fail(part: str, text: str) -> CodecLoadError:
    return CodecLoadError(f"cannot understand {part!r} in codec spec {text!r} (specs: {_GRAMMAR})")


def _options(parts: list[str], text: str, allowed: set[str]) -> dict[str, object]:
    """Options of a spec: ``quality``, ``metric``, ``source`` (pretrained/random), ``N``, ``M`` -
    each at most once and only where ``allowed``."""
    opts: dict[str, object] = {}

    def put(key: str, value: object, part: str) -> None:
        if key not in allowed:
            raise _fail(part, text)
        if key in opts:
            raise CodecLoadError(f"codec spec {text!r} gives its {key} twice")
        opts[key] = value

    for part in parts:
        low = part.strip().lower()
        if low in METRICS:
            put("metric", low, part)
        elif low in ("pretrained", "random"):
            put("source", low, part)
        elif low.startswith("q") and low[1:].isdigit():
            put("quality", int(low[1:]), part)
        elif low.isdigit():
            put("quality", int(low), part)
        elif low[:2] in ("n=", "m=") and low[2:].isdigit() and int(low[2:]) > 0:
            put(low[0].upper(), int(low[2:]), part)
        else:
            raise _fail(part, text)
    return opts


def _zoo(rest: str, text: str) -> CodecSpec:
    family, _, tail = rest.partition(":")
    if not family.strip():
        raise CodecLoadError(f"codec spec {text!r} names no shipped model")
    opts = _options(tail.split(":") if tail else [], text, {"quality"})
    return CodecSpec("zoo", family.strip(), quality=opts.get("quality"), text=text)  # type: ignore[arg-type]


def _file(rest: str, text: str) -> CodecSpec:
    arch, at, path = rest.partition("@")
    if at and arch in ARCHITECTURES:
        if not path.strip():
            raise CodecLoadError(f"codec spec {text!r} names no checkpoint file after {arch}@")
        return CodecSpec("file", arch, path=Path(path.strip()), text=text)
    return CodecSpec("file", path=Path(rest), text=text)


def _architecture(rest: str, text: str, source: str | None) -> CodecSpec:
    """``ARCH[:options]`` - CompressAI's pretrained weights, or random ones with ``:random``."""
    arch, _, tail = rest.partition(":")
    if arch not in ARCHITECTURES:
        raise CodecLoadError(f"unknown architecture {arch!r} in codec spec {text!r}; choose from {', '.join(ARCHITECTURES)}")
    opts = _options(tail.split(":") if tail else [], text, {"quality", "metric", "source", "N", "M"})
    if source is not None and opts.setdefault("source", source) != source:
        raise CodecLoadError(f"codec spec {text!r} cannot be both {source} and {opts['source']}")
    kind = "random" if opts.get("source") == "random" else "pretrained"
    N, M = opts.get("N"), opts.get("M")
    if kind == "pretrained" and (N is not None or M is not None):
        raise CodecLoadError(f"codec spec {text!r}: N= and M= set the widths of a random model (add :random)")
    if M is not None and N is None:
        raise CodecLoadError(f"codec spec {text!r}: M= needs N=")
    return CodecSpec(kind, arch, quality=opts.get("quality"), metric=opts.get("metric"),  # type: ignore[arg-type]
                     N=N, M=M, text=text)  # type: ignore[arg-type]


def _classical(rest: str, text: str) -> CodecSpec:
    fmt, _, tail = rest.partition(":")
    if fmt.lower() not in CLASSICAL_CODECS:
        raise CodecLoadError(f"unknown classical codec {fmt!r} in codec spec {text!r}; choose from {', '.join(CLASSICAL_CODECS)}")
    quality = _options(tail.split(":") if tail else [], text, {"quality"}).get("quality")
    if quality is not None and not 0 <= quality <= 100:  # type: ignore[operator]
        raise CodecLoadError(f"{fmt.lower()} quality must be in 0..100, got {quality} (codec spec {text!r})")
    return CodecSpec("classical", fmt.lower(), quality=quality, text=text)  # type: ignore[arg-type]


_PARSERS = {
    "zoo": _zoo,
    "file": _file,
    "pretrained": lambda rest, text: _architecture(rest, text, "pretrained"),
    "random": lambda rest, text: _architecture(rest, text, "random"),
    "classical": _classical,
}

__all__ = ["CHECKPOINT_SUFFIXES", "SPEC_KINDS", "CodecSpec", "parse_codec_spec"]
