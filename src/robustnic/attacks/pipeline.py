"""One attack path: the settings of an attack, and crafting + verification on real bitstreams.

Every caller that attacks a codec goes through :func:`attack_and_verify` with an
:class:`AttackSettings`: ``robustnic attack`` (:func:`~robustnic.attacks.runner.run_attacks`), the
grid's ``attack`` and ``transfer-*`` job kinds, ``robustnic defend``
(:func:`~robustnic.defenses.evaluate.attack_defense`), ``robustnic curves`` and ``robustnic transfer``
(both grids). So an option means the same thing everywhere, and so does *adaptive*:

* ``adaptive=False`` - the attack is crafted on the **undefended** model (a defended codec's
  innermost codec; an attacker who does not know the defense), and verified through the codec;
* ``adaptive=True`` - the attack is crafted once per **attack mode** the defense offers
  (:attr:`~robustnic.defenses.base.DefendedCodec.attack_modes`: through it, and around it), every
  result is verified through the defended codec, and per image the most damaging one is kept.
  On a plain codec both are the same single attack.

"Most damaging" follows the objective: the lowest reconstruction PSNR (``ms-ssim`` metric: the
lowest MS-SSIM) for the distortion objective, the highest real bpp for ``rate``, the highest
PSNR to the target (``psnr-target``) for ``targeted``.

>>> s = AttackSettings("pgd", "psnr:35", steps=20, restarts=2, reference="source")   # doctest: +SKIP
>>> out = attack_and_verify(make_defense(codec, "ensemble"), x, s, adaptive=True)    # doctest: +SKIP
>>> out.rows[0]["psnr-out"], out.rows[0]["attack-mode"]                              # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from robustnic.attacks.base import Attack
from robustnic.attacks.budget import Budget, parse_budget
from robustnic.attacks.methods import ATTACKS, make_attack
from robustnic.attacks.registry import COLORS, OBJECTIVE_NAMES, REFERENCES
from robustnic.attacks.verify import Verified, verify_images
from robustnic.codecs.base import STANDINS, Codec
from robustnic.data.images import check_image_tensor, load_image
from robustnic.errors import ImageError, RobustnicError
from robustnic.metrics import psnr

#: Metrics of the distortion objective.
METRICS = ("mse", "ms-ssim")


@dataclass(frozen=True)
class AttackSettings:
    """Everything that defines an attack, apart from the codec and the images.

    Attributes:
        method: attack name (:data:`robustnic.attacks.ATTACKS`).
        budget: a :class:`~robustnic.attacks.budget.Budget` or its spec (``"psnr:40"``,
            ``"psnr:35,linf:16"``); stored as a ``Budget``.
        steps: iterations; None keeps the method's own default (100, 1001 for ``paper-reference``).
        restarts: independent runs per image, the best kept.
        objective: ``"distortion"``, ``"rate"``, ``"targeted"``, ``"added-noise"`` or ``"rate-distortion"``.
        reference, metric: the distortion objective's reference (``"clean"``/``"source"``) and metric
            (``"mse"``/``"ms-ssim"``).
        standin: the quantisation stand-in the attack differentiates through.
        seed: seed of everything random in the attack.
        background_weight: targeted objective: weight of keeping the outside of the mask.
        target: targeted objective: the target image ``(1 or B, 3, H, W)``.
        mask: targeted objective: the region, ``(H, W)`` or ``(1 or B, 1, H, W)`` in [0, 1].
        progress: draw the attack's progress bar.
        color: colour space the distortion is measured in (``"rgb"``, ``"ycbcr"``, ``"y"``).
        rd_weight: rate-distortion objective: weight λ of the distortion (None: the metric's default).
    """

    method: str = "paper"
    budget: Budget | str = "psnr:40"
    steps: int | None = None
    restarts: int = 1
    objective: str = "distortion"
    reference: str = "clean"
    metric: str = "mse"
    standin: str = "none"
    seed: int = 0
    background_weight: float = 1.0
    target: torch.Tensor | None = field(default=None, compare=False, repr=False)
    mask: torch.Tensor | None = field(default=None, compare=False, repr=False)
    progress: bool = field(default=False, compare=False)
    color: str = "rgb"
    rd_weight: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "budget", parse_budget(self.budget))
        checks = [("method", self.method, tuple(ATTACKS)), ("objective", self.objective, OBJECTIVE_NAMES),
                  ("reference", self.reference, REFERENCES), ("metric", self.metric, METRICS),
                  ("standin", self.standin, STANDINS), ("color", self.color, COLORS)]
        for what, value, allowed in checks:
            if value not in allowed:
                raise RobustnicError(f"unknown attack {what} {value!r}; choose from {', '.join(allowed)}")
        for what, value in (("steps", self.steps), ("restarts", self.restarts)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise RobustnicError(f"attack {what} must be a whole number of at least 1, got {value!r}")
        if self.objective == "targeted" and self.target is None:
            raise ImageError("the targeted objective needs a target image")
        if self.target is not None:
            object.__setattr__(self, "target", check_image_tensor(self.target, "target"))
        if self.mask is not None:
            object.__setattr__(self, "mask", _four_d(self.mask))

    def replace(self, **changes: Any) -> "AttackSettings":
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)

    def make(self, codec: Codec) -> Attack:
        """The attack object on ``codec`` (see :func:`robustnic.attacks.make_attack`)."""
        return make_attack(self.method, codec, budget=self.budget, steps=self.steps, restarts=self.restarts,
                           objective=self.objective, reference=self.reference, metric=self.metric,
                           standin=self.standin, seed=self.seed, background_weight=self.background_weight,
                           progress=self.progress, color=self.color, rd_weight=self.rd_weight)

    def as_dict(self) -> dict[str, Any]:
        """The settings as JSON-safe values (the budget as its spec; the target and mask left out)."""
        return {f.name: str(self.budget) if f.name == "budget" else getattr(self, f.name)
                for f in dataclasses.fields(self) if f.name not in ("target", "mask", "progress")}


@dataclass
class AttackOutcome:
    """Crafted and verified adversarial images (see :func:`attack_and_verify`)."""

    settings: AttackSettings
    #: The source images and the 8-bit adversarial images kept, ``(B, 3, H, W)`` on the CPU.
    x: torch.Tensor
    x_adv: torch.Tensor
    #: Per image, the verification of the image kept (its row has ``attack-mode`` on a defended codec).
    verified: list[Verified]
    #: Every attack run's verified rows, by mode label (``MODE`` or ``MODE/REFERENCE``).
    by_mode: dict[str, list[dict]] = field(default_factory=dict)
    #: Seconds spent attacking (all runs together).
    elapsed: float = 0.0

    @property
    def rows(self) -> list[dict]:
        """Per image, the verified row of the image kept."""
        return [v.row for v in self.verified]


def parse_mask(spec: str | None, size: tuple[int, int], crop: int | Sequence[int] | None = None) -> torch.Tensor | None:
    """A ``(1, 1, H, W)`` mask from ``"LEFT,TOP,RIGHT,BOTTOM"`` (pixels) or an image file (non-black =
    inside; centre-cropped to ``crop`` first when given). ``size`` is ``(H, W)`` of the images."""
    if spec is None:
        return None
    parts = str(spec).split(",")
    if len(parts) == 4 and all(p.strip().lstrip("-").isdigit() for p in parts):
        left, top, right, bottom = (int(p) for p in parts)
        h, w = size
        if not (0 <= left < right <= w and 0 <= top < bottom <= h):
            raise ImageError(f"mask rectangle {spec} does not lie inside the {w}x{h} images")
        m = torch.zeros(1, 1, h, w)
        m[..., top:bottom, left:right] = 1
        return m
    img = load_image(spec)
    if crop is not None:
        from robustnic.data.photos import center_crop

        img = center_crop(img, crop if isinstance(crop, int) else tuple(crop))
    return (img.amax(1, keepdim=True) > 0).float()


def _four_d(t: torch.Tensor) -> torch.Tensor:
    while t.dim() < 4:
        t = t.unsqueeze(0)
    return t


def is_defended(codec: Codec) -> bool:
    """Whether ``codec`` is a defense wrapped around another codec (it offers attack modes)."""
    return callable(getattr(codec, "with_attack_mode", None)) and isinstance(getattr(codec, "codec", None), Codec)


def undefended(codec: Codec) -> Codec:
    """The codec inside every defense wrapped around ``codec`` (``codec`` itself if plain)."""
    while is_defended(codec):
        codec = codec.codec  # type: ignore[attr-defined]
    return codec


def _damage(row: dict, settings: AttackSettings) -> float:
    """How much an attack hurt (higher = worse for the codec), by the objective's own measure."""
    if settings.objective == "rate":
        value = row["bpp-adv"]
    elif settings.objective == "targeted":
        value = row["psnr-target"]
    elif settings.metric == "ms-ssim" and row.get("ms-ssim-out") is not None:
        value = -row["ms-ssim-out"]
    else:
        value = -row["psnr-out"]
    value = float(value)
    return value if not math.isnan(value) else -math.inf


def _for_mode(settings: AttackSettings, mode: str) -> AttackSettings | None:
    """The settings an attack mode can run: the self-ensemble's ``eot`` output stacks the 8
    transforms' reconstructions, so it only compares with the clean reconstruction (a source
    reference falls back to it) and cannot run a targeted attack (None)."""
    if mode != "eot":
        return settings
    if settings.objective == "targeted":
        return None
    if settings.objective in ("distortion", "added-noise", "rate-distortion") and settings.reference == "source":
        return settings.replace(reference="clean")
    return settings


def _runs(codec: Codec, variants: Sequence[AttackSettings], adaptive: bool,
          modes: Sequence[str] | None) -> list[tuple[str, Codec, AttackSettings]]:
    """``(label, codec to attack, settings)`` of every attack to run."""
    if not is_defended(codec):
        targets = [("plain", codec)]
    elif adaptive:
        targets = [(m, codec.with_attack_mode(m)) for m in (modes or codec.attack_modes)]  # type: ignore[attr-defined]
    else:
        targets = [("undefended", undefended(codec))]
    runs: list[tuple[str, Codec, AttackSettings]] = []
    seen: list[tuple[str, AttackSettings]] = []
    for mode, target in targets:
        for s in variants:
            fitted = _for_mode(s, mode)
            if fitted is None or (mode, fitted) in seen:
                continue
            seen.append((mode, fitted))
            label = mode if fitted.reference == "clean" or fitted.objective != "distortion" else f"{mode}/{fitted.reference}"
            while any(label == other for other, _, _ in runs):
                label += "'"
            runs.append((label, target, fitted))
    if not runs:
        raise RobustnicError(f"none of the attack modes {[m for m, _ in targets]} can run these settings")
    return runs


def _psnr_target(x_hat: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> float:
    """PSNR between a reconstruction and the target, inside the mask when there is one."""
    if mask is None:
        return psnr(target, x_hat)
    m = mask.expand_as(x_hat)
    mse = float(((x_hat.clamp(0, 1) - target) ** 2 * m).sum() / m.sum().clamp_min(1e-12))
    return math.inf if mse == 0 else -10 * math.log10(mse)


def _batch_of(t: torch.Tensor | None, n: int, i: int) -> torch.Tensor | None:
    """Image ``i`` of a per-image ``(B, C, H, W)`` tensor, or its only image when it holds one for all."""
    if t is None:
        return None
    return (t[i : i + 1] if t.shape[0] == n else t[:1]).cpu()


def attack_and_verify(
    codec: Codec,
    x: torch.Tensor,
    settings: AttackSettings | Sequence[AttackSettings],
    adaptive: bool = False,
    modes: Sequence[str] | None = None,
) -> AttackOutcome:
    """Craft adversarial images of ``x`` against ``codec`` and verify them on its real bitstreams.

    ``x`` is ``(B, 3, H, W)`` (or ``(3, H, W)``) in [0, 1]. With ``adaptive`` a defended codec is
    attacked in each of ``modes`` (default: every mode it offers) and the most damaging result is
    kept per image; without it the attack is crafted on the undefended model (module docstring).
    ``settings`` may be a sequence of alternatives (e.g. the two distortion references): every one
    runs in every mode and the worst per image is kept. Every result is verified with
    :func:`~robustnic.attacks.verify.verify_images` through ``codec`` in its default attack mode
    (the bytes are always the defended encoder's); rows of a defended codec carry ``attack-mode``,
    targeted rows ``psnr-target``.
    """
    variants = [settings] if isinstance(settings, AttackSettings) else list(settings)
    if not variants:
        raise RobustnicError("attack_and_verify needs at least one AttackSettings")
    x = check_image_tensor(x).detach()
    defended = is_defended(codec)
    verifier = codec.with_attack_mode(codec.attack_modes[0]) if defended else codec  # type: ignore[attr-defined]
    n = x.shape[0]
    best: list[tuple[float, Verified, torch.Tensor] | None] = [None] * n
    by_mode: dict[str, list[dict]] = {}
    elapsed = 0.0
    for label, target_codec, s in _runs(codec, variants, adaptive, modes):
        target = None if s.target is None else s.target.expand(n, -1, -1, -1) if s.target.shape[0] == 1 else s.target
        atk = s.make(target_codec)
        x_adv = atk(x, target=target, mask=s.mask).detach().cpu()
        elapsed += atk.elapsed
        verified = verify_images(verifier, x, x_adv, standin=s.standin, budget=s.budget, attack_time=atk.elapsed)
        for i, v in enumerate(verified):
            if defended:
                v.row["attack-mode"] = label
            if s.target is not None:
                v.row["psnr-target"] = _psnr_target(v.adv.x_hat.cpu(), _batch_of(s.target, n, i),
                                                    _batch_of(s.mask, n, i))
            damage = _damage(v.row, s)
            if best[i] is None or damage > best[i][0]:  # ties keep the earlier run
                best[i] = (damage, v, x_adv[i : i + 1])
        by_mode[label] = [v.row for v in verified]
    kept = [b for b in best if b is not None]
    return AttackOutcome(variants[0], x.cpu().float(), torch.cat([b[2] for b in kept]), [b[1] for b in kept],
                         by_mode, elapsed)


__all__ = ["AttackOutcome", "AttackSettings", "METRICS", "attack_and_verify", "is_defended", "parse_mask",
           "undefended"]
