"""A uniform brightness shift at the budget: the low-frequency baseline beside random noise."""

from __future__ import annotations

import math

import torch

from robustnic.attacks.base import Attack
from robustnic.attacks.registry import register_attack


@register_attack("shift")
class ShiftAttack(Attack):
    r"""Shift every value of the image by the same amount, as far as the budget allows.

    Random noise of the budget's size hurts codecs little because they drop high frequencies; a
    brightness shift is the other extreme, a perturbation every codec that keeps clean images intact
    must reproduce. Its damage (clean minus shifted reconstruction PSNR, against the source) is a
    floor that an attacker always reaches and that no defense preserving clean quality removes.

    Distance Measure : the budget's ball.

    For the MSE/PSNR and L2 balls the offset is ``k`` or ``k + 1`` levels (growing down the rows), the
    largest whose 8-bit image fits, so the whole budget is used; for L∞ it is ``eps``. Each image is
    shifted up or down, whichever clips fewer values at 0 or 1 (the clipped room is then spread over
    the others). The codec is not queried; ``steps`` and ``seed`` are ignored.

    Arguments:
        codec (Codec): codec (only its device is used).
        Others as :class:`~robustnic.attacks.base.Attack` (budget Default: ``PSNR(40)``).

    Shape:
        - x: :math:`(B, 3, H, W)` in [0, 1]. - output: :math:`(B, 3, H, W)`, 8-bit values.

    Examples::
        >>> atk = ShiftAttack(codec, budget=PSNR(30))
        >>> x_shifted = atk(x)   # 8/255 brighter (or darker)
    """

    def __init__(self, codec, **kwargs):
        kwargs["steps"] = 1
        super().__init__(codec, **kwargs)

    def perturb(self, x, ctx, generator):
        r = self.budget.radius(x).view(-1, 1, 1, 1)
        if self.budget.is_linf:
            levels = r * 255  # offset per value
            direction = torch.ones_like(x)
        else:  # the radius spread evenly; a ramp of one level across the rows lets 8-bit rounding mix k and k+1
            levels = r * 255 / math.sqrt(x[0].numel())
            rows = torch.linspace(0, 1, x.shape[-2], device=x.device, dtype=x.dtype).view(1, 1, -1, 1)
            direction = (1 + rows / levels.clamp(min=1)).expand_as(x)
        direction = direction * levels / 255
        near = 1.5 * levels / 255  # values this close to 0 or 1 would clip
        up = ((x > 1 - near).flatten(1).sum(1) <= (x < near).flatten(1).sum(1)).view(-1, 1, 1, 1)
        direction = torch.where(up, direction, -direction)
        # up to 4x: clipped values leave room that a larger shift of the others fills
        return self.budget.largest_feasible(x, direction, s_max=4.0)
