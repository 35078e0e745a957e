"""Adversarial attacks on any codec, with one budget, objective and stand-in definition for all.

>>> from robustnic.attacks import PSNR, make_attack, verify_attack
>>> atk = make_attack("paper", codec, budget=PSNR(40), steps=100, seed=0)   # doctest: +SKIP
>>> x_adv = atk(x)                                                          # doctest: +SKIP
>>> verify_attack(codec, x, x_adv)[0]["psnr-out"]                           # doctest: +SKIP

Methods (:data:`ATTACKS`): ``paper`` (Chen & Ma's attack, improved default), ``paper-reference``
(their 1001-step schedule, faithful), ``fgsm``, ``ifgsm``, ``pgd``, ``mifgsm``, ``cw`` and the
``noise`` and ``shift`` (brightness) baselines. Budgets: :class:`PSNR`, :class:`MSE`, :class:`Linf` (1/255 units),
:class:`L2`, or :func:`parse_budget` (``"psnr:40"``). Several budgets in one call:
``atk.sweep([PSNR(30), PSNR(35), PSNR(40)], x)`` -> ``{"psnr:30": x_adv, ...}``.
"""

from __future__ import annotations

from robustnic.attacks.base import Attack, BestIterate, sweep_budgets
from robustnic.attacks.budget import BUDGETS, L2, MSE, PSNR, Budget, Linf, parse_budget
from robustnic.attacks.cw import CW
from robustnic.attacks.fgsm import FGSM
from robustnic.attacks.ifgsm import IFGSM
from robustnic.attacks.mifgsm import MIFGSM
from robustnic.attacks.noise import NoiseAttack
from robustnic.attacks.objectives import OBJECTIVES, Distortion, Objective, Rate, Targeted, make_objective
from robustnic.attacks.paper import PaperAttack
from robustnic.attacks.paper_reference import PaperReferenceAttack
from robustnic.attacks.pgd import PGD
from robustnic.attacks.shift import ShiftAttack
from robustnic.attacks.runner import AttackResult, run_attacks, summarize, write_results
from robustnic.attacks.verify import verify_attack, verify_images
from robustnic.codecs.base import Codec
from robustnic.errors import RobustnicError

#: Attack methods by name.
ATTACKS: dict[str, type[Attack]] = {
    "paper": PaperAttack,
    "paper-reference": PaperReferenceAttack,
    "fgsm": FGSM,
    "ifgsm": IFGSM,
    "pgd": PGD,
    "mifgsm": MIFGSM,
    "cw": CW,
    "noise": NoiseAttack,
    "shift": ShiftAttack,
}
#: Methods that do not query the codec: references beside the attacks, not attacks.
BASELINES = ("noise", "shift")


def make_attack(method: str, codec: Codec, **kwargs) -> Attack:
    """An attack by name (see :data:`ATTACKS`); ``kwargs`` go to its constructor.

    ``steps=None`` keeps the method's own default (e.g. 1001 for ``paper-reference``).
    """
    if method not in ATTACKS:
        raise RobustnicError(f"unknown attack {method!r}; choose from {', '.join(ATTACKS)}")
    if kwargs.get("steps", 0) is None:
        kwargs.pop("steps")
    return ATTACKS[method](codec, **kwargs)


__all__ = [
    "ATTACKS",
    "BASELINES",
    "BUDGETS",
    "CW",
    "FGSM",
    "IFGSM",
    "L2",
    "MIFGSM",
    "MSE",
    "OBJECTIVES",
    "PGD",
    "PSNR",
    "Attack",
    "AttackResult",
    "BestIterate",
    "Budget",
    "Distortion",
    "Linf",
    "NoiseAttack",
    "ShiftAttack",
    "Objective",
    "PaperAttack",
    "PaperReferenceAttack",
    "Rate",
    "Targeted",
    "make_attack",
    "make_objective",
    "parse_budget",
    "run_attacks",
    "summarize",
    "sweep_budgets",
    "verify_attack",
    "verify_images",
    "write_results",
]
