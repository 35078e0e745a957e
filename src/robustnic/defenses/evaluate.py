"""Crediting a defense only with what survives an attack that knows it.

:func:`attack_defense` attacks a (defended) codec once per attack mode it offers - through the
defense (the self-ensemble's chosen transform or its expectation over transforms, purification
with straight-through gradients) and around it (``"identity"``: the attack of the plain model) -
verifies every result on real bitstreams produced by the defended encoder, and keeps, per image,
the attack that hurt most (lowest reconstruction PSNR).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from robustnic.attacks import make_attack, verify_attack
from robustnic.codecs.base import Codec
from robustnic.defenses.base import DefendedCodec
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
    **attack_kwargs,
) -> DefenseAttack:
    """Attack ``codec`` in each of ``modes`` (default: every mode it offers) with ``method``, once
    per distortion ``reference`` (``"clean"``: away from the clean reconstruction, Chen & Ma;
    ``"source"``: away from the source image).

    ``attack_kwargs`` go to :func:`robustnic.attacks.make_attack` (``budget``, ``steps``, ``seed``
    ...). Each result is verified with :func:`robustnic.attacks.verify_attack` on ``codec`` in its
    default mode (the bytes are always the defended encoder's); per image the lowest
    reconstruction PSNR wins. A plain codec is attacked in mode ``"plain"``. The self-ensemble's
    ``"eot"`` mode always runs with the clean reference (its output has 24 channels). Keys of
    ``by_mode`` and the rows' ``attack-mode`` are ``MODE`` or ``MODE/source``.
    """
    defended = isinstance(codec, DefendedCodec)
    if modes is None:
        modes = codec.attack_modes if defended else ("plain",)
    verifier = codec.with_attack_mode(codec.attack_modes[0]) if defended else codec
    by_mode: dict[str, list[dict]] = {}
    best_rows: list[dict] = []
    best_x: list[torch.Tensor] = []
    runs = [(m, r) for m in modes for r in references if not (m == "eot" and r == "source")]
    if "eot" in modes and not any(m == "eot" for m, _ in runs):
        runs.append(("eot", "clean"))  # the expectation over transforms only has the clean reference
    for mode, reference in runs:
        target = codec.with_attack_mode(mode) if defended else codec
        atk = make_attack(method, target, reference=reference, **attack_kwargs)
        x_adv = atk(x)
        rows = verify_attack(verifier, x, x_adv, budget=atk.budget, attack_time=atk.elapsed)
        name = mode if reference == "clean" else f"{mode}/{reference}"
        by_mode[name] = rows
        for i, row in enumerate(rows):
            row = row | {"attack-mode": name}
            if i == len(best_rows):
                best_rows.append(row)
                best_x.append(x_adv[i : i + 1])
            elif row["psnr-out"] < best_rows[i]["psnr-out"]:
                best_rows[i], best_x[i] = row, x_adv[i : i + 1]
    return DefenseAttack(best_rows, torch.cat(best_x), by_mode)


__all__ = ["DefenseAttack", "attack_defense"]
