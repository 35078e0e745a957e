"""Attack methods by name, registered where each is defined, and the names the CLI lists without torch.

Each attack class carries its registration::

    @register_attack("fgsm")
    class FGSM(Attack): ...

:func:`make_attack` and :data:`ATTACKS` read that registry; the modules of :mod:`robustnic.attacks`
are imported on the first lookup, so a new attack is one new module there (or any imported module
of your own). :data:`ATTACK_NAMES` is the same list as plain strings for the command line's
choices (``robustnic attack --help`` imports no torch); a test checks that it equals the registry.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable, Mapping

from robustnic.utils.registry import Registry

if TYPE_CHECKING:
    from robustnic.attacks.base import Attack
    from robustnic.codecs.base import Codec

#: The built-in attack methods, in the order listings show them (torch-free; equals the registry).
ATTACK_NAMES: tuple[str, ...] = ("paper", "paper-reference", "fgsm", "ifgsm", "pgd", "mifgsm", "cw",
                                   "madc", "ssah", "cadv", "korhonen", "wavelet", "noise", "shift")
#: Methods that do not query the codec: references beside the attacks, not attacks.
BASELINES = ("noise", "shift")

#: The attack classes by name, filled by :func:`register_attack` (a read-only mapping; the modules of
#: :mod:`robustnic.attacks` are imported when it is first read).
ATTACKS: Registry[type[Attack]] = Registry("attack", package="robustnic.attacks", order=ATTACK_NAMES)


def register_attack(name: str) -> Callable[[type[Attack]], type[Attack]]:
    """Class decorator: register an :class:`~robustnic.attacks.base.Attack` subclass as method ``name``
    (which becomes its ``name`` attribute)."""
    add = ATTACKS.register(name)

    def decorate(cls: type[Attack]) -> type[Attack]:
        cls.name = name
        return add(cls)

    return decorate


def make_attack(method: str, codec: Codec, **kwargs: Any) -> Attack:
    """An attack by name (see :data:`ATTACKS`); ``kwargs`` go to its constructor.

    ``steps=None`` keeps the method's own default (e.g. 1001 for ``paper-reference``).
    """
    cls = ATTACKS.lookup(method)
    if kwargs.get("steps", 0) is None:
        kwargs.pop("steps")
    return cls(codec, **kwargs)


#: Objective name -> ``"module:Class"`` (see :mod:`robustnic.attacks.objectives`).
OBJECTIVE_CLASSES: dict[str, str] = {
    "distortion": "robustnic.attacks.objectives:Distortion",
    "rate": "robustnic.attacks.objectives:Rate",
    "targeted": "robustnic.attacks.objectives:Targeted",
    "added-noise": "robustnic.attacks.objectives:AddedNoise",
    "rate-distortion": "robustnic.attacks.objectives:RateDistortion",
}
#: Objective names, in the order of :data:`OBJECTIVE_CLASSES`.
OBJECTIVE_NAMES: tuple[str, ...] = tuple(OBJECTIVE_CLASSES)
#: What the distortion objective pushes away from: the clean reconstruction (Chen & Ma) or the source.
REFERENCES = ("clean", "source")
#: Colour spaces a distortion can be measured in (BT.601 full range; ``y``: luma only).
COLORS = ("rgb", "ycbcr", "y")


def load_classes(table: Mapping[str, str]) -> dict[str, type]:
    """Import every ``"module:Class"`` of ``table``; each class's ``name`` must be its key."""
    out: dict[str, type] = {}
    for name, path in table.items():
        module, _, attr = path.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        if getattr(cls, "name", name) != name:
            raise RuntimeError(f"registry entry {name!r} points at {path} whose name is {cls.name!r}")
        out[name] = cls
    return out


__all__ = ["ATTACKS", "ATTACK_NAMES", "BASELINES", "COLORS", "OBJECTIVE_CLASSES", "OBJECTIVE_NAMES",
           "REFERENCES", "load_classes", "make_attack", "register_attack"]
