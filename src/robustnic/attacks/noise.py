"""Random noise at the budget: the baseline every report shows beside the attacks."""

from __future__ import annotations

import torch

from robustnic.attacks.base import Attack
from robustnic.attacks.registry import register_attack


@register_attack("noise")
class NoiseAttack(Attack):
    r"""Random noise of the same budget as the attacks (Chen & Ma's baseline: noise of the same MSE
    hurts almost nothing, adversarial perturbations of that MSE do).

    Distance Measure : the budget's ball.

    For the MSE/PSNR and L2 balls: uniform (or Gaussian) i.i.d. noise, scaled to the largest size
    whose 8-bit rounded image still satisfies the budget (so it uses the whole budget, like an
    attack). For L∞: uniform noise in [-eps, eps] (Gaussian: clipped at ±eps). The codec is not
    queried; ``steps`` is ignored.

    Arguments:
        codec (Codec): codec (only its device is used).
        distribution (str): ``"uniform"`` or ``"gaussian"`` (Default: ``"uniform"``).
        Others as :class:`~robustnic.attacks.base.Attack` (budget Default: ``PSNR(40)``).

    Shape:
        - x: :math:`(B, 3, H, W)` in [0, 1]. - output: :math:`(B, 3, H, W)`, 8-bit values.

    Examples::
        >>> atk = NoiseAttack(codec, budget=PSNR(40), seed=0)
        >>> x_noisy = atk(x)
    """

    def __init__(self, codec, distribution: str = "uniform", **kwargs):
        if distribution not in ("uniform", "gaussian"):
            raise ValueError(f"noise distribution must be 'uniform' or 'gaussian', got {distribution!r}")
        kwargs["steps"] = 1
        super().__init__(codec, **kwargs)
        self.distribution = distribution

    def perturb(self, x, ctx, generator):
        if self.distribution == "uniform":
            noise = 2 * torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) - 1
        else:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        r = self.budget.radius(x).view(-1, 1, 1, 1)
        if self.budget.is_linf:
            return (x + noise.clamp(-1, 1) * r).clamp(0, 1)
        direction = noise / noise.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * r
        # up to 4 radii: pixels clipped at 0 or 1 leave room that a larger scale fills
        return self.budget.largest_feasible(x, direction, s_max=4.0)
