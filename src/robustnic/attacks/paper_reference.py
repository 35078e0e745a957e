"""Chen & Ma's distortion-constrained attack, run as their public script runs it."""

from __future__ import annotations

import torch

from robustnic.attacks.base import Attack
from robustnic.attacks.registry import register_attack


def _bounded(v: torch.Tensor, lo, hi, grad: torch.Tensor) -> torch.Tensor:
    """Gradient through ``clamp(v, lo, hi)`` as the scripts' ``Low_bound``/``Up_bound``: it passes
    where ``v`` is inside, or where the descent step moves ``v`` back inside."""
    keep = ((v >= lo) | (grad < 0)) & ((v <= hi) | (grad > 0))
    return grad * keep


@register_attack("paper-reference")
class PaperReferenceAttack(Attack):
    r"""Untargeted attack of Chen & Ma, "Toward Robust Neural Image Compression: Adversarial Attack
    and Model Finetuning" (IEEE TCSVT 2023, arXiv 2112.08691), reproduced faithfully.

    Distance Measure : the budget (MSE/PSNR in the paper) and its L∞ cap if it has one (the
    scripts cap δ at 16/255: ``psnr:40,linf:16`` reproduces them).

    Adam on δ (initialised from U(-1e-5, 1e-5); later restarts from U(-0.01, 0.01)). At each step,
    per image, *one* loss: if x' = clip(x + clip(δ, ±cap), 0, 1) (cap: the budget's L∞ bound, if
    any) is outside the budget, MSE(x, x') (a step back toward x); otherwise minus the objective
    gain (by default MSE between the reconstruction of x' and the clean reconstruction). The learning rate follows the script's
    ``MultiStepLR([1, 2, 3], gamma)`` stepped at every ``steps // 3``-th iteration: ``lr`` at step
    0, then ``lr·γ`` up to step ``steps//3``, ``lr·γ²`` up to ``2·(steps//3)``, ``lr·γ³`` after.
    The last iterate is returned; the base then rounds it to 8 bits inside the budget (the
    paper's scripts did not: robustnic's fix).

    Arguments:
        codec (Codec): codec to attack. steps (int): iterations (Default: 1001).
        lr (float): Adam learning rate (Default: 0.01). gamma (float): decay factor (Default: 0.33).
        Others as :class:`~robustnic.attacks.base.Attack` (budget Default: ``PSNR(40)``, i.e. τ = 1e-4).

    Shape:
        - x: :math:`(B, 3, H, W)` in [0, 1]. - output: :math:`(B, 3, H, W)`, 8-bit values.

    Examples::
        >>> atk = PaperReferenceAttack(codec, budget=PSNR(40))
        >>> x_adv = atk(x)
    """

    def __init__(self, codec, steps: int = 1001, lr: float = 0.01, gamma: float = 0.33, **kwargs):
        super().__init__(codec, steps=steps, **kwargs)
        self.lr, self.gamma = float(lr), float(gamma)

    def lr_at(self, step: int) -> float:
        """The script's effective learning rate at ``step``."""
        third = max(1, self.steps // 3)
        drops = min(3, 1 + (step - 1) // third) if step > 0 else 0
        return self.lr * self.gamma**drops

    def perturb(self, x, ctx, generator):
        spread = 1e-5 if self.restart == 0 else 0.01
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        delta = ((2 * u - 1) * spread).requires_grad_(True)
        opt = torch.optim.Adam([delta], lr=self.lr)
        bound = self.budget.linf_bound  # an L∞ budget or the budget's cap, in 1/255 units
        cap = float("inf") if bound is None else bound / 255.0
        for i in self.iterations():
            for group in opt.param_groups:
                group["lr"] = self.lr_at(i)
            with torch.no_grad():
                capped = delta.clamp(-cap, cap)
                x_adv = (x + capped).clamp(0, 1)
            outside = ~self.budget.satisfied_each(x, x_adv)
            if bool(outside.all()):
                x_hat = torch.zeros_like(x)
                grad = 2 * (x_adv - x) / x[0].numel()  # d MSE(x, x') / d x'
            else:
                gain, g_gain, x_hat = self.gradient(x_adv, ctx)
                grad = torch.where(outside.view(-1, 1, 1, 1), 2 * (x_adv - x) / x[0].numel(), -g_gain)
            grad = _bounded(x + capped, 0.0, 1.0, grad)
            delta.grad = _bounded(delta.detach(), -cap, cap, grad)
            opt.step()
            self.show(i, x, x_adv, x_hat)
        return x_adv
