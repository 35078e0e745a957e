"""Shaped perturbations: gradient ascent on a parameter ``p`` with ``δ = T(p)`` for a fixed linear map ``T``.

The attacks whose perturbation has a prescribed form - in a frequency band (``ssah``), a smooth
colour field (``cadv``), weighted by a masking model (``korhonen``) - share one loop,
:func:`shaped_ascent`; each passes its own ``T``:

1. ``x′ = budget.project(x, x + T(p))`` (the budget's own projection: its ball, L∞ cap and [0, 1]);
2. the objective's gradient ``g`` at ``x′`` is pulled back to the parameter, ``Tᵀg`` (autograd:
   ``T`` is linear, so this is its exact adjoint);
3. ``p`` moves along ``Tᵀg`` by a step whose image ``T(Tᵀg)`` has length ``alpha·r`` in the
   ball's norm (L2, or L∞ for an L∞ ball), ``r`` the radius, cosine-decayed to 0;
4. ``p`` is scaled (never clipped) so that ``T(p)`` lies in the ball: the perturbation keeps its
   form under every budget kind (for the L2 balls this *is* the ball's projection).

Every ``check_every`` steps and at the end the 8-bit iterate is measured with real quantisation
and the best per image is kept, as in :class:`~robustnic.attacks.paper.PaperAttack`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from robustnic.attacks.base import Attack, BestIterate
from robustnic.attacks.budget import Budget
from robustnic.attacks.objectives import AttackContext
from robustnic.data.images import quantize_8bit

#: A linear map from the parameter to the image-shaped perturbation ``(B, 3, H, W)``.
Shape = Callable[[torch.Tensor], torch.Tensor]


def ball_norm(budget: Budget, v: torch.Tensor) -> torch.Tensor:
    """Per-image ``(B,)`` norm of ``v`` in the budget ball's own norm: L∞ for an L∞ ball, else L2."""
    flat = v.flatten(1)
    return flat.abs().amax(1) if budget.is_linf else flat.norm(dim=1)


def shaped_step(budget: Budget, direction: torch.Tensor, size: torch.Tensor | float) -> torch.Tensor:
    """``direction`` scaled to length ``size`` (per image) in the ball's norm; unlike
    :meth:`Budget.ascent_step` an L∞ step is not a sign, so the step keeps its form."""
    size = torch.as_tensor(size, dtype=direction.dtype, device=direction.device).reshape(-1, 1, 1, 1)
    return size * direction / ball_norm(budget, direction).clamp_min(1e-20).view(-1, 1, 1, 1)


def fit_to_ball(budget: Budget, x: torch.Tensor, p: torch.Tensor, shape: Shape) -> torch.Tensor:
    """``p`` scaled down, per image, until ``shape(p)`` lies in the budget ball around ``x``."""
    norm = ball_norm(budget, shape(p)).clamp_min(1e-20)
    scale = (budget.radius(x) / norm).clamp(max=1.0)
    return p * _expand(scale, p)


def _pull_back(shape: Shape, p: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``Tᵀ grad`` for the linear map ``shape`` at ``p`` (a vector-Jacobian product)."""
    with torch.enable_grad():
        leaf = p.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(shape(leaf), leaf, grad_outputs=grad)
    return g


def _expand(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-image ``(B,)`` tensor shaped to broadcast against ``like``."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def _random_parameter(budget: Budget, x: torch.Tensor, like: torch.Tensor, shape: Shape,
                      generator: torch.Generator) -> torch.Tensor:
    """A Gaussian parameter whose perturbation has a uniform random size in ``[0, r]``."""
    p = torch.randn(like.shape, generator=generator, device=generator.device, dtype=like.dtype).to(like.device)
    size = torch.rand((like.shape[0],), generator=generator, device=generator.device, dtype=like.dtype)
    norm = ball_norm(budget, shape(p)).clamp_min(1e-20)
    return p * _expand(size.to(like.device) * budget.radius(x) / norm, p)


def shaped_ascent(
    attack: Attack,
    x: torch.Tensor,
    ctx: AttackContext,
    generator: torch.Generator,
    shape: Shape,
    parameter: torch.Tensor,
    alpha: float = 0.2,
    check_every: int = 10,
) -> torch.Tensor:
    """One run of the shaped loop (module docstring) of ``attack`` on ``x``; returns the best
    continuous ``x_adv`` inside the budget.

    ``parameter`` is a zero tensor of the parameter's shape (the first run starts there, later
    restarts at a random point). ``shape`` must be linear in the parameter.
    """
    budget, radius = attack.budget, attack.budget.radius(x)
    p = parameter.detach().clone() if attack.restart == 0 else _random_parameter(budget, x, parameter, shape, generator)
    check_every = max(1, int(check_every))
    best = BestIterate()
    x_adv = budget.project(x, x + shape(p))
    for i in attack.iterations():
        if i and i % check_every == 0:
            best.update(x_adv, attack.measure(quantize_8bit(x_adv), ctx))
        _, grad, x_hat = attack.gradient(x_adv, ctx)
        grad_p = _pull_back(shape, p, grad)
        flat = grad_p.flatten(1).abs().amax(1) == 0
        if i == 0 and bool(flat.any()):  # no gradient at the start (real rounding): start at a random point
            start = _random_parameter(budget, x, parameter, shape, generator)
            p = torch.where(_expand(flat, p), start, p)
            x_adv = budget.project(x, x + shape(p))
            _, grad, x_hat = attack.gradient(x_adv, ctx)
            grad_p = _pull_back(shape, p, grad)
        attack.show(i, x, x_adv, x_hat)
        size = alpha * 0.5 * (1 + math.cos(math.pi * i / attack.steps)) * radius
        image_step = shape(grad_p)
        scale = size / ball_norm(budget, image_step).clamp_min(1e-20)
        p = fit_to_ball(budget, x, p + _expand(scale, p) * grad_p, shape)
        x_adv = budget.project(x, x + shape(p))
    best.update(x_adv, attack.measure(quantize_8bit(x_adv), ctx))
    return best.x


__all__ = ["Shape", "ball_norm", "fit_to_ball", "shaped_ascent", "shaped_step"]
