"""A Carlini-Wagner-style penalty attack."""

from __future__ import annotations

import math

import torch

from robustnic.attacks.base import Attack, BestIterate
from robustnic.attacks.registry import register_attack


@register_attack("cw")
class CW(Attack):
    r"""A penalty attack after Carlini & Wagner, 'Towards Evaluating the Robustness of Neural
    Networks' (IEEE S&P 2017) [https://arxiv.org/abs/1608.04644], on the codec's objective.

    Distance Measure : the budget's ball, as a penalty (L∞ and a budget's L∞ cap: a hard clip).

    The image is parameterised as x' = (tanh(w) + 1) / 2 (the [0, 1] box for free) and Adam
    minimises  ``-sign(g)·log|g| + c·relu(||δ||²/r² - 1)``, where g is the objective gain (the log
    makes the trade-off independent of the objective's scale) and r the ball's radius. Iterates
    may leave the ball; the best iterate inside it is kept (the base then rounds it to 8 bits
    inside the budget).

    Arguments:
        codec (Codec): codec to attack. steps (int): Adam steps (Default: 100).
        c (float): penalty weight (Default: 10). lr (float): Adam learning rate in units of the
        budget's per-value radius (Default: 0.5).
        Others as :class:`~robustnic.attacks.base.Attack` (budget Default: ``PSNR(40)``).

    Shape:
        - x: :math:`(B, 3, H, W)` in [0, 1]. - output: :math:`(B, 3, H, W)`, 8-bit values.

    Examples::
        >>> atk = CW(codec, budget=PSNR(35), c=10, steps=100)
        >>> x_adv = atk(x)
    """

    def __init__(self, codec, steps: int = 100, c: float = 10.0, lr: float = 0.5, **kwargs):
        super().__init__(codec, steps=steps, **kwargs)
        self.c, self.lr = float(c), float(lr)

    def perturb(self, x, ctx, generator):
        r = self.budget.radius(x)
        rho = float((r if self.budget.is_linf else r / math.sqrt(x[0].numel())).mean())
        w = torch.atanh((2 * x - 1).clamp(-1 + 1e-6, 1 - 1e-6)).requires_grad_(True)
        opt = torch.optim.Adam([w], lr=self.lr * rho * 2)
        best = BestIterate()
        for i in self.iterations():
            x_adv = (torch.tanh(w) + 1) / 2
            if self.budget.is_linf:
                x_adv = self.budget.project(x, x_adv)
            else:  # an L∞ cap is a hard clip, as for an L∞ ball (differentiable inside the cap)
                x_adv = self.budget.clip_cap(x, x_adv)
            out = self.codec.forward(x_adv, standin=self.standin, rate=self.objective.needs_rate)
            gain = self.objective.gain(out, ctx, x_adv)
            usage = (x_adv - x).flatten(1).pow(2).sum(1) / r**2
            inside = usage <= 1 if not self.budget.is_linf else torch.ones_like(usage, dtype=torch.bool)
            best.update(x_adv.detach(), gain, valid=inside)
            loss = -torch.sign(gain.detach()) * torch.log(gain.abs().clamp_min(1e-30))
            if not self.budget.is_linf:
                loss = loss + self.c * torch.relu(usage - 1)
            (w.grad,) = torch.autograd.grad(loss.sum(), w)
            opt.step()
            self.show(i, x, x_adv.detach(), out.x_hat.detach())
        x_adv = (torch.tanh(w.detach()) + 1) / 2
        x_adv = self.budget.project(x, x_adv)  # the last iterate, pulled into the ball
        best.update(x_adv, self.evaluate(x_adv, ctx))
        return best.x
