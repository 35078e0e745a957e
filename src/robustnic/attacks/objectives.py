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
  close to the clean one (weight ``background_weight``).

The clean reconstruction is the codec's quantised one (``standin="ste"``: real rounding in the
forward pass, what decoding the bytes gives), as in Chen & Ma's scripts; it is fixed before the
attack starts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from pytorch_msssim import ms_ssim

from robustnic.attacks.registry import OBJECTIVE_CLASSES, REFERENCES, load_classes
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
    return codec.forward(x, standin="ste").x_hat.detach().clamp(0, 1)


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
    def gain(self, out: CodecOutput, ctx: AttackContext) -> torch.Tensor:
        """Per-image gain ``(B,)``, differentiable with respect to the codec input."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Distortion(Objective):
    """Distance of the reconstruction from the clean reconstruction (``reference="clean"``, Chen &
    Ma) or from the source (``reference="source"``), by ``metric`` ``"mse"`` or ``"ms-ssim"``."""

    name = "distortion"

    def __init__(self, reference: str = "clean", metric: str = "mse"):
        if reference not in REFERENCES:
            raise RobustnicError(f"distortion reference must be 'clean' or 'source', got {reference!r}")
        if metric not in ("mse", "ms-ssim"):
            raise RobustnicError(f"distortion metric must be 'mse' or 'ms-ssim', got {metric!r}")
        self.reference, self.metric = reference, metric

    def prepare(self, codec, x, target=None, mask=None):
        super().prepare(codec, x, target, mask)
        if self.metric == "ms-ssim" and min(x.shape[-2:]) <= MS_SSIM_MIN_SIDE:
            raise ImageError(
                f"the MS-SSIM objective needs images larger than {MS_SSIM_MIN_SIDE} px on each side, "
                f"got {x.shape[-1]}x{x.shape[-2]}"
            )
        ref = clean_reconstruction(codec, x) if self.reference == "clean" else x
        return AttackContext(x=x, reference=ref)

    def gain(self, out, ctx):
        if self.metric == "mse":
            return _per_image_mse(out.x_hat, ctx.reference)
        return 1 - ms_ssim(out.x_hat, ctx.reference, data_range=1.0, size_average=False)

    def __repr__(self) -> str:
        return f"Distortion(reference={self.reference!r}, metric={self.metric!r})"


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

    def gain(self, out, ctx):
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

    def __init__(self, background_weight: float = 1.0):
        self.background_weight = float(background_weight)

    def prepare(self, codec, x, target=None, mask=None):
        if target is None:
            raise ImageError("objective 'targeted' needs a target image (atk(x, target=t))")
        target = check_image_tensor(target, "target").to(device=x.device, dtype=x.dtype)
        if target.shape[-2:] != x.shape[-2:] or target.shape[0] not in (1, x.shape[0]):
            raise ImageError(f"target of shape {tuple(target.shape)} does not match the images {tuple(x.shape)}")
        m = _as_mask(mask, x)
        ref = clean_reconstruction(codec, x) if m is not None else None
        return AttackContext(x=x, reference=ref, target=target.expand_as(x), mask=m)

    def gain(self, out, ctx):
        g = -_per_image_mse(out.x_hat, ctx.target, ctx.mask)
        if ctx.mask is not None and self.background_weight:
            outside = 1 - ctx.mask
            if bool((outside.flatten(1).sum(1) > 0).all()):
                g = g - self.background_weight * _per_image_mse(out.x_hat, ctx.reference, outside)
        return g

    def __repr__(self) -> str:
        return f"Targeted(background_weight={self.background_weight:g})"


#: Objectives by name (the table is :data:`robustnic.attacks.registry.OBJECTIVE_CLASSES`).
OBJECTIVES: dict[str, type[Objective]] = load_classes(OBJECTIVE_CLASSES)


def make_objective(
    objective: str | Objective, reference: str = "clean", metric: str = "mse", background_weight: float = 1.0
) -> Objective:
    """An :class:`Objective` from its name (options apply to the objective that uses them)."""
    if isinstance(objective, Objective):
        return objective
    if objective == "distortion":
        return Distortion(reference, metric)
    if objective == "rate":
        return Rate()
    if objective == "targeted":
        return Targeted(background_weight)
    raise RobustnicError(f"unknown objective {objective!r}; choose from {', '.join(OBJECTIVES)}")


__all__ = [
    "OBJECTIVES",
    "AttackContext",
    "Distortion",
    "Objective",
    "Rate",
    "Targeted",
    "clean_reconstruction",
    "make_objective",
]
