"""Spatial-filter purifiers: median blur and unsharp masking (both differentiable).

* ``median:K`` - the median of each K x K window, per channel, edges replicated (Xu et al.,
  "Feature Squeezing", NDSS 2018, whose median smoothing removes isolated outliers such as
  salt-and-pepper noise). Its gradient is the true one: each output pixel passes its gradient to the
  input pixel that is its window's median.
* ``unsharp:AMOUNT[:SIGMA]`` - unsharp masking, ``x + AMOUNT * (x - blur_SIGMA(x))`` (σ default
  1 pixel), then clipped to [0, 1]: it sharpens, the opposite of a blur, and is one of the usual
  pre-processing defenses benchmarked against learned codecs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robustnic.defenses.purification import BlurPurifier, Purifier, register_purifier
from robustnic.errors import RobustnicError


@register_purifier("median")
class MedianPurifier(Purifier):
    """The median of each ``size`` x ``size`` window (``size`` odd), per channel, edges replicated."""

    def __init__(self, size: int = 3):
        if int(size) != size or size < 1 or size % 2 == 0:
            raise RobustnicError(f"median window must be an odd positive integer, got {size}")
        self.size = int(size)

    @classmethod
    def parse(cls, value: str) -> Purifier:
        """``3``: the window side (odd)."""
        return cls(cls.read_number(value, integer=True)) if value else cls()

    @property
    def value(self) -> float:
        return self.size

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        r = self.size // 2
        if r == 0:
            return x
        windows = F.pad(x, (r, r, r, r), mode="replicate").unfold(2, self.size, 1).unfold(3, self.size, 1)
        # an odd count: the median is one of the window's values, and its gradient goes to that pixel
        return windows.flatten(-2).median(dim=-1).values


@register_purifier("unsharp")
class UnsharpPurifier(Purifier):
    """Unsharp mask: ``x + amount * (x - gaussian_blur(x, sigma))``, clipped to [0, 1] by the call."""

    def __init__(self, amount: float = 1.0, sigma: float = 1.0):
        if not amount > 0:
            raise RobustnicError(f"unsharp amount must be positive, got {amount}")
        self.amount = float(amount)
        self.blur = BlurPurifier(sigma)  # checks sigma

    @classmethod
    def parse(cls, value: str) -> Purifier:
        """``1.0`` (amount) or ``1.0:2`` (amount and σ in pixels)."""
        if not value:
            return cls()
        amount, _, sigma = value.partition(":")
        return cls(cls.read_number(amount), cls.read_number(sigma)) if sigma else cls(cls.read_number(amount))

    @property
    def sigma(self) -> float:
        return self.blur.sigma

    @property
    def value(self) -> float:
        return self.amount

    @property
    def name(self) -> str:
        return f"unsharp:{self.amount:g}" + ("" if self.sigma == 1.0 else f":{self.sigma:g}")

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.amount * (x - self.blur.purify(x))


__all__ = ["MedianPurifier", "UnsharpPurifier"]
