"""Fast gradient sign method (Goodfellow et al.): one step to the edge of the budget."""

from __future__ import annotations

from robustnic.attacks.base import Attack
from robustnic.attacks.registry import register_attack


@register_attack("fgsm")
class FGSM(Attack):
    r"""FGSM in the paper 'Explaining and Harnessing Adversarial Examples' (Goodfellow et al., ICLR
    2015) [https://arxiv.org/abs/1412.6572], on the codec's objective.

    Distance Measure : the budget's ball; a sign step for L∞, an L2-normalised gradient step (the
    "fast gradient" method) for the MSE/PSNR and L2 balls.

    One gradient at the source image, one step of the full radius, projection onto the box.
    ``steps`` is ignored (always 1).

    Arguments:
        codec (Codec): codec to attack.
        Others as :class:`~robustnic.attacks.base.Attack` (budget Default: ``PSNR(40)``).

    Shape:
        - x: :math:`(B, 3, H, W)` in [0, 1]. - output: :math:`(B, 3, H, W)`, 8-bit values.

    Examples::
        >>> atk = FGSM(codec, budget=Linf(8))
        >>> x_adv = atk(x)
    """

    def __init__(self, codec, **kwargs):
        kwargs["steps"] = 1
        super().__init__(codec, **kwargs)

    def perturb(self, x, ctx, generator):
        _, grad, _ = self.gradient(x, ctx)
        return self.budget.project(x, x + self.budget.ascent_step(grad, self.budget.radius(x)))
