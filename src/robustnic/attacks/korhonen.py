"""Korhonen & You's attack: a perturbation shaped by a spatial masking model (texture hides noise)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robustnic.attacks.base import Attack
from robustnic.attacks.objectives import to_color_space
from robustnic.attacks.registry import register_attack
from robustnic.attacks.shaping import shaped_ascent
from robustnic.errors import RobustnicError


def masking_weights(x: torch.Tensor, window: int = 7, floor: float = 0.05) -> torch.Tensor:
    """Per-pixel visibility weights ``(B, 1, H, W)`` in ``[floor, 1]``: the local standard deviation
    of the luma over a ``window`` x ``window`` neighbourhood (edges replicated), divided by its
    maximum over the image. Busy texture (weight near 1) masks a change; flat areas (near
    ``floor``) show it."""
    y = to_color_space(x, "y")
    r = max(0, min(window // 2, x.shape[-2] - 1, x.shape[-1] - 1))
    padded = F.pad(y, (r, r, r, r), mode="replicate")
    mean = F.avg_pool2d(padded, 2 * r + 1, stride=1)
    var = (F.avg_pool2d(padded**2, 2 * r + 1, stride=1) - mean**2).clamp_min(0)
    std = var.sqrt()
    top = std.flatten(1).amax(1).clamp_min(1e-8).view(-1, 1, 1, 1)
    return floor + (1 - floor) * std / top


@register_attack("korhonen")
class Korhonen(Attack):
    r"""A masked attack after Korhonen & You, 'Adversarial Attacks against Blind Image Quality
    Assessment Models' (QoEVMA 2022) [https://doi.org/10.1145/3552469.3555715], as NIC-RobustBench
    runs it against codecs: the perturbation is weighted by a spatial masking model.

    Distance Measure : the budget's ball; the perturbation is scaled (not clipped) into it.

    The perturbation is ``m ⊙ p``, with ``m`` the per-pixel masking weight of the source
    (:func:`masking_weights`: local standard deviation of the luma, in ``[floor, 1]``), the same
    for the three channels; ``p`` follows the objective's gradient pulled back through the mask
    (:func:`~robustnic.attacks.shaping.shaped_ascent`), so the perturbation grows where texture
    hides it (about as ``m²`` times the gradient) and stays small in flat areas.

    Arguments:
        codec (Codec): codec to attack. steps (int): iterations (Default: 100).
        window (int): side of the neighbourhood of the local standard deviation (Default: 7).
        floor (float): weight of perfectly flat areas, in (0, 1] (Default: 0.05).
        alpha (float): initial step as a fraction of the budget radius (Default: 0.2).
        check_every (int): steps between two measurements of the 8-bit iterate (Default: 10).
        Others as :class:`~robustnic.attacks.base.Attack` (budget Default: ``PSNR(40)``).

    Shape:
        - x: :math:`(B, 3, H, W)` in [0, 1]. - output: :math:`(B, 3, H, W)`, 8-bit values.

    Examples::
        >>> atk = Korhonen(codec, budget=PSNR(35), steps=100)
        >>> x_adv = atk(x)
    """

    def __init__(self, codec, steps: int = 100, window: int = 7, floor: float = 0.05, alpha: float = 0.2,
                 check_every: int = 10, **kwargs):
        if int(window) < 1:
            raise RobustnicError(f"korhonen window must be at least 1 pixel, got {window!r}")
        if not 0 < float(floor) <= 1:
            raise RobustnicError(f"korhonen floor must lie in (0, 1], got {floor!r}")
        super().__init__(codec, steps=steps, **kwargs)
        self.window, self.floor = int(window), float(floor)
        self.alpha, self.check_every = float(alpha), int(check_every)

    def perturb(self, x, ctx, generator):
        mask = masking_weights(x, self.window, self.floor)
        return shaped_ascent(self, x, ctx, generator, lambda p: mask * p, torch.zeros_like(x), self.alpha,
                             self.check_every)
