"""Penalties added to the rate-distortion loss of fine-tuning, needing no inner attack.

``jacobian``: the codec's mean squared gain from input to reconstruction, ``‖J‖_F² / n`` with J the
Jacobian of the relaxed codec (the training forward, additive-noise quantisation) at each patch
and n its number of output values. It is estimated with one Gaussian random projection per patch,
``E_v ‖Jᵀv‖² = ‖J‖_F²`` (Hoffman et al., "Robust learning with Jacobian regularization", 2019),
which costs one double backward and no attack. An identity map scores 1; a codec discards most
directions of the input and scores far below 1 (about 0.03 for ``hyperprior-small:q3``), and an
adversarial perturbation is a direction the codec amplifies: the penalty lowers the gain in all of
them at once, the adversarial ones included.
"""

from __future__ import annotations

import torch


def jacobian_penalty(x: torch.Tensor, x_hat: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Unbiased estimate of ``‖∂x̂/∂x‖_F² / n`` per patch, averaged over the batch (differentiable).

    ``x`` must require grad and ``x_hat`` be computed from it.
    """
    v = torch.randn(x_hat.shape, generator=generator, device=x_hat.device, dtype=x_hat.dtype)
    (g,) = torch.autograd.grad((x_hat * v).sum(), x, create_graph=True)
    return g.pow(2).flatten(1).sum(1).div(x_hat[0].numel()).mean()


__all__ = ["jacobian_penalty"]
