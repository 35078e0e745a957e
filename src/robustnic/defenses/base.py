"""What every defense shares: a :class:`~robustnic.codecs.base.Codec` that wraps another codec.

A defended codec keeps the wrapped codec's bitstream: its ``decompress`` is the wrapped codec's
(the container header carries the only thing a defense adds, the geometric transform index), so
a file written with a defense decodes with the plain model too. Because it is a ``Codec``, an
attack from :mod:`robustnic.attacks` runs through it unchanged ("an attack that knows the
defense"): attacks only ever call ``forward``.
"""

from __future__ import annotations

import copy
import time
from typing import Sequence

import torch

from robustnic.codecs.base import Codec, CodecOutput, Coded, payload_bits
from robustnic.codecs.container import Header
from robustnic.codecs.transforms import apply_transform, inverse_transform
from robustnic.data.images import check_image_tensor


def expectation_output(outs: Sequence[CodecOutput], rate: bool = False) -> CodecOutput:
    """One forward output standing for the mean over ``k = len(outs)`` forwards (expectation over
    transforms, EOT): the reconstructions ``(B, 3, H, W)`` **concatenated along the channel axis**
    into ``(B, 3k, H, W)`` and, with ``rate``, every likelihood tensor flattened per image,
    concatenated into one ``(B, n)`` tensor ``"all"`` and raised to the power ``1/k``.

    Any mean of squared differences between two such outputs is then exactly the mean over the k
    forwards of the per-forward loss, and summed log-likelihoods are the mean bits, so the attack
    objectives average over the draws (and their gradient is the mean gradient) with no change to
    them. Used by the self-ensemble's and the randomised purifiers' ``"eot"`` attack modes.
    """
    if not outs:
        raise ValueError("an expectation needs at least one forward output")
    likelihoods = None
    if rate and all(o.likelihoods is not None for o in outs):
        flat = [v.flatten(1) for o in outs for v in o.likelihoods.values()]  # type: ignore[union-attr]
        likelihoods = {"all": torch.cat(flat, dim=1) ** (1.0 / len(outs))}
    return CodecOutput(torch.cat([o.x_hat for o in outs], dim=1), likelihoods)


def oriented_output(codec: Codec, x: torch.Tensor, chosen: Sequence[int], standin: str = "none",
                    rate: bool = False) -> CodecOutput:
    """The codec's differentiable forward with image ``i`` of ``x`` coded in orientation ``chosen[i]``
    (a geometric transform, undone on the reconstruction); images sharing one are batched together.

    With ``rate``, the likelihoods are flattened per image into one ``(B, n)`` tensor ``"all"``
    (latents of different orientations differ in layout); None when the codec gives none.
    """
    x_hat: list[torch.Tensor | None] = [None] * x.shape[0]
    lks: list[torch.Tensor | None] = [None] * x.shape[0]
    for t in sorted(set(chosen)):
        idx = [i for i, c in enumerate(chosen) if c == t]
        out = codec.forward(apply_transform(x[idx], t), standin=standin, rate=rate)
        for j, i in enumerate(idx):
            x_hat[i] = inverse_transform(out.x_hat[j : j + 1], t)
            if out.likelihoods is not None:
                lks[i] = torch.cat([v[j : j + 1].flatten(1) for v in out.likelihoods.values()], 1)
    likelihoods = None
    if rate and all(lk is not None for lk in lks):
        likelihoods = {"all": torch.cat(lks)}  # type: ignore[arg-type]
    return CodecOutput(torch.cat(x_hat), likelihoods)  # type: ignore[arg-type]


class DefendedCodec(Codec):
    """Base class of the defenses: delegates identity, entropy coding and decoding to ``codec``.

    Subclasses override :meth:`compress` (what the encoder does differently) and :meth:`forward`
    (what an attack that knows the defense differentiates through). :attr:`side_bits` counts
    what the defense signals besides the wrapped codec's payload (added to ``Coded.bpp``).
    """

    #: Short name of the defense, appended to the wrapped codec's name.
    defense: str = "defense"
    #: The ways :meth:`forward` can be attacked (the first is the default); "identity" ignores the
    #: defense (the wrapped codec's forward: an attacker who does not know it).
    attack_modes: tuple[str, ...] = ("identity",)

    def __init__(self, codec: Codec):
        if not isinstance(codec, Codec):
            raise TypeError(f"a defense wraps a Codec, got {type(codec).__name__}")
        self.codec = codec
        self.name = f"{codec.name}+{self.defense}"
        self.codec_code, self.quality, self.metric = codec.codec_code, codec.quality, codec.metric
        self.differentiable = codec.differentiable
        self.device = codec.device

    @property
    def attack_mode(self) -> str:
        return self.__dict__.get("_attack_mode", self.attack_modes[0])

    @attack_mode.setter
    def attack_mode(self, mode: str) -> None:
        if mode not in self.attack_modes:
            raise ValueError(f"unknown attack mode {mode!r} for {type(self).__name__}; choose from {self.attack_modes}")
        self._attack_mode = mode

    def with_attack_mode(self, mode: str) -> "DefendedCodec":
        """A shallow copy whose :meth:`forward` is attacked in ``mode`` (same wrapped codec)."""
        other = copy.copy(self)
        other.attack_mode = mode
        return other

    @property
    def side_bits(self) -> int:
        """Bits per image signalled outside the wrapped codec's payload (the wrapped ones included)."""
        return int(getattr(self.codec, "side_bits", 0))

    # ----- identity and entropy coding: the wrapped codec's --------------------------------
    def _model_tag(self) -> bytes:
        return self.codec._model_tag()

    def _check_header(self, header: Header) -> None:
        self.codec._check_header(header)

    def _encode(self, x: torch.Tensor) -> tuple[list[bytes], tuple[int, ...]]:
        return self.codec._encode(x)

    def _decode(self, strings: list[bytes], shape: tuple[int, ...], size: tuple[int, int]) -> torch.Tensor:
        return self.codec._decode(strings, shape, size)

    def to(self, device: str | torch.device) -> "DefendedCodec":
        self.codec.to(device)
        self.device = self.codec.device
        return self

    # ----- the public verbs --------------------------------------------------------------
    def compress(self, x: torch.Tensor, transform: int | None = None) -> bytes:
        """Encode one image; ``transform`` forces a geometric transform (default: the defense's choice)."""
        return self.codec.compress(x, 0 if transform is None else transform)

    def decompress(self, data: bytes) -> torch.Tensor:
        """Decode with the wrapped codec (the header's transform is undone there)."""
        return self.codec.decompress(data)

    def roundtrip(self, x: torch.Tensor, transform: int | None = None) -> Coded:
        """compress -> bytes -> decompress with times; ``side_bits`` counts what the defense signals."""
        x = check_image_tensor(x)
        t0 = time.perf_counter()
        data = self.compress(x, transform)
        t1 = time.perf_counter()
        x_hat = self.decompress(data)
        t2 = time.perf_counter()
        return Coded(
            data=data, x_hat=x_hat, num_pixels=x.shape[-2] * x.shape[-1], payload_bits=payload_bits(data),
            side_bits=self.side_bits, encode_time=t1 - t0, decode_time=t2 - t1,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.codec!r})"
