"""Wavelet-domain attack (the T-MLA family): a log-exponential change of multi-level wavelet coefficients.

T-MLA (Information Sciences 2026, PyPI ``tmla``) perturbs the wavelet coefficients ``c`` of the
input rather than its pixels, through a log-exponential map, so that the change lands where the eye
notices it least. :class:`WaveletAttack` is robustnic's member of that family, under robustnic's one
budget (held on the saved 8-bit image):

1. ``c = DWT(x)``: a differentiable ``levels``-level 2-D wavelet transform of every channel
   (:class:`WaveletTransform`, on ``ptwt``; Haar and 3 levels by default);
2. a per-coefficient log-amplitude ``θ`` (zero at the start) moves each coefficient through the
   log-exponential map of ``parametrisation`` (below);
3. ``x' = project(x + s·(IDWT(c') − IDWT(c)))``: the inverse transform, its change ``s``-scaled onto the
   budget's sphere (``full_budget``, the default: every iterate spends the whole budget; L∞ budgets
   are not rescaled), then the budget's own projection
   (:meth:`~robustnic.attacks.budget.Budget.project`: ball, L∞ cap and [0, 1] box) - all *inside*
   the differentiated graph, so every iterate is feasible and the objective's gradient reaches ``θ``
   through the projection;
4. normalised ascent steps on ``θ``, each scaled so that its first-order pixel change is
   ``alpha`` times the budget radius (cosine-decayed, as :class:`~robustnic.attacks.paper.PaperAttack`);
   every ``check_every`` steps the 8-bit iterate is measured with real quantisation and the best is
   kept; the base rounds it into the budget.

Parametrisations (``c' = c + Δ``; ``sgn(0) = +1`` so that zero coefficients can move too):

* ``"logexp"`` (default, T-MLA's map): ``c' = sgn(c) · log(max(exp(|c|) + θ, 1e-3))`` - ``θ`` is
  added to ``exp(|c|)``, so the change is about ``θ·exp(−|c|)``: concentrated on the *small*,
  less salient coefficients (fine detail, weak texture), nearly none on the large ones (the
  low-pass band, strong edges).
  Written as ``|c| + log(max(1 + θ·e^{−|c|}, 1e-3·e^{−|c|}))`` so that no ``exp(|c|)`` overflows.
* ``"masking"``: ``Δ = sgn(c) · m(c) · (exp(θ) − 1)`` with the saliency
  ``m(c) = (|c| + ρ·μ_b) / ((1 + ρ)·μ_b)`` (``μ_b`` the mean ``|c|`` of band ``b`` per image, so
  ``m`` averages about 1 in every band): ``θ`` is the change of ``log(|c| + ρ·μ_b)``, so a
  coefficient moves in proportion to its own magnitude - the opposite choice, change hidden in
  strong edges and texture by contrast masking, the floor ``ρ`` (``floor``) keeping flat regions
  movable. Less damage than ``logexp`` in our trials.

Both are exact at ``θ = 0``: the change ``IDWT(c') − IDWT(c)`` is then exactly zero, and the round
trip ``IDWT(DWT(x))`` itself returns ``x`` to float round-off (the same 8-bit image).

Targeted mode (``target_psnr=DB``): push until the real reconstruction's PSNR against the source
(what decoding the 8-bit iterate gives) falls to ``DB`` dB, then stop pushing that image, and
shrink its perturbation (bisection on its scale, on 8-bit images) to the smallest that still
reaches the target - as close to the target as 8-bit steps allow, with the cleanest input.
Images that never reach it keep their most damaging iterate.
"""

from __future__ import annotations

import math

import torch

from robustnic.attacks.base import Attack, BestIterate
from robustnic.attacks.objectives import AttackContext
from robustnic.attacks.registry import register_attack
from robustnic.data.images import quantize_8bit
from robustnic.errors import RobustnicError

#: The log-exponential maps :class:`WaveletAttack` offers (module docstring).
PARAMETRISATIONS = ("logexp", "masking")


class WaveletTransform:
    """A differentiable ``levels``-level 2-D discrete wavelet transform of ``(B, C, H, W)`` images (``ptwt``).

    :meth:`decompose` returns the coefficients as one flat list of bands, coarsest first
    (``[A_L, H_L, V_L, D_L, ..., H_1, V_1, D_1]``); :meth:`reconstruct` inverts it and crops to the
    image size (odd sizes are padded by the transform). ``levels`` is lowered to what the image
    size allows.
    """

    def __init__(self, wavelet: str = "haar", levels: int = 3, mode: str = "reflect"):
        import pywt

        if wavelet not in pywt.wavelist(kind="discrete"):
            raise RobustnicError(f"unknown discrete wavelet {wavelet!r} (see pywt.wavelist(kind='discrete'))")
        if int(levels) < 1:
            raise RobustnicError(f"wavelet levels must be at least 1, got {levels}")
        self.wavelet, self.levels, self.mode = wavelet, int(levels), mode
        self._filter_length = pywt.Wavelet(wavelet).dec_len

    def levels_for(self, size: tuple[int, int]) -> int:
        """The levels used for images of ``size`` ``(H, W)``: ``levels``, at most the size's maximum."""
        import pywt

        return max(1, min(self.levels, pywt.dwt_max_level(min(size), self._filter_length)))

    def decompose(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Wavelet bands of ``x`` ``(B, C, H, W)``, coarsest first (each ``(B, C, h, w)``)."""
        import ptwt

        coeffs = ptwt.wavedec2(x, self.wavelet, mode=self.mode, level=self.levels_for(tuple(x.shape[-2:])))
        bands = [coeffs[0]]
        for details in coeffs[1:]:
            bands.extend(details)
        return bands

    def reconstruct(self, bands: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """The image ``(B, C, *size)`` of the bands :meth:`decompose` returned."""
        import ptwt
        from ptwt.constants import WaveletDetailTuple2d

        coeffs: list = [bands[0]]
        coeffs += [WaveletDetailTuple2d(*bands[i : i + 3]) for i in range(1, len(bands), 3)]
        return ptwt.waverec2(coeffs, self.wavelet)[..., : size[0], : size[1]]


def _sign(c: torch.Tensor) -> torch.Tensor:
    """``sgn(c)`` with ``sgn(0) = +1`` (a zero coefficient can move too)."""
    return torch.where(c >= 0, torch.ones_like(c), -torch.ones_like(c))


@register_attack("wavelet")
class WaveletAttack(Attack):
    r"""A log-exponential perturbation of the input's wavelet coefficients (the T-MLA family,
    "T-MLA: A Targeted Multiscale Log-Exponential Attack Framework for Neural Image Compression",
    Information Sciences 2026), projected onto the budget; untargeted or to a target output PSNR.

    Distance Measure : the budget (projection inside the optimised map; 8-bit rounding by the base).

    See the module docstring for the map and the loop.

    Arguments:
        codec (Codec): codec to attack. steps (int): iterations (Default: 100).
        wavelet (str): a discrete wavelet of PyWavelets (Default: ``"haar"``).
        levels (int): decomposition levels (Default: 3; lowered to what the image size allows).
        parametrisation (str): ``"logexp"`` (Default, T-MLA's map) or ``"masking"`` (module docstring).
        floor (float): masking map: saliency floor ``ρ``, a fraction of the band's mean |c| (Default: 0.25).
        alpha (float): initial step as a fraction of the budget radius, cosine-decayed (Default: 0.2).
        check_every (int): steps between two measurements of the 8-bit iterate (Default: 10).
        target_psnr (float | None): targeted mode: the reconstruction PSNR (dB, against the source)
            to reach; None (Default): untargeted, the most damage.
        full_budget (bool): rescale every iterate's change onto the budget's sphere (Default: True;
            L2-type balls only): without it an iterate may stay inside the ball.
        Others as :class:`~robustnic.attacks.base.Attack` (budget Default: ``PSNR(40)``).

    Shape:
        - x: :math:`(B, 3, H, W)` in [0, 1]. - output: :math:`(B, 3, H, W)`, 8-bit values.

    Examples::
        >>> atk = WaveletAttack(codec, budget=PSNR(35), steps=100)
        >>> x_adv = atk(x)
        >>> x_15 = WaveletAttack(codec, budget=PSNR(30), target_psnr=15)(x)
    """

    def __init__(
        self,
        codec,
        steps: int = 100,
        wavelet: str = "haar",
        levels: int = 3,
        parametrisation: str = "logexp",
        floor: float = 0.25,
        alpha: float = 0.2,
        check_every: int = 10,
        target_psnr: float | None = None,
        full_budget: bool = True,
        **kwargs,
    ):
        super().__init__(codec, steps=steps, **kwargs)
        if parametrisation not in PARAMETRISATIONS:
            raise RobustnicError(f"unknown wavelet parametrisation {parametrisation!r}; choose from "
                                 f"{', '.join(PARAMETRISATIONS)}")
        if not float(floor) > 0 or not float(alpha) > 0:
            raise RobustnicError(f"wavelet floor and alpha must be positive, got {floor} and {alpha}")
        if target_psnr is not None and not math.isfinite(float(target_psnr)):
            raise RobustnicError(f"target_psnr must be a finite number of dB, got {target_psnr!r}")
        self.transform = WaveletTransform(wavelet, levels)
        self.parametrisation, self.floor, self.alpha = parametrisation, float(floor), float(alpha)
        self.check_every = max(1, int(check_every))
        self.target_psnr = None if target_psnr is None else float(target_psnr)
        self.full_budget = bool(full_budget)

    # ----- the map --------------------------------------------------------------------------------
    def saliency(self, bands: list[torch.Tensor]) -> list[torch.Tensor]:
        """Masking map: per band, ``m(c) = (|c| + ρ·μ_b) / ((1 + ρ)·μ_b)`` (``μ_b``: mean ``|c|`` per image)."""
        out = []
        for c in bands:
            mu = c.abs().flatten(1).mean(1).clamp_min(1e-8).view(-1, 1, 1, 1)
            out.append((c.abs() + self.floor * mu) / ((1 + self.floor) * mu))
        return out

    def perturbed_bands(self, bands: list[torch.Tensor], thetas: list[torch.Tensor],
                        saliency: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """The coefficients after the log-exponential map with log-amplitudes ``thetas`` (exact at 0)."""
        if self.parametrisation == "logexp":  # log(max(e^|c| + θ, 1e-3)), written so that e^|c| cannot overflow
            return [_sign(c) * (c.abs() + torch.log(torch.maximum(1 + t * torch.exp(-c.abs()),
                                                                  1e-3 * torch.exp(-c.abs()))))
                    for c, t in zip(bands, thetas)]
        saliency = self.saliency(bands) if saliency is None else saliency
        return [c + _sign(c) * m * torch.expm1(t) for c, m, t in zip(bands, saliency, thetas)]

    def sensitivity(self, bands: list[torch.Tensor], saliency: list[torch.Tensor]) -> list[torch.Tensor]:
        """``∂c'/∂θ`` at ``θ = 0`` per coefficient (scales a step of ``θ`` into a pixel change)."""
        if self.parametrisation == "logexp":
            return [torch.exp(-c.abs()) for c in bands]
        return saliency

    def image(self, x: torch.Tensor, bands: list[torch.Tensor], thetas: list[torch.Tensor],
              saliency: list[torch.Tensor] | None = None, base: torch.Tensor | None = None) -> torch.Tensor:
        """``project(x + s·δ)``, ``δ = IDWT(c') − IDWT(c)``: the feasible image of log-amplitudes ``thetas``
        (differentiable; ``δ`` is exactly 0 at ``θ = 0``, free of the transform's float round-off).
        ``base`` is ``IDWT(c)`` if already computed."""
        size = tuple(x.shape[-2:])
        base = self.transform.reconstruct(bands, size) if base is None else base
        delta = self.transform.reconstruct(self.perturbed_bands(bands, thetas, saliency), size) - base
        if self.full_budget and not self.budget.is_linf:  # onto the sphere: the whole budget, always
            norm = delta.flatten(1).norm(dim=1)
            scale = torch.where(norm > 0, self.budget.radius(x) / norm.clamp_min(1e-12), torch.ones_like(norm))
            delta = delta * scale.view(-1, 1, 1, 1)
        return self.budget.project(x, x + delta)

    # ----- the loop -------------------------------------------------------------------------------
    def alpha_at(self, step: int) -> float:
        """Cosine decay of the step length from ``alpha`` to 0 over ``steps``."""
        return self.alpha * 0.5 * (1 + math.cos(math.pi * step / self.steps))

    def _real_psnr(self, x: torch.Tensor, x8: torch.Tensor) -> torch.Tensor:
        """PSNR ``(B,)`` of the reconstruction of the 8-bit ``x8`` (real quantisation) against ``x``."""
        with torch.no_grad():
            x_hat = self.codec.forward(x8, standin="ste").x_hat.clamp(0, 1)
        ref = x.repeat(1, x_hat.shape[1] // x.shape[1], 1, 1)  # a forward may stack reconstructions (EOT)
        mse = ((x_hat - ref) ** 2).flatten(1).mean(1).clamp_min(1e-12)
        return -10 * torch.log10(mse)

    def perturb(self, x: torch.Tensor, ctx: AttackContext, generator: torch.Generator) -> torch.Tensor:
        bands = [b.detach() for b in self.transform.decompose(x)]
        base = self.transform.reconstruct(bands, tuple(x.shape[-2:]))
        saliency = self.saliency(bands) if self.parametrisation == "masking" else None
        sens = self.sensitivity(bands, saliency or [])
        radius = self.budget.radius(x).view(-1, 1)
        if self.budget.is_linf:  # the L2 size of a change of the L∞ radius on every value
            radius = radius * math.sqrt(x[0].numel())
        if self.restart == 0:
            thetas = [torch.zeros_like(b) for b in bands]
        else:  # a random direction, its first-order pixel change a tenth of the radius
            thetas = [torch.randn(b.shape, generator=generator, device=b.device, dtype=b.dtype) for b in bands]
            thetas = self._scaled(thetas, sens, 0.1 * radius)
        best = BestIterate()
        reached = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        reached_at: torch.Tensor = x.clone()
        for i in self.iterations():
            if i and i % self.check_every == 0:
                reached, reached_at = self._check(best, x, ctx, bands, thetas, saliency, base, reached, reached_at)
                if self.target_psnr is not None and bool(reached.all()):
                    break
            live = [t.detach().requires_grad_(True) for t in thetas]
            x_adv = self.image(x, bands, live, saliency, base)
            out = self.codec.forward(x_adv, standin=self.standin, rate=self.objective.needs_rate)
            gain = self.objective.gain(out, ctx, x_adv)
            grads = torch.autograd.grad(gain.sum(), live)
            self.show(i, x, x_adv.detach(), out.x_hat.detach())
            step = self._scaled([g.detach() for g in grads], sens, self.alpha_at(i) * radius)
            keep = (~reached).to(x.dtype).view(-1, 1, 1, 1)  # targeted: a reached image stops moving
            thetas = [t.detach() + keep * s for t, s in zip(thetas, step)]
        reached, reached_at = self._check(best, x, ctx, bands, thetas, saliency, base, reached, reached_at)
        if self.target_psnr is None:
            return best.x
        return torch.where(reached.view(-1, 1, 1, 1), self._shrink_to_target(x, reached_at), best.x)

    @staticmethod
    def _scaled(direction: list[torch.Tensor], sens: list[torch.Tensor], size: torch.Tensor) -> list[torch.Tensor]:
        """``direction`` scaled per image so that its first-order pixel change ``‖sens ⊙ direction‖``
        is ``size`` ``(B, 1)`` (an orthonormal wavelet keeps the L2 norm; others nearly)."""
        norm = torch.cat([(s * d).flatten(1) for s, d in zip(sens, direction)], 1).norm(dim=1, keepdim=True)
        scale = (size / norm.clamp_min(1e-20)).view(-1, 1, 1, 1)
        return [d * scale for d in direction]

    def _check(self, best, x, ctx, bands, thetas, saliency, base, reached, reached_at):
        """Measure the 8-bit iterate (real quantisation), keep the best; targeted: note who reached."""
        with torch.no_grad():
            x8 = self.budget.finalize(x, self.image(x, bands, thetas, saliency, base))
        best.update(x8, self.measure(x8, ctx))
        if self.target_psnr is None:
            return reached, reached_at
        now = (self._real_psnr(x, x8) <= self.target_psnr) & ~reached
        reached_at = torch.where(now.view(-1, 1, 1, 1), x8, reached_at)
        return reached | now, reached_at

    def _shrink_to_target(self, x: torch.Tensor, x_adv: torch.Tensor, rounds: int = 8) -> torch.Tensor:
        """Per image, the 8-bit ``x + s·(x_adv − x)`` with the smallest ``s`` in (0, 1] (bisection)
        whose reconstruction still reaches ``target_psnr``."""
        lo = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        hi = torch.ones_like(lo)
        delta = x_adv - x
        for _ in range(rounds):
            mid = (lo + hi) / 2
            ok = self._real_psnr(x, quantize_8bit(x + mid.view(-1, 1, 1, 1) * delta)) <= self.target_psnr
            lo, hi = torch.where(ok, lo, mid), torch.where(ok, mid, hi)
        return quantize_8bit(x + hi.view(-1, 1, 1, 1) * delta)


__all__ = ["PARAMETRISATIONS", "WaveletAttack", "WaveletTransform"]
