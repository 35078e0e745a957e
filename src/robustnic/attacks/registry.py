"""The names of attack methods and objectives, importable without torch.

This is the one table of attack methods: :data:`robustnic.attacks.ATTACKS` is built from it (each
class imported on first use, its ``name`` checked against its key), and the CLI takes its option
choices from it without importing torch.
"""

from __future__ import annotations

import importlib

#: Attack method name -> ``"module:Class"``.
ATTACK_CLASSES: dict[str, str] = {
    "paper": "robustnic.attacks.paper:PaperAttack",
    "paper-reference": "robustnic.attacks.paper_reference:PaperReferenceAttack",
    "fgsm": "robustnic.attacks.fgsm:FGSM",
    "ifgsm": "robustnic.attacks.ifgsm:IFGSM",
    "pgd": "robustnic.attacks.pgd:PGD",
    "mifgsm": "robustnic.attacks.mifgsm:MIFGSM",
    "cw": "robustnic.attacks.cw:CW",
    "noise": "robustnic.attacks.noise:NoiseAttack",
    "shift": "robustnic.attacks.shift:ShiftAttack",
}
#: Attack method names, in the order of :data:`ATTACK_CLASSES`.
ATTACK_NAMES: tuple[str, ...] = tuple(ATTACK_CLASSES)
#: Methods that do not query the codec: references beside the attacks, not attacks.
BASELINES = ("noise", "shift")

#: Objective name -> ``"module:Class"`` (see :mod:`robustnic.attacks.objectives`).
OBJECTIVE_CLASSES: dict[str, str] = {
    "distortion": "robustnic.attacks.objectives:Distortion",
    "rate": "robustnic.attacks.objectives:Rate",
    "targeted": "robustnic.attacks.objectives:Targeted",
}
#: Objective names, in the order of :data:`OBJECTIVE_CLASSES`.
OBJECTIVE_NAMES: tuple[str, ...] = tuple(OBJECTIVE_CLASSES)
#: What the distortion objective pushes away from: the clean reconstruction (Chen & Ma) or the source.
REFERENCES = ("clean", "source")


def load_classes(table: dict[str, str]) -> dict[str, type]:
    """Import every ``"module:Class"`` of ``table``; each class's ``name`` must be its key."""
    out: dict[str, type] = {}
    for name, path in table.items():
        module, _, attr = path.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        if getattr(cls, "name", name) != name:
            raise RuntimeError(f"registry entry {name!r} points at {path} whose name is {cls.name!r}")
        out[name] = cls
    return out
