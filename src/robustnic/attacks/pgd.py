"""Projected gradient descent (Madry et al.), for every budget."""

from __future__ import annotations

from robustnic.attacks.base import Attack, BestIterate
from robustnic.attacks.registry import register_attack


@register_attack("pgd")
class PGD(Attack):
    r"""PGD in the paper 'Towards Deep Learning Models Resistant to Adversarial Attacks' (Madry et
    al., ICLR 2018) [https://arxiv.org/abs/1706.06083], on the codec's objective.

    Distance Measure : the budget's ball; sign steps for L∞, L2-normalised steps (L2-PGD) for the
    MSE/PSNR and L2 balls.

    From a uniform random point of the ball, ``steps`` ascent steps of length ``alpha`` (a
    fraction of the ball's radius) each followed by a projection onto the ball and the [0, 1]
    box. The best iterate per image (by gain) is returned.

    Arguments:
        codec (Codec): codec to attack. steps (int): number of steps (Default: 100).
        alpha (float): step length as a fraction of the budget radius (Default: 2.5 / steps).
        random_start (bool): start from a random point of the ball (Default: True).
        Others as :class:`~robustnic.attacks.base.Attack` (budget Default: ``PSNR(40)``).

    Shape:
        - x: :math:`(B, 3, H, W)` in [0, 1]. - output: :math:`(B, 3, H, W)`, 8-bit values.

    Examples::
        >>> atk = PGD(codec, budget=PSNR(35), steps=100, standin="ste")
        >>> x_adv = atk(x)
    """

    def __init__(self, codec, steps: int = 100, alpha: float | None = None, random_start: bool = True, **kwargs):
        super().__init__(codec, steps=steps, **kwargs)
        self.alpha = 2.5 / self.steps if alpha is None else float(alpha)
        self.random_start = random_start

    def perturb(self, x, ctx, generator):
        x_adv = self.budget.random_start(x, generator) if self.random_start else x.clone()
        size = self.alpha * self.budget.radius(x)
        best = BestIterate()
        for i in self.iterations():
            gain, grad, x_hat = self.gradient(x_adv, ctx)
            best.update(x_adv, gain)
            self.show(i, x, x_adv, x_hat)
            x_adv = self.budget.project(x, x_adv + self.budget.ascent_step(grad, size))
        best.update(x_adv, self.evaluate(x_adv, ctx))
        return best.x
