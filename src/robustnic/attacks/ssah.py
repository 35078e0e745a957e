"""SSAH-style attack: the perturbation confined to one frequency band."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from robustnic.attacks.base import Attack
from robustnic.attacks.registry import register_attack
from robustnic.attacks.shaping import shaped_ascent
from robustnic.errors import RobustnicError

#: The two bands: below or above the Gaussian low-pass's cut-off.
BANDS = ("high", "low")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` with standard deviation ``sigma`` pixels (edges
    replicated; the kernel is cut at 3·sigma and, near the borders of very small images, shrunk to fit)."""
    radius = max(1, math.ceil(3 * sigma))
    radius = min(radius, x.shape[-2] - 1, x.shape[-1] - 1) if min(x.shape[-2:]) > 1 else 0
    if radius == 0:
        return x
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    out = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def band_filter(delta: torch.Tensor, band: str, sigma: float) -> torch.Tensor:
    """``delta`` restricted to a band: its Gaussian low-pass (``"low"``) or the rest (``"high"``)."""
    low = gaussian_blur(delta, sigma)
    return low if band == "low" else delta - low


@register_attack("ssah")
class SSAH(Attack):
    r"""A frequency-band attack after SSAH (Luo et al., 'Frequency-driven Imperceptible Adversarial
    Attack on Semantic Similarity', CVPR 2022) [https://arxiv.org/abs/2203.05151], as
    NIC-RobustBench runs it against codecs: the perturbation lives in one frequency band.

    Distance Measure : the budget's ball; the perturbation is scaled (not clipped) into it.

    The perturbation is ``F(p)``, with ``F`` a Gaussian low-pass of standard deviation ``sigma``
    (``band="low"``) or its complement, identity minus the low-pass (``band="high"``, SSAH's
    choice: high frequencies are the least visible); ``p`` follows the objective's gradient pulled
    back through ``F`` (:func:`~robustnic.attacks.shaping.shaped_ascent`: normalised, cosine-decayed
    steps, the best 8-bit iterate measured with real quantisation).

    Arguments:
        codec (Codec): codec to attack. steps (int): iterations (Default: 100).
        band (str): ``"high"`` or ``"low"`` (Default: ``"high"``).
        sigma (float): standard deviation of the low-pass in pixels; the bands meet (the low-pass
            passes half) at ``0.19 / sigma`` cycles per pixel (Default: 1.5: 0.125).
        alpha (float): initial step as a fraction of the budget radius (Default: 0.2).
        check_every (int): steps between two measurements of the 8-bit iterate (Default: 10).
        Others as :class:`~robustnic.attacks.base.Attack` (budget Default: ``PSNR(40)``).

    Shape:
        - x: :math:`(B, 3, H, W)` in [0, 1]. - output: :math:`(B, 3, H, W)`, 8-bit values.

    Examples::
        >>> atk = SSAH(codec, budget=PSNR(35), band="high", steps=100)
        >>> x_adv = atk(x)
    """

    def __init__(self, codec, steps: int = 100, band: str = "high", sigma: float = 1.5, alpha: float = 0.2,
                 check_every: int = 10, **kwargs):
        if band not in BANDS:
            raise RobustnicError(f"ssah band must be one of {', '.join(BANDS)}, got {band!r}")
        if not float(sigma) > 0:
            raise RobustnicError(f"ssah sigma must be positive, got {sigma!r}")
        super().__init__(codec, steps=steps, **kwargs)
        self.band, self.sigma, self.alpha, self.check_every = band, float(sigma), float(alpha), int(check_every)

    def shape(self, p: torch.Tensor) -> torch.Tensor:
        """The perturbation of parameter ``p``: ``p`` filtered to the band."""
        return band_filter(p, self.band, self.sigma)

    def perturb(self, x, ctx, generator):
        return shaped_ascent(self, x, ctx, generator, self.shape, torch.zeros_like(x), self.alpha, self.check_every)
