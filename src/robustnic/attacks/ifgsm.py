"""Iterative FGSM (Kurakin et al.): PGD without a random start."""

from __future__ import annotations

from robustnic.attacks.pgd import PGD
from robustnic.attacks.registry import register_attack


@register_attack("ifgsm")
class IFGSM(PGD):
    r"""I-FGSM (BIM) in the paper 'Adversarial Examples in the Physical World' (Kurakin et al.,
    ICLR workshop 2017) [https://arxiv.org/abs/1607.02533], on the codec's objective.

    Distance Measure : the budget's ball; sign steps for L∞, L2-normalised steps otherwise.

    :class:`~robustnic.attacks.pgd.PGD` started at the source image instead of a random point.

    Arguments:
        codec (Codec): codec to attack. steps (int): number of steps (Default: 100).
        alpha (float): step length as a fraction of the budget radius (Default: 2.5 / steps).
        Others as :class:`~robustnic.attacks.base.Attack` (budget Default: ``PSNR(40)``).

    Shape:
        - x: :math:`(B, 3, H, W)` in [0, 1]. - output: :math:`(B, 3, H, W)`, 8-bit values.

    Examples::
        >>> atk = IFGSM(codec, budget=Linf(4), steps=20)
        >>> x_adv = atk(x)
    """

    def __init__(self, codec, steps: int = 100, alpha: float | None = None, **kwargs):
        super().__init__(codec, steps=steps, alpha=alpha, random_start=False, **kwargs)
