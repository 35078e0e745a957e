"""Differentiable JPEG: a smooth stand-in for JPEG, to attack through a JPEG purifier.

:func:`smooth_jpeg` is baseline JPEG written in torch with the one non-differentiable step made
smooth: RGB -> YCbCr (JFIF, full range), 4:2:0 chroma subsampling (2 x 2 means), level shift, 8 x 8
orthonormal DCT, quantisation with the standard tables (ITU-T T.81 Annex K) scaled to the quality
as libjpeg scales them (Pillow's JPEG), rounding replaced by :func:`soft_round`
(``x - sin(2πx) / 2π``: equal to rounding at integers and half-integers, flat at integers, slope 2
at half-integers, mean slope 1), dequantisation, inverse DCT, chroma upsampling (bilinear, as
libjpeg's "fancy" upsampling), YCbCr -> RGB. Edges are replicated to whole 16 x 16 blocks, as
libjpeg pads. It is not bit-exact (no integer DCT, no 8-bit rounding in between), and ``soft_round``
is only approximately rounding between those points, so its output is close to, not equal to,
Pillow's (tests/test_purifiers.py checks the PSNR between them).

``diffjpeg:qN`` (:class:`DiffJpegPurifier`) is the **real JPEG** purifier, ``jpeg:qN``'s output
exactly (Pillow's encoder and decoder), attacked through this stand-in: the forward value is real
JPEG and the gradient is the smooth stand-in's (BPDA with a differentiable approximation, Athalye et
al., ICML 2018; Shin & Song, "JPEG-resistant adversarial images", 2017), where ``jpeg:qN`` passes the
gradient straight through (the identity). The defense is the same; only the attacker's path differs.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from robustnic.defenses.purification import JpegPurifier, _StraightThrough, register_purifier

#: ITU-T T.81 Annex K.1: luminance quantisation table at quality 50 (row-major, 8 x 8).
LUMA_TABLE = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
#: ITU-T T.81 Annex K.1: chrominance quantisation table at quality 50.
CHROMA_TABLE = (
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
)  # fmt: skip

#: JFIF RGB -> YCbCr (rows Y, Cb, Cr; Cb and Cr offset by 128 on the 0..255 scale).
_RGB_TO_YCBCR = (
    (0.299, 0.587, 0.114),
    (-0.168735892, -0.331264108, 0.5),
    (0.5, -0.418687589, -0.081312411),
)


def quality_table(base: tuple[int, ...], quality: int) -> torch.Tensor:
    """``base`` (8 x 8, quality 50) scaled to ``quality`` (1..100) as libjpeg does for baseline JPEG:
    scale ``5000 / q`` below 50, ``200 - 2q`` from 50 on, entries ``(b * scale + 50) // 100`` kept in 1..255."""
    q = min(max(int(quality), 1), 100)
    scale = 5000 // q if q < 50 else 200 - 2 * q
    table = [min(max((b * scale + 50) // 100, 1), 255) for b in base]
    return torch.tensor(table, dtype=torch.float32).view(8, 8)


@lru_cache(maxsize=1)
def dct_matrix() -> torch.Tensor:
    """The orthonormal 8-point DCT-II matrix ``D`` (rows = frequencies): a block's 2-D DCT is
    ``D @ block @ D.T``, JPEG's forward DCT."""
    k = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.float()


def soft_round(x: torch.Tensor) -> torch.Tensor:
    """Smooth rounding ``x - sin(2πx) / 2π``: exact at integers and half-integers, derivative
    ``1 - cos(2πx)`` (0 at integers, 2 at half-integers, 1 on average)."""
    return x - torch.sin(2 * math.pi * x) / (2 * math.pi)


def _blocks(channel: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` (H, W multiples of 8) -> ``(B, H/8, W/8, 8, 8)`` blocks."""
    b, h, w = channel.shape
    return channel.view(b, h // 8, 8, w // 8, 8).transpose(2, 3)


def _unblocks(blocks: torch.Tensor) -> torch.Tensor:
    b, nh, nw = blocks.shape[:3]
    return blocks.transpose(2, 3).reshape(b, nh * 8, nw * 8)


def _code_channel(channel: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Level shift, DCT, quantise with ``table`` (soft rounding), dequantise, inverse DCT, on 0..255 values."""
    d = dct_matrix().to(channel)
    q = table.to(channel)
    coeffs = d @ _blocks(channel - 128.0) @ d.T
    rebuilt = d.T @ (soft_round(coeffs / q) * q) @ d
    return _unblocks(rebuilt) + 128.0


def smooth_jpeg(x: torch.Tensor, quality: int = 75, subsampling: bool = True) -> torch.Tensor:
    """Differentiable JPEG of ``(B, 3, H, W)`` images in [0, 1] at ``quality`` (module docstring);
    ``subsampling``: 4:2:0 chroma, as Pillow's default. Returns ``(B, 3, H, W)`` clipped to [0, 1]."""
    h, w = x.shape[-2:]
    m = 16 if subsampling else 8
    pad = (0, (-w) % m, 0, (-h) % m)
    rgb = F.pad(x * 255.0, pad, mode="replicate") if any(pad) else x * 255.0
    ycc = torch.einsum("kc,bchw->bkhw", torch.tensor(_RGB_TO_YCBCR).to(x), rgb)
    ycc = ycc + torch.tensor([0.0, 128.0, 128.0]).to(x).view(1, 3, 1, 1)
    luma_q, chroma_q = quality_table(LUMA_TABLE, quality), quality_table(CHROMA_TABLE, quality)
    y = _code_channel(ycc[:, 0], luma_q)
    chroma = F.avg_pool2d(ycc[:, 1:], 2) if subsampling else ycc[:, 1:]
    b, _, ch, cw = chroma.shape
    coded = _code_channel(chroma.reshape(b * 2, ch, cw), chroma_q).view(b, 2, ch, cw)
    if subsampling:
        coded = F.interpolate(coded, scale_factor=2, mode="bilinear", align_corners=False)
    ycc = torch.cat([y[:, None], coded], 1) - torch.tensor([0.0, 128.0, 128.0]).to(x).view(1, 3, 1, 1)
    rgb = torch.einsum("kc,bchw->bkhw", torch.linalg.inv(torch.tensor(_RGB_TO_YCBCR, dtype=torch.float64)).to(x), ycc)
    return (rgb[..., :h, :w] / 255.0).clamp(0, 1)


@register_purifier("diffjpeg")
class DiffJpegPurifier(JpegPurifier):
    """Real JPEG at ``quality`` (Pillow, as ``jpeg:qN``) in the forward; the gradient of
    :func:`smooth_jpeg` in the backward (module docstring)."""

    differentiable = True  # the gradient is smooth_jpeg's, the value Pillow's

    @property
    def name(self) -> str:
        return f"diffjpeg:q{self.jpeg.quality}"

    def smooth(self, x: torch.Tensor) -> torch.Tensor:
        """The smooth stand-in at this quality (:func:`smooth_jpeg`)."""
        return smooth_jpeg(x, self.jpeg.quality)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """:meth:`purify` without the clip of :meth:`Purifier.__call__`: Pillow's values are in [0, 1]
        already, and clipping them would cut the stand-in's gradient wherever JPEG gives 0 or 1."""
        return self.purify(x)

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            real = super().purify(x.detach())
        if not x.requires_grad:
            return real
        return _StraightThrough.apply(self.smooth(x), real)  # Pillow's values, the stand-in's gradient


__all__ = ["CHROMA_TABLE", "DiffJpegPurifier", "LUMA_TABLE", "dct_matrix", "quality_table", "smooth_jpeg", "soft_round"]
