"""Momentum iterative FGSM (Dong et al.)."""

from __future__ import annotations

from robustnic.attacks.base import Attack, BestIterate
from robustnic.attacks.registry import register_attack


@register_attack("mifgsm")
class MIFGSM(Attack):
    r"""MI-FGSM in the paper 'Boosting Adversarial Attacks with Momentum' (Dong et al., CVPR 2018)
    [https://arxiv.org/abs/1710.06081], on the codec's objective.

    Distance Measure : the budget's ball; sign steps for L∞, L2-normalised steps otherwise.

    From the source image, the gradient normalised by its mean absolute value is accumulated with
    decay ``decay``; each step moves ``alpha`` (a fraction of the radius) along the accumulated
    direction, then projects onto the ball and the box. The best iterate per image is returned.

    Arguments:
        codec (Codec): codec to attack. steps (int): number of steps (Default: 100).
        alpha (float): step length as a fraction of the budget radius (Default: 2.5 / steps).
        decay (float): momentum factor μ (Default: 1.0).
        Others as :class:`~robustnic.attacks.base.Attack` (budget Default: ``PSNR(40)``).

    Shape:
        - x: :math:`(B, 3, H, W)` in [0, 1]. - output: :math:`(B, 3, H, W)`, 8-bit values.

    Examples::
        >>> atk = MIFGSM(codec, budget=Linf(8), steps=20)
        >>> x_adv = atk(x)
    """

    def __init__(self, codec, steps: int = 100, alpha: float | None = None, decay: float = 1.0, **kwargs):
        super().__init__(codec, steps=steps, **kwargs)
        self.alpha = 2.5 / self.steps if alpha is None else float(alpha)
        self.decay = float(decay)

    def perturb(self, x, ctx, generator):
        x_adv = x.clone()
        size = self.alpha * self.budget.radius(x)
        momentum = 0 * x
        best = BestIterate()
        for i in self.iterations():
            gain, grad, x_hat = self.gradient(x_adv, ctx)
            best.update(x_adv, gain)
            self.show(i, x, x_adv, x_hat)
            grad = grad / grad.abs().flatten(1).mean(1).clamp_min(1e-20).view(-1, 1, 1, 1)
            momentum = self.decay * momentum + grad
            x_adv = self.budget.project(x, x_adv + self.budget.ascent_step(momentum, size))
        best.update(x_adv, self.evaluate(x_adv, ctx))
        return best.x
