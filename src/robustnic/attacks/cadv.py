"""cAdv-style attack: a smooth colour perturbation (a coarse colour-offset field, upsampled)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from robustnic.attacks.base import Attack
from robustnic.attacks.registry import register_attack
from robustnic.attacks.shaping import shaped_ascent
from robustnic.errors import RobustnicError

#: RGB change per unit of Cb and Cr (columns of the inverse of BT.601 full range): luma unchanged.
_CHROMA_TO_RGB = ((0.0, 1.402), (-0.344136286, -0.714136286), (1.772, 0.0))


def color_field(field: torch.Tensor, size: tuple[int, int], chroma: bool = False) -> torch.Tensor:
    """The RGB perturbation ``(B, 3, H, W)`` of a coarse field ``(B, 3 or 2, h, w)`` upsampled
    bilinearly to ``size``: an RGB offset per pixel, or with ``chroma`` a (Cb, Cr) offset that
    leaves the luma (BT.601) unchanged."""
    up = F.interpolate(field, size=size, mode="bilinear", align_corners=False)
    if not chroma:
        return up
    m = torch.tensor(_CHROMA_TO_RGB, dtype=up.dtype, device=up.device)
    return torch.einsum("kc,bchw->bkhw", m, up)


@register_attack("cadv")
class CAdv(Attack):
    r"""A smooth colour attack after cAdv (Bhattad et al., 'Unrestricted Adversarial Examples via
    Semantic Manipulation', ICLR 2020) [https://arxiv.org/abs/1904.06347], as NIC-RobustBench runs
    it against codecs: the image is recoloured smoothly instead of being sprinkled with noise.

    Distance Measure : the budget's ball; the perturbation is scaled (not clipped) into it.

    The perturbation is a colour-offset field on a coarse grid of one value per ``cell`` x ``cell``
    pixels and channel, upsampled bilinearly (:func:`color_field`): it changes colours slowly
    across the image, with no edges or texture of its own. With ``chroma`` only the chroma (Cb,
    Cr) moves and the luma stays as it is. The field follows the objective's gradient pulled back
    through the upsampling (:func:`~robustnic.attacks.shaping.shaped_ascent`).

    Arguments:
        codec (Codec): codec to attack. steps (int): iterations (Default: 100).
        cell (int): pixels per field value along each side (Default: 16).
        chroma (bool): move the chroma only (Default: False: all three channels).
        alpha (float): initial step as a fraction of the budget radius (Default: 0.2).
        check_every (int): steps between two measurements of the 8-bit iterate (Default: 10).
        Others as :class:`~robustnic.attacks.base.Attack` (budget Default: ``PSNR(40)``).

    Shape:
        - x: :math:`(B, 3, H, W)` in [0, 1]. - output: :math:`(B, 3, H, W)`, 8-bit values.

    Examples::
        >>> atk = CAdv(codec, budget=PSNR(35), cell=16, steps=100)
        >>> x_adv = atk(x)
    """

    def __init__(self, codec, steps: int = 100, cell: int = 16, chroma: bool = False, alpha: float = 0.2,
                 check_every: int = 10, **kwargs):
        if int(cell) < 1:
            raise RobustnicError(f"cadv cell must be at least 1 pixel, got {cell!r}")
        super().__init__(codec, steps=steps, **kwargs)
        self.cell, self.chroma, self.alpha, self.check_every = int(cell), bool(chroma), float(alpha), int(check_every)

    def perturb(self, x, ctx, generator):
        h, w = x.shape[-2:]
        field = x.new_zeros(x.shape[0], 2 if self.chroma else 3, math.ceil(h / self.cell), math.ceil(w / self.cell))
        return shaped_ascent(self, x, ctx, generator, lambda p: color_field(p, (h, w), self.chroma), field,
                             self.alpha, self.check_every)
