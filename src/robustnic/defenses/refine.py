"""Latent refinement at the encoder: the encoder optimises the latents it codes, the decoder is unchanged.

Yang et al. (NeurIPS 2020) showed that a learned codec's analysis transform ``g_a`` is not the best
encoder for its own decoder: optimising the latents of each image for a few steps gains rate-
distortion. Wu et al. (2024, "online updating") use the same idea against adversarial inputs: a
perturbation that the decoder would amplify is simply not what a refining encoder chooses to send.

What :class:`RefinedCodec` does at compress time, per image ``x``:

1. ``y = g_a(x)`` and, for hyperprior models, ``z = h_a(y)`` (``|y|`` for the scale hyperprior);
2. ``steps`` Adam steps without momentum (β1 = 0, β2 = 0.999; learning rate ``lr``, cosine-decayed
   to 0 by default) on the rate-distortion loss of the **decoded** image against the encoder's input,
   CompressAI's training loss with real quantisation::

       λ·255²·MSE(clamp(g_s(Q(y))), x) + (bits(Q(y) | z) + bits(Q(z))) / pixels

   where ``Q`` is the coder's own rounding (around the entropy bottleneck's medians, around the
   predicted means for mean-scale models) with a straight-through gradient (round forward,
   identity backward), the bits come from the entropy model's likelihoods, and ``λ`` is the
   model's training λ (its manifest row; CompressAI's λ for its quality otherwise; or ``lmbda``);
3. the best iterate by that loss is kept (the start is iterate 0); then the start and the best are
   both entropy-coded and the one with the lower *real* loss (exact coded bits, the decoder's
   reconstruction) is sent, so refinement never makes an image's real RD loss worse;
4. the chosen ``y`` and ``z`` are coded by the model's normal entropy coder.

The stream is a plain stream of the wrapped model: :meth:`decompress` is the plain model's, and
``robustnic decompress -m MODEL`` decodes it (only the encoder changed).

**z** (hyperprior models): ``z_mode="free"`` (default) optimises ``z`` jointly with ``y`` as a
second free variable (the encoder codes both, so both are its choice; Yang et al. do the same);
``z_mode="recompute"`` keeps ``z = h_a(y)`` at every step (the gradient flows through ``h_a``).

Attack modes (what :meth:`RefinedCodec.forward` differentiates; :func:`~robustnic.defenses.attack_defense`
runs every one and keeps the worst per image):

* ``"bpda"`` (default) - the forward value is the refined reconstruction; the gradient is the plain
  codec's relaxed forward evaluated at the refined latents (``y = g_a(x) + (y* - g_a(x))`` with the
  refinement displacement held constant; Athalye et al. 2018). One refinement per attack step.
* ``"unroll"`` - differentiates through the refinement itself: Adam steps written with tensor ops and
  second-order gradients (``create_graph``). The first ``unroll`` steps (default: all; the large ones
  under the cosine schedule) are unrolled; the displacement made by later steps is added to that
  iterate as a constant, as ``bpda`` does to ``g_a(x)``. Several times the cost of ``bpda`` per step.
* ``"identity"`` - the plain model's forward: the attack crafted on the undefended model.

The reconstruction the attack sees follows its quantisation stand-in: ``"none"`` decodes the refined
``y`` unrounded (``g_s(y*)``, as the plain codec's ``g_s(g_a(x))``), ``"ste"`` rounds it (what the
decoder gives), ``"noise"`` adds uniform noise. The refinement always uses real rounding.

Supported models: ``bmshj2018-factorized``, ``bmshj2018-hyperprior``, ``mbt2018-mean`` (their ``y``
is coded in parallel given ``z``). Autoregressive models (``mbt2018``, ``cheng2020-*``) and
non-learned codecs are refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from robustnic.codecs.base import STANDINS, Codec, CodecOutput
from robustnic.codecs.learned import PAD_MULTIPLE, LearnedCodec, quantisation_standin
from robustnic.data.images import check_image_tensor, crop_to, pad_to_multiple
from robustnic.defenses.base import DefendedCodec
from robustnic.defenses.ensemble import default_lambda
from robustnic.defenses.registry import register_defense
from robustnic.errors import RobustnicError

#: Architectures whose latents the encoder can refine.
REFINABLE = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean")
#: How :meth:`RefinedCodec.forward` can be attacked (the first is the default).
ATTACK_MODES = ("bpda", "unroll", "identity")
#: What happens to the hyperprior's z during refinement.
Z_MODES = ("free", "recompute")
#: Learning-rate schedules: constant, or cosine decay from ``lr`` to 0 over the steps.
SCHEDULES = ("cosine", "constant")
#: Default number of Adam steps and learning rate (latent units; the quantisation bin is 1).
DEFAULT_STEPS = 20
DEFAULT_LR = 0.2
#: Adam's betas. No momentum: with straight-through rounding a latent's gradient keeps its sign after
#: the latent crosses a rounding boundary, and momentum carried it far past (with β1 = 0.9 the loss rose
#: for ten steps and the refinement often ended no better than g_a; on full photos β1 = 0 gains 8-11%).
_BETAS = (0.0, 0.999)
_EPS = 1e-8


@dataclass
class Refinement:
    """What the refining encoder decided for a batch (one entry per image where it is a list)."""

    #: The latents that are coded, ``(B, M, h, w)``, and the hyperprior's ``(B, N, h/4, w/4)`` (None
    #: for the factorized prior). They carry an attack's graph in the ``bpda``/``unroll`` modes.
    y: torch.Tensor
    z: torch.Tensor | None
    #: Per image: the entropy-coded strings (one per latent, as the model's ``compress``) and the
    #: latent shape its ``decompress`` needs.
    strings: list[list[bytes]]
    shape: tuple[int, ...]
    #: Per image: the real RD loss of the plain latents and of what is sent (``λ·255²·MSE + bpp``
    #: with exact coded bits).
    loss_plain: list[float]
    loss_sent: list[float]
    #: Per image: whether the refined latents were sent (False: the plain ones coded better).
    refined: list[bool]
    #: The estimated loss of every iterate (``steps + 1`` rows of ``(B,)``), iterate 0 = ``g_a(x)``.
    trajectory: list[list[float]]


def parse_refine(value: str) -> dict:
    """Keyword arguments of :class:`RefinedCodec` from the text after ``refine:``.

    Colon-separated parts: ``steps=N``, ``lr=F``, ``lambda=F`` (or ``lmbda=F``), ``z=free|recompute``,
    ``schedule=cosine|constant``, ``unroll=K``, and an attack mode (``bpda``, ``unroll``, ``identity``).
    """
    kwargs: dict = {}
    keys = {"steps": ("steps", int), "lr": ("lr", float), "lambda": ("lmbda", float), "lmbda": ("lmbda", float),
            "z": ("z_mode", str), "unroll": ("unroll", int), "schedule": ("schedule", str)}
    for part in (p.strip().lower() for p in value.split(":") if p.strip()):
        key, eq, text = part.partition("=")
        if not eq and part in ATTACK_MODES:
            kwargs["attack_mode"] = part
            continue
        if not eq or key not in keys:
            raise RobustnicError(
                f"cannot understand {part!r} in refine:{value}: use refine[:steps=N][:lr=F][:lambda=F]"
                f"[:z={'|'.join(Z_MODES)}][:schedule={'|'.join(SCHEDULES)}][:unroll=K][:{'|'.join(ATTACK_MODES)}]"
            )
        name, kind = keys[key]
        if name in kwargs:
            raise RobustnicError(f"refine:{value} gives {key} twice")
        try:
            kwargs[name] = kind(text)
        except ValueError:
            raise RobustnicError(f"cannot read {key}={text!r} in refine:{value}") from None
    return kwargs


@register_defense("refine")
class RefinedCodec(DefendedCodec):
    """Wrap a learned codec with encoder-side latent refinement (see the module docstring).

    Args:
        codec: a :class:`~robustnic.codecs.learned.LearnedCodec` of a refinable architecture
            (:data:`REFINABLE`). In a defense spec, ``refine`` comes last (``jpeg:q90+refine``,
            ``ensemble+refine``): it is the encoder, so it wraps the model itself.
        steps: Adam steps on the latents (0: code ``g_a(x)`` unchanged, the plain stream).
        lr: Adam's (initial) learning rate, in latent units (the quantisation bin is 1).
        schedule: ``"cosine"`` (decay from ``lr`` to 0 over the steps) or ``"constant"``.
        lmbda: the RD trade-off; default the model's training λ (:func:`~robustnic.defenses.ensemble.default_lambda`).
        z_mode: ``"free"`` (optimise z too) or ``"recompute"`` (``z = h_a(y)`` at every step).
        unroll: first steps the ``"unroll"`` attack mode differentiates through (default: all ``steps``).
        attack_mode: what :meth:`forward` differentiates: ``"bpda"``, ``"unroll"`` or ``"identity"``.

    >>> refined = RefinedCodec(load_codec("hyperprior-small:q3"), steps=20)   # doctest: +SKIP
    >>> data = refined.compress(x)                     # a plain hyperprior-small:q3 stream  # doctest: +SKIP
    >>> load_codec("hyperprior-small:q3").decompress(data)                                   # doctest: +SKIP
    """

    defense = "refine"
    attack_modes = ATTACK_MODES

    @classmethod
    def from_spec(cls, codec: Codec, value: str) -> RefinedCodec:
        """The defense ``refine[:VALUE]`` (see :func:`parse_refine`) around ``codec``."""
        try:
            return cls(codec, **parse_refine(value))
        except ValueError as exc:
            raise RobustnicError(str(exc)) from None

    def __init__(
        self,
        codec: Codec,
        steps: int = DEFAULT_STEPS,
        lr: float = DEFAULT_LR,
        lmbda: float | None = None,
        z_mode: str = "free",
        schedule: str = "cosine",
        unroll: int | None = None,
        attack_mode: str = "bpda",
    ):
        if not isinstance(codec, LearnedCodec):
            raise RobustnicError(
                f"refine optimises the latents of a learned model, but {codec.name} is a {type(codec).__name__}; "
                "put refine last in a defense spec (jpeg:q90+refine, ensemble+refine) so that it wraps the model"
            )
        arch = codec.arch.name if codec.arch is not None else type(codec.net).__name__
        if arch not in REFINABLE:
            raise RobustnicError(
                f"refine supports {', '.join(REFINABLE)}; {codec.name} is {arch}"
                + (" (its latents are coded autoregressively)" if arch.startswith(("mbt2018", "cheng2020")) else "")
            )
        if int(steps) < 0 or not lr > 0:
            raise ValueError(f"refine needs steps >= 0 and lr > 0, got steps={steps}, lr={lr}")
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose from {SCHEDULES}")
        if z_mode not in Z_MODES:
            raise ValueError(f"unknown z mode {z_mode!r}; choose from {Z_MODES}")
        if unroll is not None and int(unroll) < 0:
            raise ValueError(f"unroll must be >= 0, got {unroll}")
        super().__init__(codec)
        self.arch, self.net = arch, codec.net
        self.steps, self.lr, self.z_mode, self.schedule = int(steps), float(lr), z_mode, schedule
        self.unroll = None if unroll is None else int(unroll)
        self.lmbda = float(lmbda) if lmbda is not None else default_lambda(codec)
        self.attack_mode = attack_mode

    @property
    def compressai_pretrained(self) -> bool:  # type: ignore[override]
        """The wrapped model's flag (the stream is a plain stream of it)."""
        return self.codec.compressai_pretrained

    # ----- the model, latent by latent ------------------------------------------------------------
    def analyse(self, xp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The plain encoder's latents of a padded batch: ``y = g_a(x)`` and ``z`` (None if factorized)."""
        y = self.net.g_a(xp)
        return y, self.hyper(y)

    def hyper(self, y: torch.Tensor) -> torch.Tensor | None:
        """``z = h_a(y)`` as the model computes it (``h_a(|y|)`` for the scale hyperprior)."""
        if self.arch == "bmshj2018-factorized":
            return None
        return self.net.h_a(torch.abs(y) if self.arch == "bmshj2018-hyperprior" else y)

    def synthesise(
        self, y: torch.Tensor, z: torch.Tensor | None, standin: str = "ste"
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The padded reconstruction of latents ``(y, z)`` and their likelihoods.

        ``standin`` replaces the rounding of ``y`` before ``g_s``: ``"ste"`` (real rounding, identity
        gradient: the decoder's reconstruction), ``"noise"`` or ``"none"`` (``g_s(y)``); the
        likelihoods use real rounding (straight-through) except under ``"noise"``.
        """
        net = self.net
        with quantisation_standin(net, "noise" if standin == "noise" else "ste"):
            if z is None:
                y_hat, lik_y = net.entropy_bottleneck(y)
                likelihoods = {"y": lik_y}
            else:
                z_hat, lik_z = net.entropy_bottleneck(z)
                params = net.h_s(z_hat)
                scales, means = params.chunk(2, 1) if self.arch == "mbt2018-mean" else (params, None)
                y_hat, lik_y = net.gaussian_conditional(y, scales, means=means)
                likelihoods = {"y": lik_y, "z": lik_z}
        return net.g_s(y if standin == "none" else y_hat), likelihoods

    @torch.no_grad()
    def entropy_code(self, y: torch.Tensor, z: torch.Tensor | None) -> tuple[list[list[bytes]], tuple[int, ...]]:
        """Code latents with the model's own entropy coder, as its ``compress`` codes ``g_a(x)``:
        per image the strings (``[y]`` or ``[y, z]``) and the latent shape of the header."""
        net = self.net
        y = y.detach()
        if z is None:
            return [[s] for s in net.entropy_bottleneck.compress(y)], tuple(int(v) for v in y.shape[-2:])
        z = z.detach()
        z_strings = net.entropy_bottleneck.compress(z)
        z_hat = net.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        params = net.h_s(z_hat)
        scales, means = params.chunk(2, 1) if self.arch == "mbt2018-mean" else (params, None)
        y_strings = net.gaussian_conditional.compress(y, net.gaussian_conditional.build_indexes(scales), means=means)
        return [[ys, zs] for ys, zs in zip(y_strings, z_strings)], tuple(int(v) for v in z.shape[-2:])

    def rd_loss(
        self, x_hat: torch.Tensor, likelihoods: dict[str, torch.Tensor], x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image ``(loss, mse)``: ``λ·255²·MSE(clamp(x_hat), x) + bits / pixels`` with the bits
        the likelihoods estimate; ``x_hat`` may be padded (it is cropped to ``x``)."""
        size = tuple(x.shape[-2:])
        mse = ((crop_to(x_hat, size).clamp(0, 1) - x) ** 2).flatten(1).mean(1)
        bits = sum(-torch.log2(v).flatten(1).sum(1) for v in likelihoods.values())
        return self.lmbda * 255.0**2 * mse + bits / (size[0] * size[1]), mse

    # ----- the refining encoder ---------------------------------------------------------------------
    def lr_at(self, t: int) -> float:
        """Learning rate of step ``t`` (0-based): ``lr``, or cosine-decayed from ``lr`` towards 0."""
        if self.schedule == "constant":
            return self.lr
        return self.lr * 0.5 * (1 + math.cos(math.pi * t / self.steps))

    def refine(self, x: torch.Tensor, mode: str | None = None) -> Refinement:
        """Refine the latents of a batch ``x`` (``(B, 3, H, W)``, transformed already) and choose, per
        image, between them and the plain latents by real RD loss (module docstring, steps 1-3).

        ``mode`` None: nothing carries a gradient. ``"bpda"`` or ``"unroll"``: the returned latents
        carry a graph to ``x`` as that attack mode defines it (module docstring).
        """
        graph = mode in ("bpda", "unroll")
        xp, _ = pad_to_multiple(x, PAD_MULTIPLE)
        with torch.set_grad_enabled(graph):
            y0, z0 = self.analyse(xp)  # the graph of the plain encoder (bpda/unroll), else constants
        free_z = z0 is not None and self.z_mode == "free"
        starts = [y0] + ([z0] if free_z else [])
        # steps t < K are unrolled (second-order graph); from iterate K on, the displacement from the
        # iterate K (the "anchor"; g_a's output for bpda) is a constant added to it
        K = 0 if mode != "unroll" else self.steps if self.unroll is None else min(self.unroll, self.steps)

        def latents(params: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
            return params[0], (params[1] if free_z else self.hyper(params[0]))

        # fresh nodes: the gradient is then the partial one per variable (z0 = h_a(y0) must not pass
        # its gradient on to y0)
        params = [p.clone() for p in starts] if graph else [p.detach().requires_grad_(True) for p in starts]
        anchor: list[torch.Tensor] | None = None
        m = [torch.zeros_like(p) for p in params]
        v = [torch.zeros_like(p) for p in params]
        best: list[torch.Tensor] | None = None
        best_loss = best_mse = torch.empty(0)
        loss0 = mse0 = None
        trajectory: list[list[float]] = []
        scale = float(x.shape[-2] * x.shape[-1])
        with torch.enable_grad():
            for t in range(self.steps + 1):
                if graph and t == K:
                    anchor = params
                    params = [p.detach().requires_grad_(True) for p in params]
                    m, v = [a.detach() for a in m], [b.detach() for b in v]
                live = graph and t < K
                y, z = latents(params)
                x_hat, lk = self.synthesise(y, z, "ste")
                loss, mse = self.rd_loss(x_hat, lk, x if live else x.detach())
                if t == 0:
                    loss0, mse0 = loss.detach(), mse.detach()
                if live:
                    kept = params
                elif anchor is not None:
                    kept = [a + (p - a).detach() for a, p in zip(anchor, params)]
                else:
                    kept = [p.detach() for p in params]
                if best is None:
                    best, best_loss, best_mse = kept, loss.detach(), mse.detach()
                else:
                    better = loss.detach() < best_loss
                    sel = better.view(-1, *([1] * (y.dim() - 1)))
                    best = [torch.where(sel, k, b) for k, b in zip(kept, best)]
                    best_loss = torch.where(better, loss.detach(), best_loss)
                    best_mse = torch.where(better, mse.detach(), best_mse)
                trajectory.append(loss.detach().tolist())
                if t == self.steps:
                    break
                # Adam on the summed bits + λ·255²·SSE (per-element gradients of order one)
                grads = torch.autograd.grad(loss.sum() * scale, params, create_graph=live)
                b1, b2 = _BETAS
                lr = self.lr_at(t)
                step = []
                for i, (p, g) in enumerate(zip(params, grads)):
                    m[i] = b1 * m[i] + (1 - b1) * g
                    v[i] = b2 * v[i] + (1 - b2) * g * g
                    m_hat, v_hat = m[i] / (1 - b1 ** (t + 1)), v[i] / (1 - b2 ** (t + 1))
                    step.append(p - lr * m_hat / ((v_hat + _EPS**2).sqrt() + _EPS))
                params = step if live else [p.detach().requires_grad_(True) for p in step]
        assert best is not None and loss0 is not None and mse0 is not None
        y_best, z_best = latents(best)
        # real bits of both candidates: send the refined latents only where they really code better
        strings0, shape = self.entropy_code(y0, z0)
        moved = bool((best_loss < loss0).any())  # else the best iterate is the start: code it once
        strings1 = self.entropy_code(y_best, z_best)[0] if moved else strings0
        mse1 = best_mse  # the decoder's reconstruction: the loss used real rounding
        n_px = x.shape[-2] * x.shape[-1]
        real0 = [self.lmbda * 255.0**2 * float(e) + _bits(s) / n_px for e, s in zip(mse0, strings0)]
        real1 = [self.lmbda * 255.0**2 * float(e) + _bits(s) / n_px for e, s in zip(mse1, strings1)]
        refined = [r1 < r0 for r0, r1 in zip(real0, real1)]
        use = torch.tensor(refined, device=y0.device).view(-1, *([1] * (y0.dim() - 1)))
        y_start, z_start = latents(starts)
        y_sent = torch.where(use, y_best, y_start)
        z_sent = None if z0 is None else torch.where(use, z_best, z_start)  # type: ignore[arg-type]
        return Refinement(
            y=y_sent, z=z_sent, strings=[s1 if r else s0 for r, s0, s1 in zip(refined, strings0, strings1)],
            shape=shape, loss_plain=real0, loss_sent=[min(a, b) for a, b in zip(real0, real1)], refined=refined,
            trajectory=trajectory,
        )

    def _encode(self, x: torch.Tensor) -> tuple[list[bytes], tuple[int, ...]]:
        """Entropy-code the refined latents of one (transformed) image."""
        out = self.refine(x.to(self.device))
        return out.strings[0], out.shape

    def compress(self, x: torch.Tensor, transform: int | None = None) -> bytes:
        """Encode one image with refined latents; the container is the wrapped model's (a plain stream)."""
        return Codec.compress(self, x, 0 if transform is None else transform)

    # ----- what an attack differentiates ------------------------------------------------------------
    def forward(self, x: torch.Tensor, standin: str = "none", rate: bool = False) -> CodecOutput:
        """The reconstruction of the refined latents, differentiable as ``attack_mode`` says (module doc)."""
        if standin not in STANDINS:
            raise ValueError(f"unknown stand-in {standin!r}; choose from {STANDINS}")
        if self.attack_mode == "identity":
            return self.codec.forward(x, standin=standin, rate=rate)
        x = check_image_tensor(x)
        graph = torch.is_grad_enabled() and x.requires_grad
        out = self.refine(x, self.attack_mode if graph else None)
        with torch.set_grad_enabled(graph):
            x_hat, likelihoods = self.synthesise(out.y, out.z, standin)
        return CodecOutput(crop_to(x_hat, tuple(x.shape[-2:])), likelihoods if rate else None)

    def __repr__(self) -> str:
        return (f"RefinedCodec({self.codec!r}, steps={self.steps}, lr={self.lr:g}, schedule={self.schedule}, "
                f"lmbda={self.lmbda:g}, z={self.z_mode})")


def _bits(strings: list[bytes]) -> int:
    return 8 * sum(len(s) for s in strings)


__all__ = ["ATTACK_MODES", "REFINABLE", "SCHEDULES", "Z_MODES", "Refinement", "RefinedCodec", "parse_refine"]
