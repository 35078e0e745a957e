"""Adversarial attacks on any codec, with one budget, objective and stand-in definition for all.

>>> from robustnic.attacks import PSNR, make_attack, verify_attack
>>> atk = make_attack("paper", codec, budget=PSNR(40), steps=100, seed=0)   # doctest: +SKIP
>>> x_adv = atk(x)                                                          # doctest: +SKIP
>>> verify_attack(codec, x, x_adv)[0]["psnr-out"]                           # doctest: +SKIP

Methods (:data:`ATTACKS`): ``paper`` (Chen & Ma's attack, improved default), ``paper-reference``
(their 1001-step schedule, faithful), ``fgsm``, ``ifgsm``, ``pgd``, ``mifgsm``, ``cw``, NIC-RobustBench's
``madc``, ``ssah``, ``cadv`` and ``korhonen``, the wavelet-domain ``wavelet`` (T-MLA's family), and
the ``noise`` and ``shift`` (brightness) baselines.
Budgets: :class:`PSNR`, :class:`MSE`, :class:`Linf` (1/255 units),
:class:`L2`, or :func:`parse_budget` (``"psnr:40"``). Several budgets in one call:
``atk.sweep([PSNR(30), PSNR(35), PSNR(40)], x)`` -> ``{"psnr:30": x_adv, ...}``.

Each method registers itself where it is defined (``@register_attack("fgsm")`` on its class, see
:mod:`robustnic.attacks.registry`); a new attack is one new module (``docs/contributing.md``).
"""

from robustnic._lazy import lazy_exports

# Imported from the submodules on first use: ``import robustnic.attacks.registry`` (the CLI's option
# choices) does not import torch.
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "robustnic.attacks.registry": ("ATTACKS", "BASELINES", "make_attack", "register_attack"),
    "robustnic.attacks.base": ("Attack", "BestIterate", "sweep_budgets"),
    "robustnic.attacks.budget": ("BUDGETS", "L2", "MSE", "PSNR", "Budget", "Linf", "parse_budget"),
    "robustnic.attacks.cadv": ("CAdv",),
    "robustnic.attacks.cw": ("CW",),
    "robustnic.attacks.ensemble_models": ("AgnosticAttack", "CodecFamily", "MeanObjective", "evaluate_on_models"),
    "robustnic.attacks.fgsm": ("FGSM",),
    "robustnic.attacks.ifgsm": ("IFGSM",),
    "robustnic.attacks.korhonen": ("Korhonen",),
    "robustnic.attacks.madc": ("MADC",),
    "robustnic.attacks.mifgsm": ("MIFGSM",),
    "robustnic.attacks.noise": ("NoiseAttack",),
    "robustnic.attacks.objectives": ("OBJECTIVES", "AddedNoise", "Distortion", "Objective", "Rate", "RateDistortion",
                                     "Targeted", "make_objective", "to_color_space"),
    "robustnic.attacks.paper": ("PaperAttack",),
    "robustnic.attacks.paper_reference": ("PaperReferenceAttack",),
    "robustnic.attacks.pgd": ("PGD",),
    "robustnic.attacks.shift": ("ShiftAttack",),
    "robustnic.attacks.ssah": ("SSAH",),
    "robustnic.attacks.runner": ("AttackResult", "AttackRunDir", "run_attacks", "summarize",
                                   "write_results"),
    "robustnic.attacks.verify": ("verify_attack", "verify_images"),
    "robustnic.attacks.wavelet": ("WaveletAttack", "WaveletTransform"),
    "robustnic.attacks.pipeline": ("AttackOutcome", "AttackSettings", "attack_and_verify", "parse_mask"),
})
