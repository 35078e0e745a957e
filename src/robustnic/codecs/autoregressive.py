"""The rate an autoregressive (context) model really codes, without its serial decoding loop.

CompressAI's forward pass of the context models (mbt2018, cheng2020-anchor/attn) predicts each latent's
mean and scale from the context of ``round(y)``, but its entropy coder codes ``round(y - mean) + mean``,
with means and scales predicted from the context of those decoded latents. The two likelihoods can
differ by several percent (about 10% for a briefly trained cheng2020; see benchmarks/RESULTS.md), so
the forward pass is a training proxy, not an estimate of the bitstream.

:func:`coded_likelihoods` evaluates the likelihood along the real decoding path. The decoded latents
``y_hat`` are the fixed point of ``y_hat = round(y - mean(ctx(y_hat))) + mean(ctx(y_hat))``; because
the context is causal, plain fixed-point iteration from ``round(y)`` reaches it exactly: sweep k
settles at least the first k positions in raster order, and in practice the number of sweeps grows with
the latent's height and width (about 4 per row: 70 for a 16x24 latent, 126 for 32x32), not with their
product. Every sweep is one parallel pass of the context and entropy-parameter networks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from compressai.models import CompressionModel


@dataclass
class CodedLikelihoods:
    """Likelihoods of the symbols the coder codes, and how the fixed point was reached."""

    likelihoods: dict[str, torch.Tensor]
    y_hat: torch.Tensor  # the latents the decoder reconstructs
    iterations: int  # fixed-point sweeps until y_hat stopped changing
    converged: bool


def is_autoregressive(net: CompressionModel) -> bool:
    """Whether ``net`` predicts its latents' parameters from a causal context (mbt2018, cheng2020)."""
    return all(hasattr(net, name) for name in ("context_prediction", "entropy_parameters", "gaussian_conditional",
                                               "h_s", "entropy_bottleneck"))


@torch.no_grad()
def coded_likelihoods(net: CompressionModel, x: torch.Tensor, max_iterations: int | None = None) -> CodedLikelihoods:
    """Likelihoods of ``y`` and ``z`` along the real decoding path of a context model.

    ``x`` must already be padded to the model's multiple. The model must be in eval mode (the
    entropy models quantise around their medians and means only then). ``max_iterations`` caps the
    sweeps; the default (one per latent position) always reaches the exact fixed point. A capped search
    that stops short returns its last latents with the parameters that decoded them.
    """
    if not is_autoregressive(net):
        raise TypeError(f"{type(net).__name__} has no autoregressive context model")
    if net.training:
        raise RuntimeError("coded_likelihoods needs the model in eval mode (net.eval())")
    if max_iterations is not None and max_iterations < 1:
        raise ValueError(f"max_iterations must be at least 1, got {max_iterations}")
    gc = net.gaussian_conditional
    y = net.g_a(x)
    z_hat, z_likelihoods = net.entropy_bottleneck(net.h_a(y))  # eval: round(z - medians) + medians
    hyper = net.h_s(z_hat)

    def predict(context_of: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        params = net.entropy_parameters(torch.cat((hyper, net.context_prediction(context_of)), dim=1))
        return params.chunk(2, 1)  # scales, means

    if max_iterations is None:
        max_iterations = y.shape[-2] * y.shape[-1] + 1
    y_hat = torch.round(y)  # the forward pass's context: the first guess
    for iterations in range(1, max_iterations + 1):
        scales, means = predict(y_hat)
        decoded = gc.quantize(y, "dequantize", means)
        converged = torch.equal(decoded, y_hat)
        y_hat = decoded  # the latents these scales and means decode, so bits and latents agree
        if converged:
            break
    _, y_likelihoods = gc(y, scales, means=means)
    return CodedLikelihoods({"y": y_likelihoods, "z": z_likelihoods}, y_hat, iterations, converged)
