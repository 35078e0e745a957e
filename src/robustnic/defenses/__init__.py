"""Defenses for learned image codecs (Chen & Ma, TCSVT 2023), each a :class:`Codec` wrapping a codec.

* :class:`SelfEnsembleCodec` - geometric self-ensemble: the encoder picks the best of 8
  flips/rotations and signals it in 3 header bits;
* :class:`PurifiedCodec` - input purification baselines: JPEG (real, and ``diffjpeg`` with a smooth
  stand-in's gradient), blur, median, unsharp mask, bit depth, colour quantisation, resizing, noise,
  and the randomised random crop / rotation / flip (attacked with an expectation over 8 draws);
* :class:`RefinedCodec` - latent refinement at the encoder: a few Adam steps on the latents it codes,
  for the rate-distortion of the decoded image (a plain stream of the model: any decoder reads it);

Adversarial fine-tuning (``robustnic finetune``) is training: :mod:`robustnic.training.finetune`.

Because a defended codec is a ``Codec``, every attack of :mod:`robustnic.attacks` runs through it
("an attack that knows the defense"). One string reaches any defense (:func:`make_defense`)::

    ensemble                 self-ensemble, distortion criterion, exhaustive search (alias self-ensemble)
    ensemble:rd:proxy:top2   RD criterion, proxy search, entropy-code the 2 best
    ensemble:chosen          ... attacked through the transform the encoder would pick
    jpeg:q90  blur:0.8  bits:5  resize:0.75  noise:2      purification
    median:3  unsharp:1.0  quantize:32  diffjpeg:q90      purification (filters, palette, smooth JPEG)
    crop:0.9  rotate:5  flip                              randomised purification (EOT-attacked)
    jpeg:q90+ensemble        purify, then self-ensemble
    refine:steps=20:lr=0.2   refine the latents (attacked through BPDA, the unrolled refinement, and around it)
    jpeg:q90+refine          purify, then refine (refine comes last: it is the encoder of the model)

Each prefix is registered where its class is defined (``@register_defense``, ``@register_purifier``;
see :mod:`robustnic.defenses.registry`): a new defense is one new module (``docs/contributing.md``).
"""

from __future__ import annotations

from robustnic.defenses.base import DefendedCodec
from robustnic.defenses.ensemble import (
    ATTACK_MODES,
    CRITERIA,
    SEARCHES,
    EnsembleChoice,
    SelfEnsembleCodec,
    forward_transforms,
    parse_ensemble,
    transform_groups,
)
from robustnic.defenses.evaluate import DefenseAttack, attack_defense
from robustnic.defenses.purification import (
    DEFAULT_PURIFIERS,
    PURIFIERS,
    PurifiedCodec,
    Purifier,
    parse_purifier,
    register_purifier,
)
from robustnic.defenses.refine import RefinedCodec, Refinement, parse_refine
from robustnic.defenses.registry import DEFENSES, make_defense, register_defense

__all__ = [
    "ATTACK_MODES",
    "DEFENSES",
    "DefenseAttack",
    "attack_defense",
    "CRITERIA",
    "DEFAULT_PURIFIERS",
    "PURIFIERS",
    "SEARCHES",
    "DefendedCodec",
    "EnsembleChoice",
    "PurifiedCodec",
    "Purifier",
    "RefinedCodec",
    "Refinement",
    "SelfEnsembleCodec",
    "forward_transforms",
    "make_defense",
    "parse_ensemble",
    "parse_purifier",
    "parse_refine",
    "register_defense",
    "register_purifier",
    "transform_groups",
]
