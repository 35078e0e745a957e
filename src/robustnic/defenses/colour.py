"""Colour quantisation purifier: every image redrawn with a palette of K colours.

``quantize:K`` maps each image (8-bit values) to a palette of ``K`` colours chosen for it by median
cut (Pillow's ``Image.quantize``, without dithering), then back to RGB. Unlike ``bits:N``, which
rounds each channel to a fixed grid, the palette adapts to the image: few colours where few are used.
The palette choice has no useful gradient, so attacks go through it straight-through (BPDA).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from robustnic.data.images import to_uint8
from robustnic.defenses.purification import Purifier, register_purifier
from robustnic.errors import RobustnicError


@register_purifier("quantize")
class ColourQuantizePurifier(Purifier):
    """Median-cut palette of ``colors`` colours (2..256) per image, no dithering; straight-through gradient."""

    differentiable = False

    def __init__(self, colors: int = 32):
        if int(colors) != colors or not 2 <= colors <= 256:
            raise RobustnicError(f"palette size must be an integer in 2..256, got {colors}")
        self.colors = int(colors)

    @classmethod
    def parse(cls, value: str) -> Purifier:
        """``32``: the palette size."""
        return cls(cls.read_number(value, integer=True)) if value else cls()

    @property
    def value(self) -> float:
        return self.colors

    def quantize_one(self, image: np.ndarray) -> np.ndarray:
        """An ``(H, W, 3)`` uint8 array drawn with its own median-cut palette of :attr:`colors` colours."""
        paletted = Image.fromarray(image).quantize(
            colors=self.colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
        return np.asarray(paletted.convert("RGB"))

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        out = [torch.from_numpy(self.quantize_one(to_uint8(xi)).copy()).permute(2, 0, 1) for xi in x]
        return torch.stack(out).to(x) / 255.0


__all__ = ["ColourQuantizePurifier"]
