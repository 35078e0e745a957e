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

import torch

from robustnic.codecs.base import Codec, Coded, payload_bits
from robustnic.codecs.container import Header
from robustnic.data.images import check_image_tensor


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
