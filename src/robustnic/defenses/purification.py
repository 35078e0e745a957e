"""Input purification baselines: transform the image before coding, hoping to wash the attack out.

The usual pre-processing defenses of the adversarial-examples literature (Guo et al., "Countering
Adversarial Images using Input Transformations", ICLR 2018; Xu et al., "Feature Squeezing", NDSS
2018; Dziugaite et al. 2016 for JPEG), as baselines for the defenses of Chen & Ma (TCSVT 2023).
Each one is a :class:`Purifier`; :class:`PurifiedCodec` composes one with any codec.
Purification is not free: it changes clean images too, and its clean rate-distortion cost (PSNR
of the decoded image against the *original* one, bpp of the purified one) is reported next to
its robustness (``benchmarks/defense_table.py``).

A non-differentiable step (JPEG, bit-depth rounding) passes gradients straight through (BPDA,
Athalye et al., ICML 2018), so an attack that knows the purifier can still go through it.

Specs (:func:`parse_purifier`), each a purifier and a defense of :func:`robustnic.defenses.make_defense`
under the same prefix (``median:3+ensemble``):

==================  ===========================================================================
``jpeg:q90``        JPEG re-encoding (Pillow, 4:2:0), straight-through gradient
``diffjpeg:q90``    the same JPEG, attacked through a differentiable JPEG (:mod:`.diffjpeg`)
``blur:1.0``        Gaussian blur, σ in pixels
``median:3``        median of each 3 x 3 window (:mod:`.filters`)
``unsharp:1.0``     unsharp mask, amount (``unsharp:1.0:2`` also sets σ; :mod:`.filters`)
``bits:5``          bit-depth reduction per channel (feature squeezing)
``quantize:32``     colour quantisation to a 32-colour palette (median cut; :mod:`.colour`)
``resize:0.5``      down-up scaling
``noise:2``         random: Gaussian noise, σ in 8-bit steps
``crop:0.9``        random: crop a window (side ≥ 0.9), resize it up, then back (:mod:`.randomized`)
``rotate:5``        random: rotate by up to ±5°, then back (:mod:`.randomized`)
``flip``            random: flip (``flip:4``, ``flip:8``: more orientations), signalled in the
                    header and undone by every decoder (:mod:`.randomized`)
==================  ===========================================================================

Each purifier registers itself (``@register_purifier("blur")``) and reads its own value
(:meth:`Purifier.parse`).

Randomised purifiers (:class:`RandomizedPurifier`: ``noise``, ``crop``, ``rotate``, ``flip``) draw
from a generator the caller controls (``purifier(x, generator=g)``, one independent draw per image;
by default their own, seeded once by ``seed`` and advanced by each call). Besides going through one
draw (``"bpda"``) and around the purifier (``"identity"``), :class:`PurifiedCodec` attacks them with
an expectation over transforms (``"eot"``, Athalye et al., ICML 2018): the forward averages the
objective over :data:`EOT_DRAWS` draws (:func:`~robustnic.defenses.base.expectation_output`, the
mechanism of the self-ensemble's ``"eot"`` mode), so the attack follows the mean gradient. The
draws are a fixed sample, the same at every forward of an attack (seeded by ``eot_seed``), so the
distortion objective compares each draw of the adversarial image with the same draw of the clean
one; :func:`robustnic.defenses.attack_defense` runs every mode and keeps the worst per image.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Callable, TypeVar

import torch
import torch.nn.functional as F

from robustnic.codecs.base import Codec, CodecOutput
from robustnic.codecs.classical import ClassicalCodec
from robustnic.data.images import check_image_tensor, to_uint8
from robustnic.defenses.base import DefendedCodec, expectation_output, oriented_output
from robustnic.defenses.registry import register_defense
from robustnic.errors import RobustnicError
from robustnic.utils.registry import Registry


class _StraightThrough(torch.autograd.Function):
    """Forward: the purified values exactly; backward: the identity (BPDA)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return y.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad, None


class Purifier(ABC):
    """An image-to-image transform applied before coding: ``(B, 3, H, W) -> (B, 3, H, W)`` in [0, 1]."""

    #: Spec name (``jpeg``, ``blur`` ...), set by :func:`register_purifier`.
    kind: str = ""
    #: Whether :meth:`purify` has true gradients; otherwise :meth:`__call__` passes them straight through.
    differentiable: bool = True
    #: Whether every call draws a random transform (:class:`RandomizedPurifier`; attacked with EOT too).
    randomized: bool = False
    #: Whether the transform is an orientation written into the container header, which every
    #: decoder undoes, rather than a change of the pixels (:class:`PurifiedCodec` codes it so).
    orientation: bool = False

    @abstractmethod
    def purify(self, x: torch.Tensor) -> torch.Tensor:
        """The purified batch (not necessarily differentiable)."""

    @property
    @abstractmethod
    def value(self) -> float:
        """The purifier's one parameter, as written in its spec."""

    @classmethod
    def parse(cls, value: str) -> Purifier:
        """The purifier that ``value`` (the spec after ``kind:``; empty: the defaults) names. This
        reads one number; a purifier whose value is written otherwise overrides it."""
        return cls(cls.read_number(value)) if value else cls()

    @classmethod
    def read_number(cls, value: str, integer: bool = False) -> float:
        """``value`` as a number (an integer if ``integer``), or :class:`RobustnicError` naming the spec."""
        try:
            number = float(value)
        except ValueError:
            raise RobustnicError(f"cannot read the value of purifier {cls.kind}:{value}") from None
        if integer and not number.is_integer():
            raise RobustnicError(f"purifier {cls.kind}:{value} takes an integer")
        return int(number) if integer else number

    @classmethod
    def from_spec(cls, codec: Codec, value: str) -> PurifiedCodec:
        """The defense ``kind:value``: ``codec`` behind this purifier (see :func:`robustnic.defenses.make_defense`)."""
        return PurifiedCodec(codec, cls.parse(value))

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Purify ``x``; gradients flow through, straight-through where :meth:`purify` has none.

        ``generator`` (a CPU generator) supplies a randomised purifier's draws (ignored by the others).
        """
        def purify(t: torch.Tensor) -> torch.Tensor:
            return self.purify(t, generator=generator) if self.randomized else self.purify(t)  # type: ignore[call-arg]

        if self.differentiable:
            return purify(x).clamp(0, 1)
        with torch.no_grad():
            y = purify(x.detach()).clamp(0, 1)
        return _StraightThrough.apply(x, y) if x.requires_grad else y

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.value:g}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value:g})"


class RandomizedPurifier(Purifier):
    """A purifier that draws a random transform at every call, independently for each image.

    The draws come from the ``generator`` passed to the call (the caller's seed: per call, per
    batch) or else from the purifier's own CPU generator, seeded once with ``seed``
    (:meth:`reseed`) and advanced by every call: a run is reproducible, and each call still draws
    afresh. Draws are made on the CPU, so they do not depend on the device of the images.
    Subclasses implement :meth:`transform`.
    """

    randomized = True

    def __init__(self, seed: int = 0):
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the purifier's own generator from ``seed``."""
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def purify(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw of the transform per image of ``x``, from ``generator`` (default: the purifier's own)."""
        return self.transform(x, self.generator if generator is None else generator)

    @abstractmethod
    def transform(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The batch ``x`` transformed, the random parameters of image ``i`` the ``i``-th drawn from
        ``generator``."""

    def orientations(self, n: int, generator: torch.Generator | None = None) -> list[int]:
        """For an :attr:`orientation` purifier: one geometric transform index (0..7,
        :mod:`robustnic.codecs.transforms`) per image, drawn from ``generator`` (default: its own)."""
        raise NotImplementedError(f"{type(self).__name__} changes pixels, not the orientation")


#: Draws of a randomised purifier the ``"eot"`` attack mode averages over (at least 8).
EOT_DRAWS = 8


#: Purifiers by spec name, registered by :func:`register_purifier` (a read-only mapping; the modules
#: of :mod:`robustnic.defenses` are imported when it is first read).
PURIFIERS: Registry[type[Purifier]] = Registry("purifier", package="robustnic.defenses")

P = TypeVar("P", bound=type[Purifier])


def register_purifier(kind: str) -> Callable[[P], P]:
    """Class decorator: register a :class:`Purifier` as ``kind`` (its spec prefix, which becomes its
    ``kind`` attribute), as a purifier and as the defense ``kind:value``."""
    kind = kind.lower()

    def decorate(cls: P) -> P:
        cls.kind = kind
        PURIFIERS.register(kind)(cls)
        return register_defense(kind)(cls)

    return decorate


@register_purifier("jpeg")
class JpegPurifier(Purifier):
    """Re-encode with JPEG at ``quality`` (Pillow, 4:2:0), straight-through gradient (Dziugaite et al. 2016)."""

    differentiable = False

    def __init__(self, quality: int = 90):
        if not 0 <= quality <= 100:
            raise RobustnicError(f"JPEG quality must be in 0..100, got {quality}")
        self.jpeg = ClassicalCodec("jpeg", int(quality))

    @classmethod
    def parse(cls, value: str) -> Purifier:
        """``q90`` or ``90``: the JPEG quality."""
        return cls(cls.read_number(value.removeprefix("q"), integer=True)) if value else cls()

    @property
    def value(self) -> float:
        return self.jpeg.quality

    @property
    def name(self) -> str:
        return f"jpeg:q{self.jpeg.quality}"

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.jpeg.decode_bytes(self.jpeg.encode_array(to_uint8(xi))) for xi in x]).to(x)


@register_purifier("blur")
class BlurPurifier(Purifier):
    """Gaussian blur of standard deviation ``sigma`` pixels, reflect padding (Li & Li, ICCV 2017)."""

    def __init__(self, sigma: float = 1.0):
        if not sigma > 0:
            raise RobustnicError(f"blur sigma must be positive, got {sigma}")
        self.sigma = float(sigma)
        radius = max(1, math.ceil(3 * self.sigma))
        k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / self.sigma) ** 2)
        self.kernel = k / k.sum()

    @property
    def value(self) -> float:
        return self.sigma

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel.to(x)
        r = k.numel() // 2
        # reflect padding needs the pad smaller than the side: fall back to replication on tiny images
        mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
        x = F.pad(x, (r, r, r, r), mode=mode)
        x = F.conv2d(x, k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
        return F.conv2d(x, k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)


@register_purifier("bits")
class BitDepthPurifier(Purifier):
    """Reduce each colour channel to ``bits`` bits ("feature squeezing", Xu et al., NDSS 2018)."""

    differentiable = False

    def __init__(self, bits: int = 5):
        if not 1 <= int(bits) <= 8:
            raise RobustnicError(f"bit depth must be in 1..8, got {bits}")
        self.bits = int(bits)

    @property
    def value(self) -> float:
        return self.bits

    @classmethod
    def parse(cls, value: str) -> Purifier:
        return cls(cls.read_number(value, integer=True)) if value else cls()

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        levels = 2**self.bits - 1
        return torch.round(x.clamp(0, 1) * levels) / levels


@register_purifier("resize")
class ResizePurifier(Purifier):
    """Downscale by ``scale`` then upscale back, bilinear with antialiasing (Guo et al. / Xie et al. 2018)."""

    def __init__(self, scale: float = 0.5):
        if not 0 < scale < 1:
            raise RobustnicError(f"resize scale must be in (0, 1), got {scale}")
        self.scale = float(scale)

    @property
    def value(self) -> float:
        return self.scale

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        small = (max(1, round(h * self.scale)), max(1, round(w * self.scale)))
        y = F.interpolate(x, size=small, mode="bilinear", antialias=True, align_corners=False)
        return F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)


@register_purifier("noise")
class NoisePurifier(RandomizedPurifier):
    """Add Gaussian noise of standard deviation ``sigma`` (in 8-bit steps), then clip to [0, 1].

    Randomised (:class:`RandomizedPurifier`): fresh noise at every call from a seeded generator, so
    a run is reproducible; attacked through one draw or with an expectation over draws.
    """

    def __init__(self, sigma: float = 2.0, seed: int = 0):
        if not sigma > 0:
            raise RobustnicError(f"noise sigma must be positive, got {sigma}")
        self.sigma = float(sigma)
        super().__init__(seed)

    @property
    def value(self) -> float:
        return self.sigma

    def transform(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=generator).to(x)
        return x + noise * (self.sigma / 255.0)


#: The settings the benchmarks compare (mild enough to keep clean quality usable).
DEFAULT_PURIFIERS = ("jpeg:q90", "blur:0.8", "bits:5", "resize:0.75", "noise:2")


def parse_purifier(spec: str | Purifier) -> Purifier:
    """``"jpeg:q90"``, ``"blur:1.0"``, ``"bits:5"``, ``"resize:0.5"``, ``"noise:2"`` (or any registered
    purifier's ``kind:value``) -> a :class:`Purifier`."""
    if isinstance(spec, Purifier):
        return spec
    kind, _, value = str(spec).strip().lower().partition(":")
    return PURIFIERS.lookup(kind).parse(value.strip())


class PurifiedCodec(DefendedCodec):
    """Purify, then code with ``codec``: a :class:`Codec` whose forward an attack can go through.

    Attack modes (:attr:`attack_modes`; :func:`robustnic.defenses.attack_defense` runs them all):
    ``"bpda"`` (through the purifier, straight-through where it has no gradient; a randomised one
    draws once per forward), ``"identity"`` (the wrapped codec alone: the purifier still runs
    before coding) and, for a randomised purifier, ``"eot"``: the mean over ``eot_draws`` draws
    (a fixed sample seeded by ``eot_seed``; module docstring). An :attr:`~Purifier.orientation`
    purifier (``flip``) writes its draw into the container header's transform field, which every
    decoder undoes (3 side bits, as the self-ensemble), so it cannot sit around another defense
    that uses that field.

    >>> codec = PurifiedCodec(load_codec("hyperprior-small:q3"), "jpeg:q90")   # doctest: +SKIP
    >>> coded = codec.roundtrip(x)   # compare coded.x_hat with x for the clean RD cost  # doctest: +SKIP
    """

    attack_modes: tuple[str, ...] = ("bpda", "identity")
    #: The attack modes of a randomised purifier.
    randomized_modes = ("bpda", "eot", "identity")

    def __init__(self, codec: Codec, purifier: str | Purifier, attack_mode: str = "bpda",
                 eot_draws: int = EOT_DRAWS, eot_seed: int = 0):
        self.purifier = parse_purifier(purifier)
        self.defense = self.purifier.name
        super().__init__(codec)
        if self.purifier.randomized:
            self.attack_modes = self.randomized_modes
        if int(eot_draws) < 1:
            raise RobustnicError(f"an expectation over transforms needs at least one draw, got {eot_draws}")
        self.eot_draws, self.eot_seed = int(eot_draws), int(eot_seed)
        if self.purifier.orientation and super().side_bits:
            raise RobustnicError(f"{self.purifier.name} writes the header's transform field, which "
                                 f"{codec.name} already signals: put {self.purifier.kind} after it in the spec")
        self.attack_mode = attack_mode

    @property
    def side_bits(self) -> int:
        """The wrapped codec's side bits, plus the 3-bit transform index of an orientation purifier."""
        return super().side_bits + (3 if self.purifier.orientation else 0)

    def compress(self, x: torch.Tensor, transform: int | None = None) -> bytes:
        """Purify ``x`` then encode it with the wrapped codec (its own transform choice if any); an
        orientation purifier's draw goes into the header instead."""
        x = check_image_tensor(x).to(self.device)
        if self.purifier.orientation:
            if transform is not None:
                raise RobustnicError(f"{self.purifier.name} chooses the transform itself: "
                                     "it cannot sit inside a defense that forces one (the self-ensemble)")
            return self.codec.compress(x, self.purifier.orientations(1)[0])  # type: ignore[attr-defined]
        with torch.no_grad():
            purified = self.purifier(x)
        return self.codec.compress(purified) if transform is None else self.codec.compress(purified, transform)

    def forward(self, x: torch.Tensor, standin: str = "none", rate: bool = False) -> CodecOutput:
        """The wrapped codec's forward on the purified input, as set by :attr:`attack_mode`."""
        if self.attack_mode == "identity":
            return self.codec.forward(x, standin=standin, rate=rate)
        if self.attack_mode == "eot":
            generator = torch.Generator().manual_seed(self.eot_seed)  # the same sample at every forward
            draws = [self.forward_draw(x, generator, standin, rate) for _ in range(self.eot_draws)]
            return expectation_output(draws, rate)
        return self.forward_draw(x, None, standin, rate)

    def forward_draw(self, x: torch.Tensor, generator: torch.Generator | None = None, standin: str = "none",
                     rate: bool = False) -> CodecOutput:
        """One draw: purify ``x`` (a randomised purifier draws from ``generator``, default its own)
        and run the wrapped codec's forward; an orientation is applied, coded and undone per image."""
        if not self.purifier.orientation:
            return self.codec.forward(self.purifier(x, generator), standin=standin, rate=rate)
        chosen = self.purifier.orientations(x.shape[0], generator)  # type: ignore[attr-defined]
        return oriented_output(self.codec, x, chosen, standin=standin, rate=rate)
