"""What an attack maximises: one definition per objective, shared by every attack method.

Each objective turns a differentiable codec output into a per-image *gain* ``(B,)`` that the
attack maximises (so every method is written once, for any objective):

* :class:`Distortion` - push the reconstruction of ``x_adv`` away from the *clean
  reconstruction* ``x̂(x)`` (Chen & Ma's untargeted attack, the default) or from the source ``x``;
  measured by MSE or by ``1 - MS-SSIM``;
* :class:`Rate` - raise the estimated bits per pixel of all latents (``y`` and the hyperprior's
  ``z``), from the entropy model's likelihoods (the codec runs with ``rate=True``);
* :class:`Targeted` - make the reconstruction look like a target image (Chen & Ma's targeted
  variant), optionally only inside a region ``mask`` while the reconstruction outside it stays
  close to the clean one (weight ``background_weight``);
* :class:`AddedNoise` - NIC-RobustBench's default: the noise the codec *adds* beyond the
  perturbation, ``‖(x̂′ − x̂) − (x′ − x)‖²`` (mean per value);
* :class:`RateDistortion` - raise bits and distortion together (Wu et al. 2024): the codec's own
  rate-distortion cost ``bpp + λ·255²·MSE`` (``λ·(1 − MS-SSIM)`` for the MS-SSIM metric), reversed.

Every distortion is measured in a colour space ``color``: ``"rgb"`` (default), ``"ycbcr"`` or
``"y"`` (luma only), BT.601 full range (JPEG's), a differentiable linear map
(:func:`to_color_space`).

The clean reconstruction is the codec's quantised one (``standin="ste"``: real rounding in the
forward pass, what decoding the bytes gives), as in Chen & Ma's scripts; it is fixed before the
attack starts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from pytorch_msssim import ms_ssim

from robustnic.attacks.registry import COLORS, OBJECTIVE_CLASSES, REFERENCES, load_classes
from robustnic.codecs.architectures import LAMBDAS
from robustnic.codecs.base import Codec, CodecOutput
from robustnic.data.images import check_image_tensor
from robustnic.errors import ImageError, RobustnicError
from robustnic.metrics import MS_SSIM_MIN_SIDE, estimated_bpp


@dataclass
class AttackContext:
    """What an objective needs besides the codec output, fixed before the first step."""

    x: torch.Tensor
    reference: torch.Tensor | None = None
    target: torch.Tensor | None = None
    mask: torch.Tensor | None = None


@torch.no_grad()
def clean_reconstruction(codec: Codec, x: torch.Tensor) -> torch.Tensor:
    """The codec's quantised reconstruction of ``x`` (what decoding its bytes gives), in [0, 1]."""
    return decoded(codec.forward(x, standin="ste")).detach()


def decoded(out: CodecOutput) -> torch.Tensor:
    """The reconstruction in ``out`` as the decoder delivers it: clamped to [0, 1].

    Objectives score this, not the raw synthesis output: a value pushed past the range is clamped
    by the decoder and gains nothing, and scoring it anyway lets an attack spend its budget there
    (on ``hyperprior-small:q3``, 100 steps of ``paper`` then ended at half the VI of 20 steps).
    The clamp passes no gradient beyond the range: pushing further gives no real gain.
    """
    return out.x_hat.clamp(0, 1)


#: BT.601 full-range RGB -> YCbCr (JPEG/JFIF): rows Y, Cb, Cr; Cb and Cr are offset by 1/2.
_YCBCR = (
    (0.299, 0.587, 0.114),
    (-0.168735892, -0.331264108, 0.5),
    (0.5, -0.418687589, -0.081312411),
)


def to_color_space(x: torch.Tensor, color: str = "rgb", offset: bool = True) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in [0, 1] to ``color``: ``"rgb"`` (unchanged), ``"ycbcr"`` (3 channels)
    or ``"y"`` (luma, 1 channel); BT.601 full range, all in [0, 1] for RGB in [0, 1].

    Linear (differentiable); ``offset=False`` leaves out Cb's and Cr's 1/2 offset, for differences
    of images (a difference maps to the difference of the maps). ``3k`` channels (a forward that
    stacks ``k`` reconstructions, e.g. the self-ensemble's EOT) are converted three at a time.
    """
    if color == "rgb":
        return x
    _check_color(color)
    b, c, h, w = x.shape
    if c % 3:
        raise RobustnicError(f"colour conversion needs RGB images (3 channels per image), got {c} channels")
    rows = 1 if color == "y" else 3
    m = torch.tensor(_YCBCR[:rows], dtype=x.dtype, device=x.device)
    out = torch.einsum("kc,bnchw->bnkhw", m, x.view(b, c // 3, 3, h, w))
    if offset and rows == 3:
        out = out + torch.tensor([0.0, 0.5, 0.5], dtype=x.dtype, device=x.device).view(1, 1, 3, 1, 1)
    return out.reshape(b, c // 3 * rows, h, w)


def _check_color(color: str) -> str:
    """``color`` if it names a colour space (:data:`~robustnic.attacks.registry.COLORS`), else an error."""
    if color not in COLORS:
        raise RobustnicError(f"unknown colour space {color!r}; choose from {', '.join(COLORS)}")
    return color


def _per_image_mse(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    sq = (a - b) ** 2
    if weight is None:
        return sq.flatten(1).mean(1)
    w = weight.expand_as(sq)
    return (sq * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1e-12)


class Objective(ABC):
    """Maps a codec output to a per-image gain ``(B,)`` that the attack maximises."""

    name: str = "objective"
    #: Whether the codec must return latent likelihoods (``forward(..., rate=True)``).
    needs_rate: bool = False

    def prepare(
        self, codec: Codec, x: torch.Tensor, target: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> AttackContext:
        """Check the inputs and compute what stays fixed during the attack."""
        if target is not None or mask is not None:
            raise ImageError(f"objective {self.name!r} takes no target or mask (use objective='targeted')")
        return AttackContext(x=x)

    @abstractmethod
    def gain(self, out: CodecOutput, ctx: AttackContext, x_adv: torch.Tensor | None = None) -> torch.Tensor:
        """Per-image gain ``(B,)``, differentiable with respect to the codec input ``x_adv`` (the
        input that gave ``out``; only objectives that measure the input itself need it)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Distortion(Objective):
    """Distance of the reconstruction from the clean reconstruction (``reference="clean"``, Chen &
    Ma) or from the source (``reference="source"``), by ``metric`` ``"mse"`` or ``"ms-ssim"``."""

    name = "distortion"

    def __init__(self, reference: str = "clean", metric: str = "mse", color: str = "rgb"):
        if reference not in REFERENCES:
            raise RobustnicError(f"distortion reference must be 'clean' or 'source', got {reference!r}")
        if metric not in ("mse", "ms-ssim"):
            raise RobustnicError(f"distortion metric must be 'mse' or 'ms-ssim', got {metric!r}")
        self.reference, self.metric, self.color = reference, metric, _check_color(color)

    def prepare(self, codec, x, target=None, mask=None):
        super().prepare(codec, x, target, mask)
        if self.metric == "ms-ssim" and min(x.shape[-2:]) <= MS_SSIM_MIN_SIDE:
            raise ImageError(
                f"the MS-SSIM objective needs images larger than {MS_SSIM_MIN_SIDE} px on each side, "
                f"got {x.shape[-1]}x{x.shape[-2]}"
            )
        ref = clean_reconstruction(codec, x) if self.reference == "clean" else x
        return AttackContext(x=x, reference=ref)

    def distance(self, x_hat: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Per-image MSE or ``1 - MS-SSIM`` between two RGB images, in the objective's colour space."""
        if self.metric == "mse":
            return _per_image_mse(to_color_space(x_hat - reference, self.color, offset=False), 0)
        a, b = to_color_space(x_hat, self.color), to_color_space(reference, self.color)
        return 1 - ms_ssim(a, b, data_range=1.0, size_average=False)

    def gain(self, out, ctx, x_adv=None):
        return self.distance(decoded(out), ctx.reference)

    def __repr__(self) -> str:
        color = "" if self.color == "rgb" else f", color={self.color!r}"
        return f"Distortion(reference={self.reference!r}, metric={self.metric!r}{color})"


class Rate(Objective):
    """Estimated bits per pixel of every latent (``y`` and ``z``), from the likelihoods."""

    name = "rate"
    needs_rate = True

    def prepare(self, codec, x, target=None, mask=None):
        ctx = super().prepare(codec, x, target, mask)
        with torch.no_grad():
            out = codec.forward(x[:1], standin="ste", rate=True)
        if not out.likelihoods:
            raise RobustnicError(f"codec {codec.name} gives no likelihoods: the rate objective needs a learned codec")
        return ctx

    def gain(self, out, ctx, x_adv=None):
        return estimated_bpp(out.likelihoods, ctx.x.shape[-2] * ctx.x.shape[-1])


def _as_mask(mask: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """A region as a float ``(B or 1, 1, H, W)`` tensor in [0, 1]; accepts ``(H, W)``, ``(1, H, W)``, ..."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise ImageError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    m = mask.detach().to(device=x.device, dtype=torch.float32)
    while m.dim() < 4:
        m = m.unsqueeze(0)
    if m.dim() != 4 or m.shape[1] != 1 or m.shape[-2:] != x.shape[-2:] or m.shape[0] not in (1, x.shape[0]):
        raise ImageError(
            f"mask of shape {tuple(mask.shape)} does not fit images of shape {tuple(x.shape)}: "
            f"use (H, W), (1, H, W) or (B, 1, H, W) with H, W = {tuple(x.shape[-2:])}"
        )
    if not torch.isfinite(m).all() or m.min() < 0 or m.max() > 1:
        raise ImageError("mask values must lie in [0, 1]")
    if (m.flatten(1).sum(1) == 0).any():
        raise ImageError("mask is empty (all zero) for at least one image")
    return m


class Targeted(Objective):
    """Minus the MSE between the reconstruction and a target image inside ``mask`` (the whole image
    without one), minus ``background_weight`` times its MSE from the clean reconstruction outside."""

    name = "targeted"

    def __init__(self, background_weight: float = 1.0, color: str = "rgb"):
        self.background_weight, self.color = float(background_weight), _check_color(color)

    def prepare(self, codec, x, target=None, mask=None):
        if target is None:
            raise ImageError("objective 'targeted' needs a target image (atk(x, target=t))")
        target = check_image_tensor(target, "target").to(device=x.device, dtype=x.dtype)
        if target.shape[-2:] != x.shape[-2:] or target.shape[0] not in (1, x.shape[0]):
            raise ImageError(f"target of shape {tuple(target.shape)} does not match the images {tuple(x.shape)}")
        m = _as_mask(mask, x)
        ref = clean_reconstruction(codec, x) if m is not None else None
        return AttackContext(x=x, reference=ref, target=target.expand_as(x), mask=m)

    def gain(self, out, ctx, x_adv=None):
        def diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return to_color_space(a - b, self.color, offset=False)

        x_hat = decoded(out)
        g = -_per_image_mse(diff(x_hat, ctx.target), 0, ctx.mask)
        if ctx.mask is not None and self.background_weight:
            outside = 1 - ctx.mask
            if bool((outside.flatten(1).sum(1) > 0).all()):
                g = g - self.background_weight * _per_image_mse(diff(x_hat, ctx.reference), 0, outside)
        return g

    def __repr__(self) -> str:
        color = "" if self.color == "rgb" else f", color={self.color!r}"
        return f"Targeted(background_weight={self.background_weight:g}{color})"


class AddedNoise(Objective):
    """The noise the codec adds beyond the perturbation (NIC-RobustBench's default objective):
    the mean of ``((x̂′ − x̂) − (x′ − x))²`` over values, in the colour space ``color``.

    ``x̂`` is the clean reconstruction (``reference="clean"``); with ``reference="source"`` it is
    the source itself and the gain is the coding error of the perturbed image, ``‖x̂′ − x′‖²``.
    """

    name = "added-noise"

    def __init__(self, reference: str = "clean", color: str = "rgb"):
        if reference not in REFERENCES:
            raise RobustnicError(f"added-noise reference must be 'clean' or 'source', got {reference!r}")
        self.reference, self.color = reference, _check_color(color)

    def prepare(self, codec, x, target=None, mask=None):
        super().prepare(codec, x, target, mask)
        ref = clean_reconstruction(codec, x) if self.reference == "clean" else x
        return AttackContext(x=x, reference=ref)

    def gain(self, out, ctx, x_adv=None):
        if x_adv is None:
            raise RobustnicError("the added-noise objective measures the perturbed input: pass x_adv to gain()")
        x_hat = decoded(out)
        k = x_hat.shape[1] // x_adv.shape[1]  # a forward may stack k reconstructions (EOT)
        added = (x_hat - ctx.reference) - (x_adv - ctx.x).repeat(1, k, 1, 1)
        return _per_image_mse(to_color_space(added, self.color, offset=False), 0)

    def __repr__(self) -> str:
        color = "" if self.color == "rgb" else f", color={self.color!r}"
        return f"AddedNoise(reference={self.reference!r}{color})"


class RateDistortion(Objective):
    """Bits and distortion together (Wu et al., "On the adversarial robustness of learning-based
    image compression against rate-distortion attacks", 2024): the codec's rate-distortion cost,
    maximised. Gain: estimated bpp (every latent) plus ``rd_weight·255²·MSE`` (``metric="mse"``) or
    ``rd_weight·(1 − MS-SSIM)`` (``"ms-ssim"``) of the reconstruction from the ``reference``, in
    ``color``. ``rd_weight`` None: CompressAI's quality-1 λ of the metric (0.0018 and 2.40), the
    one where bits weigh most: with quality 4's the distortion term leads the gradient (on
    ``hyperprior-small:q3`` at 35 dB, 20 steps of ``paper``: estimated rate +4 % with it, +11 % with
    quality 1's, as much as the rate objective alone, while the output still loses 11 dB).
    """

    name = "rate-distortion"
    needs_rate = True

    def __init__(self, reference: str = "clean", metric: str = "mse", color: str = "rgb",
                 rd_weight: float | None = None):
        self.distortion = Distortion(reference, metric, color)
        self.rd_weight = LAMBDAS[metric][1] if rd_weight is None else float(rd_weight)
        if not self.rd_weight >= 0:
            raise RobustnicError(f"the rate-distortion weight must be a number >= 0, got {rd_weight!r}")
        self.rate = Rate()

    def prepare(self, codec, x, target=None, mask=None):
        self.rate.prepare(codec, x, target, mask)
        return self.distortion.prepare(codec, x, target, mask)

    def gain(self, out, ctx, x_adv=None):
        d = self.distortion.gain(out, ctx)
        scale = 255.0**2 if self.distortion.metric == "mse" else 1.0
        return self.rate.gain(out, ctx) + self.rd_weight * scale * d

    def __repr__(self) -> str:
        inner = repr(self.distortion)[len("Distortion("):-1]
        return f"RateDistortion({inner}, rd_weight={self.rd_weight:g})"


#: Objectives by name (the table is :data:`robustnic.attacks.registry.OBJECTIVE_CLASSES`).
OBJECTIVES: dict[str, type[Objective]] = load_classes(OBJECTIVE_CLASSES)


def make_objective(
    objective: str | Objective,
    reference: str = "clean",
    metric: str = "mse",
    background_weight: float = 1.0,
    color: str = "rgb",
    rd_weight: float | None = None,
) -> Objective:
    """An :class:`Objective` from its name (options apply to the objectives that use them)."""
    if isinstance(objective, Objective):
        return objective
    _check_color(color)
    if objective == "distortion":
        return Distortion(reference, metric, color)
    if objective == "rate":
        return Rate()
    if objective == "targeted":
        return Targeted(background_weight, color)
    if objective == "added-noise":
        return AddedNoise(reference, color)
    if objective == "rate-distortion":
        return RateDistortion(reference, metric, color, rd_weight)
    raise RobustnicError(f"unknown objective {objective!r}; choose from {', '.join(OBJECTIVES)}")


__all__ = [
    "OBJECTIVES",
    "AddedNoise",
    "AttackContext",
    "Distortion",
    "Objective",
    "Rate",
    "RateDistortion",
    "Targeted",
    "clean_reconstruction",
    "make_objective",
    "to_color_space",
]
