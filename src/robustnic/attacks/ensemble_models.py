"""Agnostic-ratio attack: one perturbation crafted against several models (e.g. every quality of a family) at once.

Wu et al. ("On the adversarial robustness of learning-based image compression against
rate-distortion attacks", 2024) ask for a perturbation that works whatever rate the victim codes
at. robustnic crafts it with the expectation over the models: the attack maximises the *mean* of
the objective over the models, each with its own fixed context (e.g. its own clean
reconstruction), through any method.

* :class:`CodecFamily` - several codecs standing as one: :meth:`CodecFamily.forward` runs every
  member (its output is the first member's, the *primary*, with every member's output attached),
  and bitstreams are the primary's, so the rest of robustnic (the pipeline, the verification on
  real bitstreams, ``robustnic attack``) sees the primary model;
* :class:`MeanObjective` - the mean of an objective over a family's members; an attack built on a
  :class:`CodecFamily` uses it on its own (the family's :meth:`CodecFamily.adapt_objective`);
* :class:`AgnosticAttack` - the two together, from Python::

      >>> atk = AgnosticAttack([q2, q5, q8], method="paper", budget=PSNR(35), steps=100)   # doctest: +SKIP
      >>> x_adv = atk(x)                                                                  # doctest: +SKIP
      >>> evaluate_on_models({"q2": q2, "q3": q3, ...}, x, x_adv, budget=atk.budget)      # doctest: +SKIP

  and from the command line: ``robustnic attack -m A --also-against B --also-against C``;
* :func:`evaluate_on_models` - the same adversarial images verified on real bitstreams of every
  model given (those it was crafted on and held-out ones), one row per model and image;
  :func:`evaluate_saved_run` does it for every adversarial PNG of an attack folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from robustnic.attacks.budget import Budget
from robustnic.attacks.objectives import AttackContext, Objective
from robustnic.attacks.registry import make_attack
from robustnic.attacks.verify import verify_attack
from robustnic.codecs.base import Codec, CodecOutput, Coded
from robustnic.errors import RobustnicError
from robustnic.utils.io import atomic_write_text
from robustnic.utils.tables import csv_text, group_means, json_safe


@dataclass
class FamilyOutput(CodecOutput):
    """A :class:`CodecFamily`'s forward: the primary's reconstruction and likelihoods, and every member's output."""

    members: list[CodecOutput] = field(default_factory=list)


@dataclass
class FamilyContext(AttackContext):
    """A :class:`MeanObjective`'s fixed context: one context per member."""

    members: list[AttackContext] = field(default_factory=list)


class CodecFamily(Codec):
    """Several codecs (e.g. qualities of one family) standing as one, for crafting one perturbation against all.

    The first codec is the *primary*: bitstreams (``compress``/``decompress``/``roundtrip``) are
    its own, and :meth:`forward` returns its reconstruction and likelihoods, with every member's
    output in :attr:`FamilyOutput.members`. An attack on a family maximises the mean of its
    objective over the members (:meth:`adapt_objective`; ``combine``: see :class:`MeanObjective`);
    everything else measures the primary. All members must be on one device.
    """

    def __init__(self, codecs: Sequence[Codec], combine: str = "mean"):
        codecs = list(codecs)
        if combine not in COMBINES:
            raise RobustnicError(f"unknown combination {combine!r}; choose from {', '.join(COMBINES)}")
        self.combine = combine
        if len(codecs) < 1 or not all(isinstance(c, Codec) for c in codecs):
            raise RobustnicError("a codec family needs at least one robustnic Codec")
        if any(isinstance(c, CodecFamily) for c in codecs):
            raise RobustnicError("a codec family cannot hold another family: list its members instead")
        devices = {str(c.device) for c in codecs}
        if len(devices) > 1:
            raise RobustnicError(f"the codecs of a family must share a device, got {', '.join(sorted(devices))}")
        self.codecs = codecs
        self.primary = codecs[0]
        self.name = "+".join(c.name for c in codecs)
        self.differentiable = all(c.differentiable for c in codecs)
        self.codec_code, self.quality, self.metric = self.primary.codec_code, self.primary.quality, self.primary.metric
        self.device = self.primary.device

    # ----- the attacked forward ------------------------------------------------------------------
    def forward(self, x: torch.Tensor, standin: str = "none", rate: bool = False) -> FamilyOutput:
        members = [c.forward(x, standin=standin, rate=rate) for c in self.codecs]
        return FamilyOutput(members[0].x_hat, members[0].likelihoods, members)

    def adapt_objective(self, objective: Objective) -> Objective:
        """The objective an attack on this family maximises: the mean of ``objective`` over the members."""
        return objective if isinstance(objective, MeanObjective) else MeanObjective(objective, self.combine)

    # ----- bitstreams: the primary's ---------------------------------------------------------------
    def _encode(self, x: torch.Tensor) -> tuple[list[bytes], tuple[int, ...]]:
        return self.primary._encode(x)

    def _decode(self, strings: list[bytes], shape: tuple[int, ...], size: tuple[int, int]) -> torch.Tensor:
        return self.primary._decode(strings, shape, size)

    def compress(self, x: torch.Tensor, transform: int = 0) -> bytes:
        return self.primary.compress(x, transform)

    def decompress(self, data: bytes, max_pixels: int | None = None) -> torch.Tensor:
        return self.primary.decompress(data, max_pixels=max_pixels)

    def roundtrip(self, x: torch.Tensor, transform: int = 0) -> Coded:
        return self.primary.roundtrip(x, transform)

    @property
    def fingerprint(self) -> str | None:
        """The members' weight fingerprints, joined by ``+`` (None if none has one)."""
        prints = [getattr(c, "fingerprint", None) for c in self.codecs]
        return None if all(p is None for p in prints) else "+".join(str(p) for p in prints)

    def to(self, device: str | torch.device) -> "CodecFamily":
        for c in self.codecs:
            c.to(device)
        self.device = self.primary.device
        return self

    def __repr__(self) -> str:
        return f"CodecFamily({[c.name for c in self.codecs]!r})"


#: How :class:`MeanObjective` combines the members' gains.
COMBINES = ("mean", "log-mean")


class MeanObjective(Objective):
    """The mean over a :class:`CodecFamily`'s members of ``inner``'s gain, each with its own context.

    ``combine="mean"`` (default) averages the gains themselves; ``"log-mean"`` averages their logarithms
    (the geometric mean: every member counts by its *relative* gain, so members with larger distortions,
    e.g. higher qualities, do not outweigh the others; positive gains only, so not the targeted objective).
    """

    def __init__(self, inner: Objective, combine: str = "mean"):
        if combine not in COMBINES:
            raise RobustnicError(f"unknown combination {combine!r}; choose from {', '.join(COMBINES)}")
        if combine == "log-mean" and inner.name == "targeted":
            raise RobustnicError("the targeted objective's gains are negative: combine them with 'mean'")
        self.inner, self.combine = inner, combine
        self.name = inner.name
        self.needs_rate = inner.needs_rate

    def prepare(self, codec, x, target=None, mask=None) -> FamilyContext:
        if not isinstance(codec, CodecFamily):
            raise RobustnicError(f"the mean objective needs a CodecFamily, got {type(codec).__name__}")
        members = [self.inner.prepare(c, x, target, mask) for c in codec.codecs]
        return FamilyContext(x=x, members=members)

    def gain(self, out: CodecOutput, ctx: AttackContext, x_adv: torch.Tensor | None = None) -> torch.Tensor:
        if not isinstance(out, FamilyOutput) or not isinstance(ctx, FamilyContext):
            raise RobustnicError("the mean objective takes a CodecFamily's output and context")
        gains = torch.stack([self.inner.gain(o, c, x_adv) for o, c in zip(out.members, ctx.members)])
        return gains.clamp_min(1e-12).log().mean(0) if self.combine == "log-mean" else gains.mean(0)

    def __repr__(self) -> str:
        return f"MeanObjective({self.inner!r}, combine={self.combine!r})"


class AgnosticAttack:
    """One attack against several codecs at once (the mean objective over them): ``AgnosticAttack(codecs)(x)``.

    Arguments:
        codecs (Sequence[Codec]): the models to craft against (the first is the primary: see :class:`CodecFamily`).
        method (str): any attack method (:data:`robustnic.attacks.ATTACKS`, Default: ``"paper"``).
        combine (str): ``"mean"`` (Default) or ``"log-mean"`` of the members' gains (:class:`MeanObjective`).
        kwargs: the method's arguments (budget, steps, objective, seed, ...).

    ``atk.attack`` is the underlying attack object (its ``budget``, ``elapsed``, ...).
    """

    def __init__(self, codecs: Sequence[Codec], method: str = "paper", combine: str = "mean", **kwargs: Any):
        self.family = CodecFamily(codecs, combine)
        self.attack = make_attack(method, self.family, **kwargs)

    @property
    def budget(self) -> Budget:
        return self.attack.budget

    @property
    def elapsed(self) -> float:
        return self.attack.elapsed

    def __call__(self, x: torch.Tensor, target: torch.Tensor | None = None,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
        """8-bit adversarial images of ``x`` inside the budget (as any attack's call)."""
        return self.attack(x, target=target, mask=mask)

    def __repr__(self) -> str:
        return f"AgnosticAttack({self.attack!r})"


def evaluate_on_models(
    models: Mapping[str, Codec],
    x: torch.Tensor,
    x_adv: torch.Tensor,
    budget: Budget | str | None = None,
    crafted_on: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Verify ``x_adv`` against ``x`` on real bitstreams of every model: one row per model and image.

    Each row is :func:`~robustnic.attacks.verify.verify_attack`'s, with ``model`` (the key in
    ``models``), ``image`` (index in the batch) and ``seen`` (whether the model is one of
    ``crafted_on``: the perturbation was crafted against it, or it is held out).
    """
    rows = []
    for name, codec in models.items():
        for i, row in enumerate(verify_attack(codec, x, x_adv, budget=budget)):
            rows.append({"model": name, "image": i, "seen": name in crafted_on} | row)
    return rows


#: What :func:`evaluate_saved_run` writes into an attack folder.
MODELS_JSON, MODELS_CSV = "models.json", "models.csv"


def evaluate_saved_run(
    out_dir: str | Path, models: Mapping[str, Codec], crafted_on: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Verify every adversarial PNG of an attack folder (``robustnic attack``'s layout) on every model.

    Reads ``per_image.json``, loads each result's saved source and adversarial PNG (what the budget
    holds on), verifies them on real bitstreams of each model (:func:`evaluate_on_models`) and writes
    ``models.json`` (settings, per-image rows and the means) and ``models.csv`` (the means by model,
    method and budget) atomically; returns the means.
    """
    from robustnic.data.images import load_image

    out = Path(out_dir)
    saved = json.loads((out / "per_image.json").read_text())
    rows: list[dict[str, Any]] = []
    for r in saved.get("rows", []):
        x, x_adv = load_image(out / r["source-png"]), load_image(out / r["adversarial-png"])
        for row in evaluate_on_models(models, x, x_adv, budget=r["budget"], crafted_on=crafted_on):
            rows.append({"image": r["image"], "method": r["method"], "budget": r["budget"], "model": row["model"],
                         "seen": row["seen"]} | {k: v for k, v in row.items() if k not in ("image", "model", "seen")})
    order = {name: i for i, name in enumerate(models)}
    summary = sorted(group_means(rows, ("model", "method", "budget")), key=lambda g: order[g["model"]])
    report = {"crafted-on": list(crafted_on), "models": list(models), "summary": summary, "rows": rows}
    atomic_write_text(out / MODELS_JSON, json.dumps(json_safe(report), indent=2) + "\n")
    atomic_write_text(out / MODELS_CSV, csv_text(summary))
    return summary


__all__ = ["COMBINES", "MODELS_CSV", "MODELS_JSON", "AgnosticAttack", "CodecFamily", "FamilyContext", "FamilyOutput",
           "MeanObjective", "evaluate_on_models", "evaluate_saved_run"]
