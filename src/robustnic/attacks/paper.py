"""robustnic's default attack: Chen & Ma's Adam attack, made faster and budget-exact."""

from __future__ import annotations

import math

import torch

from robustnic.attacks.base import Attack, BestIterate
from robustnic.data.images import quantize_8bit


class PaperAttack(Attack):
    r"""The distortion-constrained attack of Chen & Ma, "Toward Robust Neural Image Compression:
    Adversarial Attack and Model Finetuning" (IEEE TCSVT 2023), improved (see
    :class:`~robustnic.attacks.paper_reference.PaperReferenceAttack` for the faithful version).

    Distance Measure : the budget (PSNR/MSE by default), plus an L∞ cap on δ as in the paper.

    Adam on δ as in the paper, with three changes that reach the same damage in about a tenth of
    the steps: (1) every step is a step on the objective followed by a projection onto the budget
    ball (instead of the paper's alternation between an objective step and a shrink step), so the
    iterate always uses the whole budget; (2) Adam works in units of the budget's per-value radius
    with a cosine-decayed learning rate, so one setting fits every budget; (3) the objective is
    evaluated on the 8-bit rounded iterate (straight-through gradient) and the best iterate per
    image is kept, so what is kept is what survives saving the image.

    Arguments:
        codec (Codec): codec to attack. steps (int): iterations (Default: 100).
        lr (float): Adam learning rate in units of the budget's per-value radius (Default: 0.4).
        linf_cap (float): L∞ cap on δ in 1/255 units (Default: 16; None for no cap).
        round_aware (bool): evaluate the 8-bit rounded iterate (Default: True).
        Others as :class:`~robustnic.attacks.base.Attack` (budget Default: ``PSNR(40)``).

    Shape:
        - x: :math:`(B, 3, H, W)` in [0, 1]. - output: :math:`(B, 3, H, W)`, 8-bit values.

    Examples::
        >>> atk = PaperAttack(codec, budget=PSNR(35), steps=100)
        >>> x_adv = atk(x)
    """

    name = "paper"

    def __init__(self, codec, steps: int = 100, lr: float = 0.4, linf_cap: float | None = 16,
                 round_aware: bool = True, **kwargs):
        super().__init__(codec, steps=steps, **kwargs)
        self.lr, self.linf_cap, self.round_aware = float(lr), linf_cap, round_aware

    def lr_at(self, step: int) -> float:
        """Cosine decay from ``lr`` to 0 over ``steps``."""
        return self.lr * 0.5 * (1 + math.cos(math.pi * step / self.steps))

    def _project(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        x_adv = self.budget.project(x, x_adv)
        if self.linf_cap is not None:
            cap = self.linf_cap / 255.0
            x_adv = torch.min(torch.max(x_adv, x - cap), x + cap)
        return x_adv

    def perturb(self, x, ctx, generator):
        r = self.budget.radius(x)
        rho = (r if self.budget.is_linf else r / math.sqrt(x[0].numel())).view(-1, 1, 1, 1)
        if self.restart == 0:
            u = torch.zeros_like(x)
        else:
            u = (self.budget.random_start(x, generator) - x) / rho
        u.requires_grad_(True)
        opt = torch.optim.Adam([u], lr=self.lr)
        best = BestIterate()
        for i in self.iterations():
            opt.param_groups[0]["lr"] = self.lr_at(i)
            x_adv = (x + u.detach() * rho)
            x_eval = quantize_8bit(x_adv) if self.round_aware else x_adv
            gain, grad, x_hat = self.gradient(x_eval, ctx)
            best.update(x_adv, gain)
            u.grad = -grad * rho
            opt.step()
            with torch.no_grad():
                u.copy_((self._project(x, x + u * rho) - x) / rho)
            self.show(i, x, x_adv, x_hat)
        x_adv = x + u.detach() * rho
        best.update(x_adv, self.evaluate(quantize_8bit(x_adv) if self.round_aware else x_adv, ctx))
        return best.x
