"""What every attack shares: budget, objective, quantisation stand-in, seeds, devices, 8-bit output.

An attack is a small subclass of :class:`Attack` that implements :meth:`Attack.perturb`, one loop
that returns a continuous iterate. The base does the rest, the same way for every method:

* checks the inputs (images, target, mask) and that the budget allows any 8-bit change;
* builds the objective's fixed context (e.g. the clean reconstruction);
* seeds a per-call generator (and, inside the call only, torch's global one, which the noise
  stand-in draws from), so ``atk(x)`` is bit-identical for the same ``seed``;
* rounds the result to 8 bits *inside* the budget (:meth:`Budget.finalize`), keeps the best of
  ``restarts`` runs per image measured on that 8-bit image with real quantisation
  (:meth:`Attack.measure`), and returns it on ``x``'s device.

Attacks only call ``codec.forward(x, standin, rate)``: anything implementing the
:class:`~robustnic.codecs.base.Codec` interface can be attacked, defended wrappers included.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Iterable, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from robustnic.attacks.budget import PSNR, Budget, parse_budget
from robustnic.attacks.objectives import AttackContext, Objective, make_objective
from robustnic.codecs.base import STANDINS, Codec
from robustnic.data.images import check_image_tensor
from robustnic.errors import RobustnicError


class BestIterate:
    """Per-image best iterate by gain (ties keep the earlier one)."""

    def __init__(self) -> None:
        self.x: torch.Tensor | None = None
        self.gain: torch.Tensor | None = None

    def update(self, x_adv: torch.Tensor, gain: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        """Keep ``x_adv[i]`` where ``gain[i]`` beats the best so far (and ``valid[i]`` holds)."""
        gain = gain.detach()
        if valid is not None:
            gain = torch.where(valid, gain, torch.full_like(gain, -math.inf))
        if self.x is None:
            self.x, self.gain = x_adv.detach().clone(), gain.clone()
            return
        better = gain > self.gain
        if bool(better.any()):
            self.x = torch.where(better.view(-1, 1, 1, 1), x_adv.detach(), self.x)
            self.gain = torch.where(better, gain, self.gain)


class Attack:
    """Base of every attack (torchattacks-style: ``atk = Method(codec, ...); x_adv = atk(x)``).

    Arguments shared by every method:
        codec (Codec): the codec to attack; the attack runs on ``codec.device``.
        budget (Budget | str): input distortion allowed per image (default ``PSNR(40)``).
        objective (str | Objective): ``"distortion"`` (default), ``"rate"``, ``"targeted"``,
            ``"added-noise"`` or ``"rate-distortion"`` (:mod:`robustnic.attacks.objectives`).
        standin (str): quantisation stand-in in the attacked forward: ``"none"`` (g_s(g_a(x)),
            Chen & Ma, default), ``"noise"`` (additive uniform noise) or ``"ste"`` (rounding with a
            straight-through gradient).
        steps (int): iterations of the method's loop.
        seed (int): seed of the random starts and noise (the result is bit-identical per seed).
        restarts (int): independent runs; the best per image (measured on its 8-bit image) is kept.
        reference (str): distortion objective: away from ``"clean"`` reconstruction or ``"source"``.
        metric (str): distortion objective: ``"mse"`` or ``"ms-ssim"``.
        background_weight (float): targeted objective: weight of keeping the outside of the mask.
        color (str): colour space the distortion is measured in: ``"rgb"`` (default), ``"ycbcr"``
            or ``"y"`` (luma only; BT.601 full range).
        rd_weight (float): rate-distortion objective: weight λ of the distortion (None: CompressAI's
            lowest-quality λ of the metric).
        progress (bool): show a progress bar with the current input and output PSNR.

    Shape:
        x, target: ``(B, 3, H, W)`` in [0, 1], any H, W; mask: ``(H, W)`` or ``(B, 1, H, W)`` in [0, 1].
        output: ``(B, 3, H, W)``, multiples of 1/255, inside the budget for every image.
    """

    name: str = "attack"

    def __init__(
        self,
        codec: Codec,
        budget: Budget | str = PSNR(40),
        objective: str | Objective = "distortion",
        standin: str = "none",
        steps: int = 100,
        seed: int = 0,
        restarts: int = 1,
        reference: str = "clean",
        metric: str = "mse",
        background_weight: float = 1.0,
        progress: bool = False,
        color: str = "rgb",
        rd_weight: float | None = None,
    ):
        if not isinstance(codec, Codec):
            raise RobustnicError(f"attacks take a robustnic Codec, got {type(codec).__name__} (see load_codec)")
        if standin not in STANDINS:
            raise RobustnicError(f"unknown stand-in {standin!r}; choose from {', '.join(STANDINS)}")
        if int(steps) < 1 or int(restarts) < 1:
            raise RobustnicError(f"steps and restarts must be at least 1, got {steps} and {restarts}")
        self.codec = codec
        self.budget = parse_budget(budget)
        self.objective = make_objective(objective, reference, metric, background_weight, color, rd_weight)
        adapt = getattr(codec, "adapt_objective", None)
        if callable(adapt):  # a codec standing for several models (a CodecFamily): the mean over them
            self.objective = adapt(self.objective)
        self.standin, self.steps, self.seed, self.restarts = standin, int(steps), int(seed), int(restarts)
        self.progress = progress
        #: Wall-clock seconds of the last call (all images of the batch together).
        self.elapsed = 0.0
        #: Index of the run in progress (0 .. restarts-1), for methods that start differently.
        self.restart = 0

    # ----- what each method implements -------------------------------------------------------
    def perturb(self, x: torch.Tensor, ctx: AttackContext, generator: torch.Generator) -> torch.Tensor:
        """One run of the method: return a continuous ``x_adv`` (the base rounds it into the budget)."""
        raise NotImplementedError

    # ----- helpers for the methods -------------------------------------------------------------
    def gradient(self, x_adv: torch.Tensor, ctx: AttackContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gain ``(B,)``, its gradient with respect to ``x_adv``, and the stand-in reconstruction.

        Only the input gets a gradient (``autograd.grad``): a codec being fine-tuned keeps its own.
        """
        x_adv = x_adv.detach().requires_grad_(True)
        out = self.codec.forward(x_adv, standin=self.standin, rate=self.objective.needs_rate)
        gain = self.objective.gain(out, ctx, x_adv)
        (grad,) = torch.autograd.grad(gain.sum(), x_adv)
        return gain.detach(), grad, out.x_hat.detach()

    @torch.no_grad()
    def evaluate(self, x_adv: torch.Tensor, ctx: AttackContext) -> torch.Tensor:
        """Gain ``(B,)`` of ``x_adv`` under the attack's stand-in, without a gradient."""
        out = self.codec.forward(x_adv, standin=self.standin, rate=self.objective.needs_rate)
        return self.objective.gain(out, ctx, x_adv).detach()

    @torch.no_grad()
    def measure(self, x_adv: torch.Tensor, ctx: AttackContext) -> torch.Tensor:
        """Gain ``(B,)`` of ``x_adv`` with real quantisation in the forward (``standin="ste"``: the
        reconstruction the decoder gives), without a gradient."""
        out = self.codec.forward(x_adv, standin="ste", rate=self.objective.needs_rate)
        return self.objective.gain(out, ctx, x_adv).detach()

    def iterations(self, steps: int | None = None) -> Iterator[int]:
        """``range(steps)``, behind a progress bar when ``progress`` is on."""
        steps = self.steps if steps is None else steps
        if not self.progress:
            return iter(range(steps))
        self._bar = tqdm(range(steps), desc=f"{self.name} {self.budget}", leave=False, dynamic_ncols=True)
        return iter(self._bar)

    def show(self, step: int, x: torch.Tensor, x_adv: torch.Tensor, x_hat: torch.Tensor) -> None:
        """Put the current input and output PSNR (mean over the batch, stand-in) on the bar."""
        if not self.progress or (step % 10 and step != self.steps - 1):
            return
        mse_in = ((x_adv - x) ** 2).flatten(1).mean(1).clamp_min(1e-12)
        ref = x.repeat(1, x_hat.shape[1] // x.shape[1], 1, 1)  # a forward may stack reconstructions (EOT)
        mse_out = ((x_hat.clamp(0, 1) - ref) ** 2).flatten(1).mean(1).clamp_min(1e-12)
        self._bar.set_postfix(
            {"psnr-in": f"{float((-10 * mse_in.log10()).mean()):.2f}",
             "psnr-out": f"{float((-10 * mse_out.log10()).mean()):.2f}"},
            refresh=False,
        )

    # ----- the call -----------------------------------------------------------------------------
    def __call__(
        self, x: torch.Tensor, target: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Attack a batch ``x`` (``(B, 3, H, W)`` or ``(3, H, W)``); see the class docstring."""
        x_in = check_image_tensor(x)
        device = self.codec.device
        x = x_in.detach().to(device=device, dtype=torch.float32)
        self.budget.check_possible(x)
        start = time.perf_counter()
        cuda = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # the noise stand-in draws from torch's own generator
            torch.manual_seed(self.seed)
            ctx = self.objective.prepare(self.codec, x, target, mask)
            generator = torch.Generator(device=device).manual_seed(self.seed)
            best = BestIterate()
            for self.restart in range(self.restarts):
                x_adv = self.budget.finalize(x, self.perturb(x, ctx, generator).detach())
                gain = self.measure(x_adv, ctx) if self.restarts > 1 else torch.zeros(x.shape[0], device=device)
                best.update(x_adv, gain)
        self.elapsed = time.perf_counter() - start
        if not self.budget.satisfied(x, best.x):  # finalize guarantees it; never return a violation
            raise AssertionError(f"{self.name}: result outside the budget {self.budget}")
        return best.x.to(x_in.device)

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        """Alias of ``atk(x)`` (torchattacks' name)."""
        return self(x, target=target, mask=mask)

    def with_budget(self, budget: Budget | str) -> "Attack":
        """A copy of this attack with another budget (everything else shared)."""
        other = copy.copy(self)
        other.budget = parse_budget(budget)
        return other

    def sweep(
        self,
        budgets: Iterable[Budget | str],
        x: torch.Tensor,
        target: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Attack ``x`` at several budgets in one call: ``{str(budget): x_adv}`` (e.g. ``"psnr:30"``)."""
        return {str(parse_budget(b)): self.with_budget(b)(x, target=target, mask=mask) for b in budgets}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(codec={self.codec.name!r}, budget={self.budget}, objective={self.objective}, "
            f"standin={self.standin!r}, steps={self.steps}, seed={self.seed})"
        )


def sweep_budgets(
    attack: Attack, budgets: Sequence[Budget | str], x: torch.Tensor, target=None, mask=None
) -> dict[str, torch.Tensor]:
    """Functional form of :meth:`Attack.sweep`."""
    return attack.sweep(budgets, x, target=target, mask=mask)


__all__ = ["Attack", "BestIterate", "sweep_budgets"]
