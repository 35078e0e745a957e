"""MAD competition attack: maximise the damage while a second metric of the input stays fixed."""

from __future__ import annotations

import math

import torch
from pytorch_msssim import ms_ssim, ssim

from robustnic.attacks.base import Attack, BestIterate
from robustnic.attacks.registry import register_attack
from robustnic.attacks.shaping import ball_norm, shaped_step
from robustnic.data.images import quantize_8bit
from robustnic.errors import RobustnicError
from robustnic.metrics import MS_SSIM_MIN_SIDE

#: Metrics the attack can hold: ``auto`` is MS-SSIM on images larger than 160 px a side, SSIM below.
HELD_METRICS = ("auto", "ms-ssim", "ssim")


def held_metric_name(held: str, size: tuple[int, int]) -> str:
    """The metric ``held`` stands for on images of ``size`` (``"auto"``: MS-SSIM where it fits, else SSIM)."""
    if held not in HELD_METRICS:
        raise RobustnicError(f"madc held metric must be one of {', '.join(HELD_METRICS)}, got {held!r}")
    if held == "auto":
        return "ms-ssim" if min(size) >= MS_SSIM_MIN_SIDE else "ssim"
    if held == "ms-ssim" and min(size) < MS_SSIM_MIN_SIDE:
        raise RobustnicError(f"MS-SSIM needs images of at least {MS_SSIM_MIN_SIDE} px a side, got "
                             f"{size[1]}x{size[0]}: hold 'ssim' (or 'auto')")
    return held


def held_metric(x: torch.Tensor, x_adv: torch.Tensor, held: str = "auto") -> torch.Tensor:
    """Per-image ``(B,)`` (MS-)SSIM of ``x_adv`` against the source ``x`` (differentiable; pytorch-msssim,
    11-pixel Gaussian window, data range 1)."""
    kind = held_metric_name(held, tuple(x.shape[-2:]))
    fn = ms_ssim if kind == "ms-ssim" else ssim
    return fn(x_adv, x, data_range=1.0, size_average=False)


@register_attack("madc")
class MADC(Attack):
    r"""A MAD-competition attack after Wang & Simoncelli, 'Maximum differentiation (MAD)
    competition: a methodology for comparing computational models of perceptual quantities'
    (Journal of Vision 2008) [https://doi.org/10.1167/8.12.8], as NIC-RobustBench runs it against
    codecs: the damage is maximised while a second measure of the input, its (MS-)SSIM to the
    source, is held where it started.

    Distance Measure : the budget's ball (its projection after every move).

    From noise that fills the ball (the start's (MS-)SSIM ``h0`` is the level held), each step

    1. takes the objective's gradient ``g`` and the held metric's gradient ``s`` at the iterate,
       and moves along ``g − (⟨g, s⟩ / ‖s‖²)·s`` - the steepest ascent that leaves the held metric
       unchanged to first order - by ``alpha`` times the ball's radius (cosine-decayed), then
       projects onto the budget;
    2. pulls the held metric back to ``h0`` with up to ``corrections`` Newton steps along ``s``
       (each followed by the projection), until it is within ``tolerance``.

    Every ``check_every`` steps and at the end the 8-bit iterate is measured with real
    quantisation; the best one whose held metric is within ``tolerance`` of ``h0`` is kept.
    ``held_start`` keeps ``h0`` per image of the last call.

    Arguments:
        codec (Codec): codec to attack. steps (int): iterations (Default: 100).
        held (str): ``"auto"`` (MS-SSIM from 161 px a side, SSIM below), ``"ms-ssim"`` or ``"ssim"``
            (Default: ``"auto"``).
        tolerance (float): how far the held metric may drift from ``h0`` (Default: 0.002).
        corrections (int): Newton steps per iteration back to ``h0`` (Default: 3).
        alpha (float): initial step as a fraction of the budget radius (Default: 0.2).
        check_every (int): steps between two measurements of the 8-bit iterate (Default: 10).
        Others as :class:`~robustnic.attacks.base.Attack` (budget Default: ``PSNR(40)``).

    Shape:
        - x: :math:`(B, 3, H, W)` in [0, 1]. - output: :math:`(B, 3, H, W)`, 8-bit values.

    Examples::
        >>> atk = MADC(codec, budget=PSNR(35), steps=100)
        >>> x_adv = atk(x)
        >>> atk.held_start   # the (MS-)SSIM held, per image
    """

    def __init__(self, codec, steps: int = 100, held: str = "auto", tolerance: float = 0.002, corrections: int = 3,
                 alpha: float = 0.2, check_every: int = 10, **kwargs):
        held_metric_name(held, (MS_SSIM_MIN_SIDE, MS_SSIM_MIN_SIDE))  # checks the name
        if not float(tolerance) > 0 or int(corrections) < 0:
            raise RobustnicError(f"madc needs tolerance > 0 and corrections >= 0, got {tolerance!r}, {corrections!r}")
        super().__init__(codec, steps=steps, **kwargs)
        self.held, self.tolerance, self.corrections = held, float(tolerance), int(corrections)
        self.alpha, self.check_every = float(alpha), max(1, int(check_every))
        #: The held metric's level per image, ``(B,)``, of the last call.
        self.held_start: torch.Tensor | None = None

    def _held(self, x: torch.Tensor, x_adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The held metric ``(B,)`` at ``x_adv`` and its gradient there."""
        with torch.enable_grad():
            leaf = x_adv.detach().requires_grad_(True)
            h = held_metric(x, leaf, self.held)
            (grad,) = torch.autograd.grad(h.sum(), leaf)
        return h.detach(), grad

    def _restore(self, x: torch.Tensor, x_adv: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Newton steps along the held metric's gradient back to ``h0`` (each projected onto the budget)."""
        h, s = self._held(x, x_adv)
        for _ in range(self.corrections):
            miss = h0 - h
            if bool((miss.abs() <= self.tolerance / 4).all()):
                break
            step = miss / s.flatten(1).pow(2).sum(1).clamp_min(1e-20)
            x_adv = self.budget.project(x, x_adv + step.view(-1, 1, 1, 1) * s)
            h, s = self._held(x, x_adv)
        return x_adv, h

    def _start(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Noise that fills the ball (uniform in the L∞ cube; a Gaussian direction of the full radius)."""
        if self.budget.is_linf:
            u = torch.rand(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
            delta = 2 * u - 1
        else:
            delta = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
        delta = delta / ball_norm(self.budget, delta).clamp_min(1e-20).view(-1, 1, 1, 1)
        return self.budget.project(x, x + delta * self.budget.radius(x).view(-1, 1, 1, 1))

    def perturb(self, x, ctx, generator):
        x_adv = self._start(x, generator)
        h0, _ = self._held(x, x_adv)
        self.held_start = h0.clone()
        radius = self.budget.radius(x)
        best = BestIterate()
        best.update(x_adv, self.measure(quantize_8bit(x_adv), ctx))
        h = h0
        for i in self.iterations():
            if i and i % self.check_every == 0:
                best.update(x_adv, self.measure(quantize_8bit(x_adv), ctx), (h - h0).abs() <= self.tolerance)
            _, grad, x_hat = self.gradient(x_adv, ctx)
            self.show(i, x, x_adv, x_hat)
            _, s = self._held(x, x_adv)
            g, s = grad.flatten(1), s.flatten(1)
            along = (g * s).sum(1) / s.pow(2).sum(1).clamp_min(1e-20)
            direction = (g - along.view(-1, 1) * s).view_as(x)
            size = self.alpha * 0.5 * (1 + math.cos(math.pi * i / self.steps)) * radius
            x_adv = self.budget.project(x, x_adv + shaped_step(self.budget, direction, size))
            x_adv, h = self._restore(x, x_adv, h0)
        best.update(x_adv, self.measure(quantize_8bit(x_adv), ctx), (h - h0).abs() <= self.tolerance)
        return best.x
