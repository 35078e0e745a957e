"""Perturbation budgets: one definition shared by every attack.

A budget bounds the input distortion between a source image ``x`` and its perturbed version
``x_adv`` (both ``(B, 3, H, W)`` in [0, 1]), per image:

* :class:`MSE` ``(tau)``  - mean over all ``3·H·W`` values of ``(x_adv - x)²`` is at most ``tau``
  (Chen & Ma's threshold, 1e-4 by default in the paper);
* :class:`PSNR` ``(db)``  - the same ball written in dB: ``PSNR(40) == MSE(1e-4)``;
* :class:`Linf` ``(eps)`` - ``max |x_adv - x| <= eps / 255`` (``eps`` in 1/255 units, as ``Linf(8)``);
* :class:`L2` ``(eps)``   - ``||x_adv - x||_2 <= eps`` over the whole image, in [0, 1] units.

Any of the PSNR, MSE and L2 balls may also carry an explicit L∞ cap, ``max |x_adv - x| <= cap / 255``,
written ``psnr:35,linf:16`` (``PSNR(35, linf_cap=16)``): the budget is then the intersection of
both, and every method keeps it, because every method goes through the same :meth:`Budget.project`,
:meth:`Budget.random_start` and :meth:`Budget.finalize`. A budget without a cap has none.

The budget holds for the image a user saves: :meth:`Budget.finalize` rounds an attack's iterate
to 8 bits and then finds, by bisection on a scale ``s`` of the perturbation, the largest
``s in [0, 1]`` whose rounded image ``round(255·(x + s·δ)) / 255`` satisfies the budget. The test
is exact: distances are computed on integer 8-bit differences (in float64), so an image that
:meth:`satisfied` accepts is still accepted after a PNG save and reload.

A budget that allows no 8-bit change at all (e.g. ``psnr:200``, finer than one pixel moved by
1/255) raises :class:`~robustnic.errors.BudgetError` in :meth:`check_possible`: an attack that
could only return ``x`` unchanged is a configuration mistake, not a result.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod

import torch

from robustnic.errors import BudgetError

#: Relative slack for float64 round-off in the budget test (far below one 8-bit step).
_SLACK = 1e-9
#: Bisection iterations: the scale is found to 2**-24 of its range.
_BISECTION_STEPS = 24


def _grid_diff(x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """``255·(x_adv - x)`` per image, flattened, in float64; snapped to integers when on the grid."""
    return _snap((x_adv.detach().double() - x.detach().double()).flatten(1) * 255.0)


def _snap(d: torch.Tensor) -> torch.Tensor:
    """Snap float64 grid-unit differences within float32 round-off of an integer onto it."""
    snapped = d.round()
    return torch.where((d - snapped).abs() < 1e-3, snapped, d)


class Budget(ABC):
    """A ball around the source image in which the perturbed image must stay (see module doc)."""

    #: Short kind used in specs: ``psnr``, ``mse``, ``linf``, ``l2``.
    kind: str = ""
    #: Whether gradient-sign attacks use sign steps (L∞) or L2-normalised steps (every other ball).
    is_linf: bool = False
    #: Optional L∞ cap on the perturbation, in 1/255 units (``psnr:35,linf:16``); None: no cap.
    linf_cap: float | None = None

    # ----- what each ball defines -------------------------------------------------------------
    @abstractmethod
    def _fits(self, d: torch.Tensor) -> torch.Tensor:
        """Per-image boolean: does the ``(B, n)`` grid-unit difference ``d`` lie in the ball?"""

    @abstractmethod
    def measure(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """Per-image distance in this budget's own unit (dB for PSNR, MSE, 1/255 for L∞, L2 norm)."""

    @abstractmethod
    def radius(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image radius ``(B,)`` in [0, 1] units of the ball's norm (L2 norm, or L∞ for Linf)."""

    @abstractmethod
    def smallest_change_fits(self, num_values: int) -> bool:
        """Whether moving one value of an image of ``num_values`` values by 1/255 fits the ball."""

    # ----- the optional L∞ cap -----------------------------------------------------------------
    def _set_cap(self, linf_cap: float | None) -> None:
        if linf_cap is not None:
            if self.is_linf:
                raise BudgetError(f"an L∞ budget needs no L∞ cap: use linf:{min(self.value, float(linf_cap)):g}")
            self.linf_cap = self._positive(linf_cap, "L∞ cap (in 1/255 units)")

    @property
    def linf_bound(self) -> float | None:
        """The largest ``|δ|`` any value may take, in 1/255 units: the L∞ budget or the cap (None: unbounded)."""
        return float(self.value) if self.is_linf else self.linf_cap

    def _fits_all(self, d: torch.Tensor) -> torch.Tensor:
        """:meth:`_fits` and, with a cap, ``max |d| <= cap`` (``d`` in grid units)."""
        ok = self._fits(d)
        if self.linf_cap is not None:
            ok = ok & (d.abs().amax(1) <= self.linf_cap * (1 + _SLACK))
        return ok

    def clip_cap(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """``x_adv`` with ``δ`` clipped to the L∞ cap (unchanged without one)."""
        if self.linf_cap is None:
            return x_adv
        cap = self.linf_cap / 255.0
        return torch.minimum(torch.maximum(x_adv, x - cap), x + cap)

    # ----- shared behaviour --------------------------------------------------------------------
    def satisfied_each(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """Per-image booleans ``(B,)``: does ``x_adv`` stay within the budget (and its cap) around ``x``?"""
        if x.shape != x_adv.shape:
            raise BudgetError(f"budget check on images of different shapes {tuple(x.shape)} and {tuple(x_adv.shape)}")
        return self._fits_all(_grid_diff(x, x_adv))

    def satisfied(self, x: torch.Tensor, x_adv: torch.Tensor) -> bool:
        """True when every image of the batch satisfies the budget (a plain ``bool``)."""
        return bool(self.satisfied_each(x, x_adv).all())

    def check_possible(self, x: torch.Tensor) -> None:
        """Raise :class:`BudgetError` if the budget allows no 8-bit change of ``x`` at all."""
        n = x[0].numel()
        if not self.smallest_change_fits(n) or (self.linf_cap is not None and self.linf_cap * (1 + _SLACK) < 1.0):
            h, w = x.shape[-2:]
            smallest = 10 * math.log10(n * 255.0**2)
            raise BudgetError(
                f"budget {self} allows no 8-bit change of a {w}x{h} image: the smallest possible change "
                f"(one value moved by 1/255) is already {smallest:.1f} dB PSNR, "
                f"L2 {1 / 255:.5f}, L∞ 1/255; choose a looser budget"
            )

    def project(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """Continuous projection of ``x_adv`` onto the ball around ``x``, the L∞ cap and the [0, 1] box.

        With a cap, the ball's projection is followed by the clip to the cap: clipping only shrinks
        ``|δ|`` value by value, so the result lies in both (a feasible point, not always the nearest).
        """
        delta = x_adv - x
        if self.is_linf:
            r = self.radius(x).view(-1, 1, 1, 1)
            delta = torch.maximum(torch.minimum(delta, r), -r)
        else:
            norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
            scale = (self.radius(x) / norm).clamp(max=1.0)
            delta = delta * scale.view(-1, 1, 1, 1)
        return self.clip_cap(x, x + delta).clamp(0.0, 1.0)  # the box clip only shrinks |δ|: stays in the ball

    def ascent_step(self, grad: torch.Tensor, size: torch.Tensor | float) -> torch.Tensor:
        """A step of length ``size`` (per image, ball units) along ``grad``: sign for L∞, L2-normalised else."""
        size = torch.as_tensor(size, dtype=grad.dtype, device=grad.device).reshape(-1, 1, 1, 1)
        if self.is_linf:
            return size * grad.sign()
        norm = grad.flatten(1).norm(dim=1).clamp_min(1e-20).view(-1, 1, 1, 1)
        return size * grad / norm

    def random_start(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A random point in the ball (uniform in the L∞ cube; uniform radius along a Gaussian direction)."""
        r = self.radius(x).view(-1, 1, 1, 1)
        if self.is_linf:
            u = torch.rand(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
            delta = (2 * u - 1) * r
        else:
            g = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
            g = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            u = torch.rand((x.shape[0], 1, 1, 1), generator=generator, device=generator.device, dtype=x.dtype)
            delta = g * r * u
        return self.clip_cap(x, x + delta.to(x.device)).clamp(0.0, 1.0)

    def largest_feasible(self, x: torch.Tensor, direction: torch.Tensor, s_max: float = 1.0) -> torch.Tensor:
        """The 8-bit image ``round(255·(x + s·direction)) / 255`` with the largest ``s in [0, s_max]``
        that satisfies the budget, per image (bisection; the distance grows with ``s``).

        Raises :class:`BudgetError` when even ``s = 0`` (the 8-bit image closest to ``x``) is outside.
        """
        B = x.shape[0]
        base = x.detach().float() * 255.0
        on_grid = bool(((base - base.round()).abs() < 1e-3).all())
        if on_grid:  # the usual case: exact small integers in float32, sums in float64
            base = base.round()
            v = direction.detach().float() * 255.0
        else:
            base, v = x.detach().double() * 255.0, direction.detach().double() * 255.0

        def candidate(s: torch.Tensor) -> torch.Tensor:
            return (base + s.to(base.dtype).view(-1, 1, 1, 1) * v).round().clamp(0.0, 255.0)

        def fits(s: torch.Tensor) -> torch.Tensor:
            d = (candidate(s) - base).flatten(1)
            return self._fits_all(d if on_grid else _snap(d))

        lo = torch.zeros(B, dtype=torch.float64, device=x.device)
        hi = torch.full_like(lo, float(s_max))
        if not bool(fits(lo).all()):
            raise BudgetError(
                f"budget {self} is finer than 8-bit rounding of this image allows: the 8-bit image "
                f"closest to the source is already outside it (is the source an 8-bit image?)"
            )
        top = fits(hi)
        if not bool(top.all()):
            for _ in range(_BISECTION_STEPS):
                mid = (lo + hi) / 2
                ok = fits(mid)
                lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid)
        lo = torch.where(top, torch.full_like(lo, float(s_max)), lo)
        return candidate(lo).float().div(255.0).to(x.dtype)

    def finalize(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """Round ``x_adv`` to 8 bits inside the budget (exact; see module docstring)."""
        return self.largest_feasible(x, x_adv - x, 1.0)

    def __repr__(self) -> str:
        cap = "" if self.linf_cap is None else f", linf_cap={self.linf_cap:g}"
        return f"{type(self).__name__}({self.value:g}{cap})"

    def __str__(self) -> str:
        cap = "" if self.linf_cap is None else f",linf:{self.linf_cap:g}"
        return f"{self.kind}:{self.value:g}{cap}"

    def __eq__(self, other: object) -> bool:
        return (type(self) is type(other) and self.value == other.value  # type: ignore[attr-defined]
                and self.linf_cap == other.linf_cap)  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.value, self.linf_cap))

    @staticmethod
    def _positive(value: float, what: str) -> float:
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise BudgetError(f"{what} must be a number, got {value!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise BudgetError(f"{what} must be a positive finite number, got {value!r}")
        return value


class MSE(Budget):
    """``mean((x_adv - x)²) <= tau`` per image, in [0, 1]² units (Chen & Ma's distortion budget)."""

    kind = "mse"

    def __init__(self, tau: float = 1e-4, linf_cap: float | None = None):
        self.value = self.tau = self._positive(tau, "MSE budget")
        self._set_cap(linf_cap)

    def _fits(self, d: torch.Tensor) -> torch.Tensor:
        limit = self.tau * d.shape[1] * 255.0**2
        return (d * d).sum(1, dtype=torch.float64) <= limit * (1 + _SLACK)

    def measure(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        d = _grid_diff(x, x_adv)
        return (d * d).mean(1) / 255.0**2

    def radius(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0],), math.sqrt(self.tau * x[0].numel()), dtype=x.dtype, device=x.device)

    def smallest_change_fits(self, num_values: int) -> bool:
        return 1.0 <= self.tau * num_values * 255.0**2 * (1 + _SLACK)


class PSNR(MSE):
    """Input PSNR of at least ``db`` dB per image: ``PSNR(40)`` is ``MSE(1e-4)``."""

    kind = "psnr"

    def __init__(self, db: float = 40.0, linf_cap: float | None = None):
        db = self._positive(db, "PSNR budget (dB)")
        super().__init__(10.0 ** (-db / 10.0), linf_cap)
        self.value = self.db = db

    def measure(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        mse = super().measure(x, x_adv)
        return torch.where(mse > 0, -10 * torch.log10(mse.clamp_min(1e-300)), torch.full_like(mse, math.inf))


class Linf(Budget):
    """``max |x_adv - x| <= eps / 255`` per image (``eps`` in 8-bit steps, e.g. ``Linf(8)``)."""

    kind = "linf"
    is_linf = True

    def __init__(self, eps: float = 8.0, linf_cap: float | None = None):
        self.value = self.eps = self._positive(eps, "L∞ budget (in 1/255 units)")
        self._set_cap(linf_cap)

    def _fits(self, d: torch.Tensor) -> torch.Tensor:
        return d.abs().amax(1) <= self.eps * (1 + _SLACK)

    def measure(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        return _grid_diff(x, x_adv).abs().amax(1)

    def radius(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0],), self.eps / 255.0, dtype=x.dtype, device=x.device)

    def smallest_change_fits(self, num_values: int) -> bool:
        return 1.0 <= self.eps * (1 + _SLACK)


class L2(Budget):
    """``||x_adv - x||_2 <= eps`` per image, over all ``3·H·W`` values in [0, 1] units."""

    kind = "l2"

    def __init__(self, eps: float = 1.0, linf_cap: float | None = None):
        self.value = self.eps = self._positive(eps, "L2 budget")
        self._set_cap(linf_cap)

    def _fits(self, d: torch.Tensor) -> torch.Tensor:
        return (d * d).sum(1, dtype=torch.float64) <= (self.eps * 255.0) ** 2 * (1 + _SLACK)

    def measure(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        return _grid_diff(x, x_adv).norm(dim=1) / 255.0

    def radius(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0],), self.eps, dtype=x.dtype, device=x.device)

    def smallest_change_fits(self, num_values: int) -> bool:
        return 1.0 <= (self.eps * 255.0) ** 2 * (1 + _SLACK)


#: Budget kinds by the name used in specs (``psnr:40``).
BUDGETS: dict[str, type[Budget]] = {"psnr": PSNR, "mse": MSE, "linf": Linf, "l2": L2}


def _parse_part(part: str, spec: str) -> tuple[str, str]:
    m = re.fullmatch(r"\s*([A-Za-z0-9∞]+)\s*[:=]\s*([^\s,]+)\s*", part)
    kind = m.group(1).lower().replace("∞", "inf") if m else ""
    if not m or kind not in BUDGETS:
        raise BudgetError(f"cannot read budget {spec!r}: use KIND:VALUE with KIND one of {', '.join(BUDGETS)} "
                          "(e.g. psnr:40), optionally with an L∞ cap (e.g. psnr:40,linf:16)")
    return kind, m.group(2)


def parse_budget(spec: str | Budget) -> Budget:
    """``"psnr:40"``, ``"mse:1e-4"``, ``"linf:8"`` (1/255 units) or ``"l2:1.5"`` -> a :class:`Budget`.

    A PSNR, MSE or L2 budget takes an L∞ cap after a comma: ``"psnr:40,linf:16"``
    (``str(parse_budget(s))`` gives the spec back in canonical form).
    """
    if isinstance(spec, Budget):
        return spec
    if not isinstance(spec, str):
        raise BudgetError(f"budget must be a string like 'psnr:40', got {spec!r}")
    parts = spec.split(",")
    if len(parts) > 2:
        raise BudgetError(f"cannot read budget {spec!r}: one ball and at most one L∞ cap, e.g. psnr:40,linf:16")
    kind, value = _parse_part(parts[0], spec)
    cap = None
    if len(parts) == 2:
        cap_kind, cap = _parse_part(parts[1], spec)
        if cap_kind != "linf":
            raise BudgetError(f"cannot read budget {spec!r}: only an L∞ cap may follow the comma "
                              f"(e.g. {kind}:{value},linf:16), not {cap_kind}")
    return BUDGETS[kind](value, linf_cap=cap)  # the constructor validates the values


__all__ = ["BUDGETS", "Budget", "L2", "Linf", "MSE", "PSNR", "parse_budget"]
