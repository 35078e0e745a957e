"""Diagnostics without an attack: how much a codec can amplify a perturbation, and where it does.

Two measurements of a learned codec at an image ``x`` (issue 16):

* **The amplification spectrum** (:func:`jacobian_spectrum`): the top singular values σ₁ ≥ σ₂ ≥ …
  of the Jacobian J of the relaxed codec ``x ↦ x̂`` at ``x`` - the map attacks differentiate through
  (``codec.forward(x, standin)``; by default ``standin="none"``, g_s(g_a(x)), the one the ``paper``
  attack optimises). Linearised, a perturbation δ changes the reconstruction by Jδ, and
  ‖Jδ‖ ≤ σ₁‖δ‖: ``gain-db`` = 20·log10 σ₁ is the worst-case linear gain. Chen & Ma's VI
  (``delta-psnr``) = 10·log10(MSE(x̂′, x̂) / MSE(x′, x)) = 20·log10(‖Δx̂‖ / ‖δ‖) is the same ratio for
  the δ an attack found, measured on real bitstreams, so the two read on one scale: a VI close to
  ``gain-db`` means the attack found (nearly) the worst direction; a VI above it comes from what the
  linearisation leaves out (quantisation, the nonlinearity over the size of δ).
* **The layer-wise magnify ratio** (:func:`layer_magnify`, Wu et al. 2024): for every layer of g_a
  and g_s (and h_a, h_s when the forward runs them) the relative distance between the activations of
  ``x_adv`` and ``x`` divided by the relative distance at the input,
  (‖a_l(x′) − a_l(x)‖ / ‖a_l(x)‖) / (‖x′ − x‖ / ‖x‖): above 1, the layer has grown the perturbation
  relative to the signal.

:func:`analyze_images` runs both over a set of images, with an attack per image (default: ``paper``
at ``psnr:35``, 20 steps) whose VI comes from real bitstreams through the one attack path
(:func:`robustnic.attacks.attack_and_verify`), and the Spearman rank correlation between the gain and
the VI over the images (:func:`spearman`). ``robustnic analyze`` is its command line; the grid's
``analyze`` job kind runs :func:`analyze_image` on one image.

The spectrum is computed by Golub-Kahan-Lanczos bidiagonalisation with full reorthogonalisation,
each step one Jacobian-vector product (Jv, by double backward) and one vector-Jacobian product (Jᵀu);
the network's forward and its backward graph are built once per image. It stops when every one of
the top ``k`` values changes by less than ``tol`` (relative) from one step to the next, or after
``iters`` steps (``converged`` says which). Each value's residual ‖Jᵀũ − σṽ‖ is reported too: a
singular value of J lies within it of the estimate. Everything is deterministic: the start vector
comes from ``seed`` and the default stand-in draws no noise.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import torch
from tqdm.auto import tqdm

from robustnic.codecs.base import Codec
from robustnic.data.images import check_image_tensor, quantize_8bit
from robustnic.errors import RobustnicError
from robustnic.utils.tables import is_finite_number

if TYPE_CHECKING:
    from robustnic.attacks.pipeline import AttackSettings

#: Stand-ins the spectrum can use: both are deterministic (``noise`` draws a new Jacobian every call).
SPECTRUM_STANDINS = ("none", "ste")
#: Transforms whose layers :func:`layer_magnify` hooks, in this order of preference (those the net has).
TRANSFORMS = ("g_a", "h_a", "h_s", "g_s")
#: Defaults of :func:`analyze_images` (and ``robustnic analyze``).
DEFAULT_ATTACK, DEFAULT_BUDGET, DEFAULT_STEPS = "paper", "psnr:35", 20
DEFAULT_K, DEFAULT_ITERS, DEFAULT_TOL = 3, 40, 1e-3
#: The per-image keys :func:`analyze_image` writes (attack keys only when an attack ran).
IMAGE_KEYS = ("image", "height", "width", "gain-db", "sigmas", "iterations", "converged", "residuals",
              "spectrum-time", "psnr-in", "psnr-clean", "psnr-out", "psnr-drop", "delta-psnr", "linear-db",
              "alignment", "bpp-clean", "bpp-adv", "attack-time")


# ----- the Jacobian of the relaxed codec -----------------------------------------------------------------
class Linearisation:
    """The Jacobian J of ``x ↦ codec.forward(x, standin).x_hat`` at one image, as two products.

    The forward and the first backward (with its graph) are built once; :meth:`jvp` (Jv, a backward
    of the backward) and :meth:`vjp` (Jᵀu) reuse them. ``x`` is ``(1, 3, H, W)``; vectors have its shape
    (``jvp``) or the reconstruction's (``vjp``), which is the same.
    """

    def __init__(self, codec: Codec, x: torch.Tensor, standin: str = "none"):
        if standin not in SPECTRUM_STANDINS:
            raise RobustnicError(f"the spectrum needs a deterministic stand-in ({', '.join(SPECTRUM_STANDINS)}), "
                                 f"got {standin!r}")
        x = check_image_tensor(x)
        if x.shape[0] != 1:
            raise RobustnicError(f"the spectrum is taken at one image, got a batch of {x.shape[0]}")
        self.x = x.detach().to(codec.device, torch.float32).clone().requires_grad_(True)
        with torch.enable_grad():
            self.out = codec.forward(self.x, standin=standin).x_hat
            self._dummy = torch.zeros_like(self.out, requires_grad=True)
            (self._g,) = torch.autograd.grad(self.out, self.x, self._dummy, create_graph=True, allow_unused=True)
        if self._g is None:
            raise RobustnicError(f"{codec.name}'s reconstruction does not depend on its input through autograd")

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        """Jv (``v`` shaped like the image)."""
        (r,) = torch.autograd.grad(self._g, self._dummy, v, retain_graph=True, allow_unused=True)
        return torch.zeros_like(self.out) if r is None else r

    def vjp(self, u: torch.Tensor) -> torch.Tensor:
        """Jᵀu (``u`` shaped like the reconstruction)."""
        (r,) = torch.autograd.grad(self.out, self.x, u, retain_graph=True)
        return r


@dataclass
class Spectrum:
    """The top singular values of the relaxed codec's Jacobian at one image (:func:`jacobian_spectrum`)."""

    #: σ₁ ≥ σ₂ ≥ … (at most ``k``; fewer when the Krylov space closed early).
    sigmas: list[float]
    #: 20·log10 σ₁: the worst-case linear gain in dB (the VI scale).
    gain_db: float
    #: Lanczos steps used (each one Jv and one Jᵀu).
    iterations: int
    #: Whether every value changed by less than ``tol`` over the last step (or the space closed).
    converged: bool
    #: Per value, ‖Jᵀũ − σṽ‖ of its Ritz pair (a true singular value lies within it).
    residuals: list[float]
    standin: str
    seconds: float
    #: The top right singular vector (unit norm, the image's shape, on the CPU): the input direction
    #: the codec amplifies most, linearised.
    direction: torch.Tensor | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe values (the direction left out)."""
        return {"sigmas": self.sigmas, "gain-db": self.gain_db, "iterations": self.iterations,
                "converged": self.converged, "residuals": self.residuals, "standin": self.standin,
                "seconds": self.seconds}


def _orthogonalise(w: torch.Tensor, basis: Sequence[torch.Tensor]) -> torch.Tensor:
    """``w`` minus its projection onto the (orthonormal) ``basis``, twice over (classical Gram-Schmidt, twice)."""
    if not basis:
        return w
    stack = torch.stack([b.flatten() for b in basis])
    flat = w.flatten()
    for _ in range(2):
        flat = flat - stack.T @ (stack @ flat)
    return flat.view_as(w)


def _gain_db(sigma: float) -> float:
    return 20 * math.log10(sigma) if sigma > 0 else -math.inf


def jacobian_spectrum(
    codec: Codec,
    x: torch.Tensor,
    k: int = DEFAULT_K,
    iters: int = DEFAULT_ITERS,
    tol: float = DEFAULT_TOL,
    seed: int = 0,
    standin: str = "none",
) -> Spectrum:
    """The top ``k`` singular values of the Jacobian of the relaxed codec at image ``x`` ``(1, 3, H, W)``.

    The map is ``x ↦ codec.forward(x, standin).x_hat`` (no clamping, no 8-bit rounding): with the
    default ``standin="none"`` it is g_s(g_a(x)), what the ``paper`` attack differentiates; ``"ste"``
    rounds the latents (gradients pass straight through). Golub-Kahan-Lanczos bidiagonalisation with
    full reorthogonalisation from a start vector drawn under ``seed``; it stops after ``iters`` steps
    or once every one of the top ``k`` estimates changed by less than ``tol`` (relative) over one step
    (module docstring). ``gain_db`` = 20·log10 σ₁.

    >>> s = jacobian_spectrum(codec, x)                       # doctest: +SKIP
    >>> s.gain_db, s.sigmas, s.iterations, s.converged        # doctest: +SKIP
    """
    if k < 1 or iters < 1:
        raise RobustnicError(f"k and iters must be at least 1, got k={k}, iters={iters}")
    if not tol > 0:
        raise RobustnicError(f"tol must be positive, got {tol}")
    t0 = time.perf_counter()
    op = Linearisation(codec, x, standin)
    shape = op.x.shape
    generator = torch.Generator().manual_seed(int(seed))
    v = torch.randn(shape, generator=generator).to(op.x.device)
    v = v / v.norm()
    vs: list[torch.Tensor] = [v]
    us: list[torch.Tensor] = []
    alphas: list[float] = []
    betas: list[float] = []
    previous: list[float] | None = None
    converged = False
    svd = None
    steps = 0
    for j in range(min(iters, shape.numel())):
        steps = j + 1
        u = op.jvp(vs[-1])
        u = _orthogonalise(u, us)
        alpha = float(u.norm())
        if alpha <= 1e-12 * max(alphas, default=1.0):  # the Krylov space closed: the values are exact
            converged = True
            steps = j
            break
        us.append(u / alpha)
        alphas.append(alpha)
        w = _orthogonalise(op.vjp(us[-1]), vs)
        beta = float(w.norm())
        n = len(alphas)
        bidiagonal = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if n > 1:
            bidiagonal += torch.diag(torch.tensor(betas, dtype=torch.float64), 1)
        p, s, qt = torch.linalg.svd(bidiagonal)
        svd = (p, s, qt, beta)
        top = s[:k].tolist()
        closed = beta <= 1e-12 * alphas[0]
        if closed or (previous is not None and len(top) == len(previous) and len(top) == min(k, shape.numel())
                      and all(abs(a - b) <= tol * abs(a) for a, b in zip(top, previous))):
            converged = True
            break
        previous = top
        betas.append(beta)
        vs.append(w / beta)
    if svd is None:  # J is zero on the start vector's Krylov space
        return Spectrum([0.0], -math.inf, steps, True, [0.0], standin, time.perf_counter() - t0,
                        torch.zeros(shape))
    p, s, qt, beta = svd
    n = len(s)
    sigmas = s[:k].tolist()
    residuals = [beta * abs(float(p[n - 1, i])) for i in range(len(sigmas))]
    basis = torch.stack([b.flatten() for b in vs[:n]]).double()  # rows v_1 .. v_n
    direction = (qt[0] @ basis).float().view(shape).cpu()
    direction = direction / direction.norm().clamp_min(1e-30)
    return Spectrum(sigmas, _gain_db(sigmas[0]), steps, converged, residuals, standin,
                    time.perf_counter() - t0, direction)


def linear_gain_db(codec: Codec, x: torch.Tensor, delta: torch.Tensor, standin: str = "none") -> float:
    """20·log10(‖Jδ‖ / ‖δ‖) at image ``x``: the linearised gain of one perturbation ``delta`` (its VI if
    the codec were its own linearisation; at most :func:`jacobian_spectrum`'s ``gain_db``)."""
    norm = float(delta.norm())
    if norm == 0:
        return math.nan
    op = Linearisation(codec, x, standin)
    return _gain_db(float(op.jvp(delta.to(op.x.device, torch.float32)).norm()) / norm)


# ----- layer-wise magnify ratio ----------------------------------------------------------------------------
def _net_of(codec: Codec) -> torch.nn.Module:
    net = getattr(codec, "net", None)
    if not isinstance(net, torch.nn.Module) or not all(hasattr(net, t) for t in ("g_a", "g_s")):
        raise RobustnicError(f"layer magnify ratios need a learned codec with g_a and g_s; {codec.name} has none")
    return net


def _layers(net: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """``(path, module)`` of every layer of the transforms the net has: the children of each of
    g_a, h_a, h_s, g_s (the transform itself when it has none)."""
    out = []
    for name in TRANSFORMS:
        transform = getattr(net, name, None)
        if not isinstance(transform, torch.nn.Module):
            continue
        children = list(transform.named_children())
        out += [(f"{name}.{c}", m) for c, m in children] if children else [(name, transform)]
    return out


def _activations(codec: Codec, x: torch.Tensor, standin: str) -> dict[str, torch.Tensor]:
    """The output of every layer (:func:`_layers`) in the forward of ``x``, in call order, plus
    ``input`` (what g_a sees) and ``y_hat`` (what g_s sees, when it differs from g_a's output)."""
    net = _net_of(codec)
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable:
        def hook(module, inputs, output):
            if name not in seen and isinstance(output, torch.Tensor):  # a copy: a later ReLU may work in place
                seen[name] = output.detach().to("cpu", torch.float32, copy=True)
        return hook

    def keep_input(name: str) -> Callable:
        def hook(module, inputs):
            if name not in seen and inputs and isinstance(inputs[0], torch.Tensor):
                seen[name] = inputs[0].detach().to("cpu", torch.float32, copy=True)
        return hook

    handles = [net.g_a.register_forward_pre_hook(keep_input("input"))]
    if standin != "none":
        handles.append(net.g_s.register_forward_pre_hook(keep_input("y_hat")))
    handles += [m.register_forward_hook(keep(name)) for name, m in _layers(net)]
    try:
        with torch.no_grad():
            codec.forward(x.to(codec.device), standin=standin)
    finally:
        for h in handles:
            h.remove()
    return seen


def layer_magnify(
    codec: Codec, x: torch.Tensor, x_adv: torch.Tensor, standin: str = "ste"
) -> list[dict[str, Any]]:
    """The magnify ratio of ``x_adv`` vs ``x`` (``(1, 3, H, W)`` each) at every layer of the codec's
    transforms, in the order the forward runs them (Wu et al. 2024).

    One row per layer, the first for the input (what g_a sees; its ratio is 1 by definition):
    ``layer`` (module path, ``g_a.1``), ``type`` (``GDN``), ``name`` (``"g_a.1 GDN"``), ``transform``,
    ``shape`` (C, H, W), ``distance`` ‖Δa‖, ``relative`` ‖Δa‖/‖a(x)‖, ``magnify`` = ``relative`` divided
    by the input's, and ``rms-gain`` = (‖Δa‖/√n_a) / (‖Δx‖/√n_x) (change per element vs the input's).

    ``standin="ste"`` (default) runs the codec's quantised forward, so g_s sees the rounded latents
    the decoder sees (a ``y_hat`` row before g_s) and the hyperprior's h_a and h_s run too;
    ``"none"`` runs g_s(g_a(x)), the attack's relaxation. Layers are the children of g_a, h_a, h_s
    and g_s (the transforms a net has).
    """
    if standin not in SPECTRUM_STANDINS:
        raise RobustnicError(f"layer magnify needs a deterministic stand-in ({', '.join(SPECTRUM_STANDINS)}), "
                             f"got {standin!r}")
    x, x_adv = check_image_tensor(x), check_image_tensor(x_adv)
    if x.shape != x_adv.shape or x.shape[0] != 1:
        raise RobustnicError(f"layer magnify takes two images of one shape, got {tuple(x.shape)} and {tuple(x_adv.shape)}")
    clean, adv = _activations(codec, x, standin), _activations(codec, x_adv, standin)
    types = {name: type(m).__name__ for name, m in _layers(_net_of(codec))}
    types |= {"input": "image", "y_hat": "quantised latent"}
    rows: list[dict[str, Any]] = []
    base: tuple[float, float] | None = None
    for name, a in clean.items():
        b = adv.get(name)
        if b is None or b.shape != a.shape:
            continue
        dist, norm = float((b - a).norm()), float(a.norm())
        relative = dist / norm if norm > 0 else math.nan
        rms = dist / math.sqrt(a.numel())
        if base is None:  # the input row comes first (g_a's pre-hook fires before any layer)
            base = (relative, rms)
        magnify = relative / base[0] if base[0] and math.isfinite(base[0]) else math.nan
        rms_gain = rms / base[1] if base[1] > 0 else math.nan
        transform = "input" if name == "input" else "g_s" if name == "y_hat" else name.split(".")[0]
        rows.append({"layer": name, "type": types.get(name, "?"), "name": f"{name} {types.get(name, '?')}",
                     "transform": transform, "shape": list(a.shape[1:]), "distance": dist, "relative": relative,
                     "magnify": magnify, "rms-gain": rms_gain})
    return rows


# ----- rank correlation ---------------------------------------------------------------------------------
def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n, ties given the mean of the ranks they share."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for m in range(i, j + 1):
            ranks[order[m]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _pearson(a: Sequence[float], b: Sequence[float]) -> float | None:
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    va, vb = sum((x - ma) ** 2 for x in a), sum((y - mb) ** 2 for y in b)
    return cov / math.sqrt(va * vb) if va > 0 and vb > 0 else None


def spearman(a: Sequence[Any], b: Sequence[Any]) -> tuple[float | None, float | None]:
    """Spearman's rank correlation of paired values and its two-sided p-value.

    Pairs with a missing or non-finite value are left out; fewer than 3 pairs left, or a constant
    side, give ``(None, None)``. Uses :func:`scipy.stats.spearmanr` when SciPy is installed (it comes
    with scikit-image); otherwise the rank correlation is computed here (ties share their mean rank)
    and the p-value is None.
    """
    pairs = [(float(x), float(y)) for x, y in zip(a, b) if is_finite_number(x) and is_finite_number(y)]
    if len(pairs) < 3:
        return None, None
    xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    if len(set(xs)) == 1 or len(set(ys)) == 1:
        return None, None
    try:
        from scipy.stats import spearmanr
    except ImportError:
        return _pearson(_ranks(xs), _ranks(ys)), None
    res = spearmanr(xs, ys)
    rho, p = float(res[0]), float(res[1])
    return (rho if math.isfinite(rho) else None), (p if math.isfinite(p) else None)


# ----- over images ----------------------------------------------------------------------------------------
#: The pairs :func:`correlations` reports: (x, y) keys of the per-image rows; the first is the headline.
CORRELATED = (("gain-db", "delta-psnr"), ("gain-db", "psnr-drop"), ("linear-db", "delta-psnr"))


def correlations(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Spearman correlations over per-image rows (:data:`CORRELATED`): ``x``, ``y``, ``n`` (pairs with
    both values), ``spearman`` and ``p-value`` (None below 3 pairs). Pairs neither row has are left out."""
    out = []
    for kx, ky in CORRELATED:
        if not any(kx in r and ky in r for r in rows):
            continue
        pairs = [(r.get(kx), r.get(ky)) for r in rows if is_finite_number(r.get(kx)) and is_finite_number(r.get(ky))]
        rho, p = spearman([a for a, _ in pairs], [b for _, b in pairs])
        out.append({"x": kx, "y": ky, "n": len(pairs), "spearman": rho, "p-value": p})
    return out


def attack_settings(attack: str = DEFAULT_ATTACK, budget: str = DEFAULT_BUDGET, steps: int | None = DEFAULT_STEPS,
                    seed: int = 0, standin: str = "none") -> "AttackSettings":
    """The attack :func:`analyze_images` runs by default: ``paper`` at ``psnr:35``, 20 steps, through
    the stand-in the spectrum is taken of."""
    from robustnic.attacks.pipeline import AttackSettings

    return AttackSettings(method=attack, budget=budget, steps=steps, seed=seed, standin=standin)


def analyze_image(
    codec: Codec,
    x: torch.Tensor,
    settings: "AttackSettings | None" = None,
    k: int = DEFAULT_K,
    iters: int = DEFAULT_ITERS,
    tol: float = DEFAULT_TOL,
    seed: int = 0,
    standin: str = "none",
    layer_standin: str = "ste",
) -> tuple[dict[str, Any], list[dict[str, Any]], torch.Tensor | None]:
    """One image: ``(row, layer rows, adversarial image or None)``.

    The row holds the spectrum (``gain-db``, ``sigmas``, ``iterations``, ``converged``, ``residuals``,
    ``spectrum-time``) and, with attack ``settings``, the attack's real-bitstream numbers
    (``delta-psnr`` = VI, ``psnr-in``, ``psnr-clean``, ``psnr-out``, ``psnr-drop``, ``bpp-clean``,
    ``bpp-adv``, ``attack-time``), ``linear-db`` (20·log10 ‖Jδ‖/‖δ‖ of the attack's 8-bit δ) and
    ``alignment`` (|cos| between δ and the top right singular vector). The layer rows are
    :func:`layer_magnify`'s for the adversarial image (none without an attack).
    """
    x = check_image_tensor(x).detach().cpu().float()
    spectrum = jacobian_spectrum(codec, x, k=k, iters=iters, tol=tol, seed=seed, standin=standin)
    row: dict[str, Any] = {"height": int(x.shape[-2]), "width": int(x.shape[-1]), "gain-db": spectrum.gain_db,
                           "sigmas": spectrum.sigmas, "iterations": spectrum.iterations,
                           "converged": spectrum.converged, "residuals": spectrum.residuals,
                           "spectrum-time": spectrum.seconds}
    if settings is None:
        return row, [], None
    from robustnic.attacks.pipeline import attack_and_verify

    outcome = attack_and_verify(codec, x, settings)
    x_adv = quantize_8bit(outcome.x_adv[:1])
    verified = outcome.rows[0]
    row |= {k: verified.get(k) for k in ("psnr-in", "psnr-clean", "psnr-out", "psnr-drop", "delta-psnr",
                                          "bpp-clean", "bpp-adv")}
    delta = x_adv - x
    row["linear-db"] = linear_gain_db(codec, x, delta, standin)
    norm = float(delta.norm())
    row["alignment"] = (abs(float((delta.flatten() @ spectrum.direction.flatten()))) / norm
                        if norm > 0 and spectrum.direction is not None else math.nan)
    row["attack-time"] = outcome.elapsed
    return row, layer_magnify(codec, x, x_adv, standin=layer_standin), x_adv


@dataclass
class Analysis:
    """What :func:`analyze_images` measured (see :func:`analyze_image` for the keys)."""

    #: One row per image (``image`` first).
    images: list[dict[str, Any]]
    #: One row per image and layer (``image`` first).
    layers: list[dict[str, Any]]
    #: :func:`correlations` over the images; the first is gain vs VI.
    correlations: list[dict[str, Any]]
    #: The settings the numbers were measured with.
    settings: dict[str, Any]
    #: Adversarial images by name (8-bit values, CPU).
    adversarial: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def spearman(self) -> float | None:
        """Spearman correlation of ``gain-db`` and the measured VI over the images (None: under 3 images
        or no attack)."""
        first = next((c for c in self.correlations if (c["x"], c["y"]) == CORRELATED[0]), None)
        return None if first is None else first["spearman"]


def analyze_images(
    codec: Codec,
    images: Mapping[str, torch.Tensor],
    attack: str | None = DEFAULT_ATTACK,
    budget: str = DEFAULT_BUDGET,
    steps: int | None = DEFAULT_STEPS,
    k: int = DEFAULT_K,
    iters: int = DEFAULT_ITERS,
    tol: float = DEFAULT_TOL,
    seed: int = 0,
    standin: str = "none",
    layer_standin: str = "ste",
    settings: "AttackSettings | None" = None,
    progress: bool = False,
    skip: Mapping[str, tuple[dict[str, Any], list[dict[str, Any]]]] | None = None,
    on_image: Callable[[str, dict[str, Any], list[dict[str, Any]]], None] | None = None,
) -> Analysis:
    """Spectrum, attack and layer ratios of every image (name -> ``(1, 3, H, W)``), and their correlation.

    The attack is ``attack`` at ``budget`` with ``steps`` steps through ``standin`` (default: ``paper``,
    ``psnr:35``, 20 steps, ``none``), or ``settings`` when given; ``attack=None`` measures the
    spectrum alone. ``skip`` holds images already measured (name -> (row, layer rows)), which are
    reused as they are; ``on_image`` is called after each image measured here.

    >>> a = analyze_images(codec, bundled_photos(crop=256))    # doctest: +SKIP
    >>> [(r["image"], r["gain-db"], r["delta-psnr"]) for r in a.images], a.spearman   # doctest: +SKIP
    """
    if settings is None and attack is not None:
        settings = attack_settings(attack, budget, steps, seed, standin)
    rows: list[dict[str, Any]] = []
    layers: list[dict[str, Any]] = []
    adversarial: dict[str, torch.Tensor] = {}
    skip = skip or {}
    for name, x in tqdm(images.items(), desc=f"analyze {codec.name}", disable=not progress, leave=False):
        if name in skip:
            row, layer_rows = skip[name]
        else:
            row, layer_rows, x_adv = analyze_image(codec, x, settings, k, iters, tol, seed, standin, layer_standin)
            row = {"image": name} | row
            layer_rows = [{"image": name} | r for r in layer_rows]
            if x_adv is not None:
                adversarial[name] = x_adv
            if on_image is not None:
                on_image(name, row, layer_rows)
        rows.append(row)
        layers.extend(layer_rows)
    used = {"codec": codec.name, "k": k, "iters": iters, "tol": tol, "seed": seed, "standin": standin,
            "layer-standin": layer_standin, "attack": settings.as_dict() if settings is not None else None}
    return Analysis(rows, layers, correlations(rows), used, adversarial)


__all__ = ["Analysis", "CORRELATED", "IMAGE_KEYS", "Linearisation", "SPECTRUM_STANDINS", "Spectrum",
           "analyze_image", "analyze_images", "attack_settings", "correlations", "jacobian_spectrum",
           "layer_magnify", "linear_gain_db", "spearman"]
