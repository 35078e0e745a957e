"""Crediting a defense only with what survives an attack that knows it.

:func:`attack_defense` is :func:`robustnic.attacks.attack_and_verify` with ``adaptive=True``: a
(defended) codec is attacked once per attack mode it offers - through the defense (the
self-ensemble's chosen transform or its expectation over transforms, purification with
straight-through gradients) and around it (``"identity"``: the attack of the plain model) - every
result is verified on real bitstreams produced by the defended encoder, and per image the attack
that hurt most is kept (lowest reconstruction PSNR for the distortion objective).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from robustnic.attacks.pipeline import AttackSettings, attack_and_verify
from robustnic.codecs.base import Codec
from robustnic.utils.tables import finite_mean


@dataclass
class DefenseAttack:
    """Worst case over attack modes, per image, verified on real bitstreams."""

    #: Per image: the verified row (see :func:`robustnic.attacks.verify_attack`) of the attack
    #: mode with the lowest ``psnr-out``, plus ``attack-mode``.
    rows: list[dict]
    #: The adversarial images behind ``rows``.
    x_adv: torch.Tensor
    #: Every mode's verified rows.
    by_mode: dict[str, list[dict]] = field(default_factory=dict)

    def mean(self, key: str) -> float:
        """Mean of a numeric column over the images (None, NaN and inf left out; NaN if none is left):
        :func:`robustnic.utils.tables.finite_mean`, the rule of every robustnic table."""
        return finite_mean(r.get(key) for r in self.rows)


def attack_defense(
    codec: Codec,
    x: torch.Tensor,
    method: str = "paper",
    modes: tuple[str, ...] | None = None,
    references: tuple[str, ...] = ("clean",),
    **settings,
) -> DefenseAttack:
    """Attack ``codec`` in each of ``modes`` (default: every mode it offers) with ``method``, once
    per distortion ``reference`` (``"clean"``: away from the clean reconstruction, Chen & Ma;
    ``"source"``: away from the source image), and keep the worst per image.

    ``settings`` are the other fields of :class:`robustnic.attacks.AttackSettings` (``budget``,
    ``steps``, ``seed``, ``restarts``, ``metric``, ``standin``, ...); the work is
    :func:`robustnic.attacks.attack_and_verify` with ``adaptive=True``. A plain codec is attacked in
    mode ``"plain"``. The self-ensemble's ``"eot"`` mode always runs with the clean reference (its
    output stacks 8 reconstructions). Keys of ``by_mode`` and the rows' ``attack-mode`` are ``MODE``
    or ``MODE/source``.
    """
    variants = [AttackSettings(method=method, reference=r, **settings) for r in references]
    out = attack_and_verify(codec, x, variants, adaptive=True, modes=modes)
    rows = [{"attack-mode": "plain"} | r for r in out.rows]  # a plain codec's rows name their one mode too
    return DefenseAttack(rows, out.x_adv, out.by_mode)


__all__ = ["DefenseAttack", "attack_defense"]
