"""The codec interface every tool above this layer uses, blind to the architecture behind it.

Three verbs, as in CompressAI:

* :meth:`Codec.forward` - differentiable reconstruction (and likelihoods for the rate), with a
  selectable quantisation stand-in; what attacks and training differentiate through;
* :meth:`Codec.compress` - image -> container bytes (real entropy coding);
* :meth:`Codec.decompress` - container bytes -> image.

:meth:`Codec.roundtrip` runs the last two and measures rate and time: every bpp and PSNR robustnic
reports comes from it.
"""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from robustnic.codecs import container
from robustnic.codecs.options import STANDINS  # noqa: F401  (re-exported: its historical home)
from robustnic.codecs.transforms import apply_transform, inverse_transform, transformed_size
from robustnic.data.images import check_image_tensor
from robustnic.utils.runtime import resolve_device



@dataclass
class CodecOutput:
    """Result of a differentiable forward: reconstruction, and latent likelihoods when asked."""

    x_hat: torch.Tensor
    likelihoods: dict[str, torch.Tensor] | None = None


@dataclass
class Coded:
    """A real round trip: the bytes, the decoded image and what they cost."""

    data: bytes
    x_hat: torch.Tensor
    num_pixels: int
    payload_bits: int
    side_bits: int
    encode_time: float
    decode_time: float

    @property
    def bpp(self) -> float:
        """Bits per pixel of the entropy-coded payload plus side bits (CompressAI's ``bpp``)."""
        return (self.payload_bits + self.side_bits) / self.num_pixels

    @property
    def bpp_file(self) -> float:
        """Bits per pixel of the whole container file, header included."""
        return len(self.data) * 8 / self.num_pixels


class Codec(ABC):
    """An image codec with a real bitstream. Subclasses implement the ``_encode``/``_decode`` pair.

    Images are float tensors ``(1, 3, H, W)`` in [0, 1] of any size; padding to the codec's
    required multiple happens inside. Instances are callable: ``codec(x)`` is :meth:`forward`.
    """

    #: Short display name, e.g. ``"hyperprior-small:q3"`` or ``"jpeg:q75"``.
    name: str = "codec"
    #: Whether :meth:`forward` has true gradients (classical codecs use straight-through).
    differentiable: bool = False
    #: The container's codec code.
    codec_code: int = container.CODEC_CUSTOM
    quality: int = 0
    metric: str | None = None
    #: Whether the weights are CompressAI's pretrained zoo model, unchanged (flagged in the header, so
    #: a decoder can fetch the same weights: :func:`~robustnic.codecs.zoo.codec_for_bitstream`).
    compressai_pretrained: bool = False
    device: torch.device = torch.device("cpu")

    # ----- what subclasses implement --------------------------------------------------------
    @abstractmethod
    def _encode(self, x: torch.Tensor) -> tuple[list[bytes], tuple[int, ...]]:
        """Entropy-code one already-transformed image; return strings and the latent shape."""

    @abstractmethod
    def _decode(self, strings: list[bytes], shape: tuple[int, ...], size: tuple[int, int]) -> torch.Tensor:
        """Decode strings into a ``(1, 3, *size)`` image (``size`` after the transform)."""

    @abstractmethod
    def forward(self, x: torch.Tensor, standin: str = "none", rate: bool = False) -> CodecOutput:
        """Differentiable reconstruction of ``x`` (``(B, 3, H, W)``).

        ``standin`` replaces quantisation: ``"none"`` (no quantisation, g_s(g_a(x)) as in Chen & Ma),
        ``"noise"`` (additive uniform noise, as in training) or ``"ste"`` (rounding with a
        straight-through gradient). With ``rate=True`` the latent likelihoods are returned too.
        """

    def _model_tag(self) -> bytes:
        """Bytes that identify the exact model in the header (weights fingerprint)."""
        return b"\0\0\0\0"

    def _check_header(self, header: container.Header) -> None:
        """Raise :class:`BitstreamError` if ``header`` was not written by this codec."""
        from robustnic.errors import BitstreamError

        if header.codec != self.codec_code or header.model != self._model_tag():
            raise BitstreamError(
                f"bitstream was written by another codec (codec code {header.codec}, model "
                f"{header.model.hex()}); this is {self.name} (code {self.codec_code}, model "
                f"{self._model_tag().hex()})"
            )

    # ----- the public verbs ---------------------------------------------------------------
    def __call__(self, x: torch.Tensor, standin: str = "none", rate: bool = False) -> CodecOutput:
        return self.forward(x, standin=standin, rate=rate)

    def compress(self, x: torch.Tensor, transform: int = 0) -> bytes:
        """Encode one image into container bytes, after geometric transform ``transform`` (0..7)."""
        x = check_image_tensor(x)
        if x.shape[0] != 1:
            raise ValueError(f"compress takes one image, got a batch of {x.shape[0]}")
        size = tuple(x.shape[-2:])
        strings, shape = self._encode(apply_transform(x.to(self.device), transform))
        header = container.Header(
            codec=self.codec_code, height=size[0], width=size[1], quality=self.quality,
            metric=self.metric, transform=transform, model=self._model_tag(), shape=tuple(shape),
            compressai_zoo=self.compressai_pretrained,
        )
        return container.pack(header, strings)

    def decompress(self, data: bytes, max_pixels: int | None = None) -> torch.Tensor:
        """Decode container bytes into a ``(1, 3, H, W)`` image in [0, 1].

        ``max_pixels`` bounds the declared image size (default: the container's limit), checked
        before anything is decoded.
        """
        from robustnic.errors import BitstreamError

        header, strings = container.unpack(data, max_pixels=max_pixels)
        self._check_header(header)
        size = transformed_size((header.height, header.width), header.transform)
        x_hat = self._decode(strings, header.shape, size)
        if not torch.isfinite(x_hat).all():
            raise BitstreamError("bitstream decodes to NaN/Inf values")
        return inverse_transform(x_hat, header.transform).clamp_(0, 1)

    def roundtrip(self, x: torch.Tensor, transform: int = 0) -> Coded:
        """compress -> bytes -> decompress, with payload bits and times."""
        x = check_image_tensor(x)
        t0 = time.perf_counter()
        data = self.compress(x, transform)
        t1 = time.perf_counter()
        x_hat = self.decompress(data, max_pixels=sys.maxsize)
        t2 = time.perf_counter()
        return Coded(
            data=data, x_hat=x_hat, num_pixels=x.shape[-2] * x.shape[-1], payload_bits=payload_bits(data),
            side_bits=0, encode_time=t1 - t0, decode_time=t2 - t1,
        )

    def to(self, device: str | torch.device) -> "Codec":
        """Move to ``device`` (any name :func:`~robustnic.utils.runtime.resolve_device` takes; returns self)."""
        self.device = resolve_device(device)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def payload_bits(data: bytes) -> int:
    """Bits of the entropy-coded strings inside container bytes (the header is not counted)."""
    _, strings = container.unpack(data, max_pixels=sys.maxsize)
    return 8 * sum(len(s) for s in strings)
