"""Defenses for learned image codecs (Chen & Ma, TCSVT 2023), each a :class:`Codec` wrapping a codec.

* :class:`SelfEnsembleCodec` - geometric self-ensemble: the encoder picks the best of 8
  flips/rotations and signals it in 3 header bits;
* :class:`PurifiedCodec` - input purification baselines (JPEG, blur, bit depth, resizing, noise);

Adversarial fine-tuning (``robustnic finetune``) is training: :mod:`robustnic.training.finetune`.

Because a defended codec is a ``Codec``, every attack of :mod:`robustnic.attacks` runs through it
("an attack that knows the defense"). One string reaches any defense (:func:`make_defense`)::

    ensemble                 self-ensemble, distortion criterion, exhaustive search (alias self-ensemble)
    ensemble:rd:proxy:top2   RD criterion, proxy search, entropy-code the 2 best
    ensemble:chosen          ... attacked through the transform the encoder would pick
    jpeg:q90  blur:0.8  bits:5  resize:0.75  noise:2      purification
    jpeg:q90+ensemble        purify, then self-ensemble
"""

from __future__ import annotations

from robustnic.codecs.base import Codec
from robustnic.defenses.base import DefendedCodec
from robustnic.defenses.ensemble import (
    ATTACK_MODES,
    CRITERIA,
    SEARCHES,
    EnsembleChoice,
    SelfEnsembleCodec,
    forward_transforms,
    transform_groups,
)
from robustnic.defenses.evaluate import DefenseAttack, attack_defense
from robustnic.defenses.purification import (
    DEFAULT_PURIFIERS,
    PURIFIERS,
    PurifiedCodec,
    Purifier,
    parse_purifier,
)
from robustnic.errors import RobustnicError


def parse_ensemble(spec: str) -> dict:
    """Keyword arguments of :class:`SelfEnsembleCodec` from ``ensemble[:rd][:proxy][:topK][:MODE]``."""
    kwargs: dict = {}
    for part in spec.lower().split(":")[1:]:
        if part in CRITERIA:
            kwargs["criterion"] = part
        elif part in SEARCHES:
            kwargs["search"] = part
        elif part in ATTACK_MODES:
            kwargs["attack_mode"] = part
        elif part.startswith("top") and part[3:].isdigit():
            kwargs["top_k"] = int(part[3:])
        else:
            raise RobustnicError(
                f"cannot understand {part!r} in {spec!r}: use ensemble[:{'|'.join(CRITERIA)}]"
                f"[:{'|'.join(SEARCHES)}][:topK][:{'|'.join(ATTACK_MODES)}]"
            )
    return kwargs


def make_defense(codec: Codec, spec: str) -> Codec:
    """Wrap ``codec`` with the defenses of ``spec`` (see the module docstring); ``none`` returns it.

    ``A+B`` applies A to the image first, then B (``jpeg:q90+ensemble``: purify, then ensemble).
    """
    spec = spec.strip()
    if spec.lower() in ("", "none", "vanilla"):
        return codec
    for part in reversed(spec.split("+")):
        part = part.strip()
        if part.lower().split(":")[0] in ("ensemble", "self-ensemble"):
            try:
                codec = SelfEnsembleCodec(codec, **parse_ensemble(part))
            except ValueError as exc:
                raise RobustnicError(str(exc)) from None
        else:
            codec = PurifiedCodec(codec, part)
    return codec


__all__ = [
    "ATTACK_MODES",
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
    "SelfEnsembleCodec",
    "forward_transforms",
    "make_defense",
    "parse_ensemble",
    "parse_purifier",
    "transform_groups",
]
