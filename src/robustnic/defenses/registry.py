"""Defenses by spec prefix, registered where each is defined, and :func:`make_defense`.

A defense spec is ``PREFIX[:VALUE]`` (``ensemble:rd:proxy``, ``jpeg:q90``), chained with ``+``
(``jpeg:q90+ensemble``: purify, then self-ensemble). Each prefix belongs to a class that registers
itself and reads its own value::

    @register_defense("ensemble", "self-ensemble")
    class SelfEnsembleCodec(DefendedCodec):
        @classmethod
        def from_spec(cls, codec, value): ...     # value: the text after "ensemble:"

Purifiers register through :func:`robustnic.defenses.purification.register_purifier`, which does
this for them. The modules of :mod:`robustnic.defenses` are imported when the registry is first
read, so a new defense is one new module there (or any imported module of your own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, TypeVar

from robustnic.errors import RobustnicError
from robustnic.utils.registry import Registry

if TYPE_CHECKING:
    from robustnic.codecs.base import Codec

T = TypeVar("T")

#: Spec prefix -> the class that reads the rest of the spec (its ``from_spec(codec, value)``).
DEFENSES: Registry[Any] = Registry("purifier or defense", package="robustnic.defenses")
#: Specs that name no defense.
NO_DEFENSE = ("", "none", "vanilla")


def register_defense(*prefixes: str) -> Callable[[T], T]:
    """Class decorator: the class defends codecs named ``PREFIX[:VALUE]`` for each of ``prefixes``;
    it must have a ``from_spec(codec, value) -> Codec`` classmethod reading ``VALUE`` (``""`` when absent)."""
    add = DEFENSES.register(*(p.lower() for p in prefixes))

    def decorate(cls: T) -> T:
        if not callable(getattr(cls, "from_spec", None)):
            raise TypeError(f"{cls!r} needs a from_spec(codec, value) classmethod to be registered as a defense")
        return add(cls)

    return decorate


def make_defense(codec: Codec, spec: str) -> Codec:
    """Wrap ``codec`` with the defenses of ``spec``; ``none`` (or ``vanilla``, or empty) returns it.

    ``A+B`` applies A to the image first, then B (``jpeg:q90+ensemble``: purify, then ensemble).
    Raises :class:`RobustnicError` naming the known prefixes for an unknown one.
    """
    spec = spec.strip()
    if spec.lower() in NO_DEFENSE:
        return codec
    for part in reversed(spec.split("+")):
        prefix, _, value = part.strip().lower().partition(":")
        if prefix not in DEFENSES:
            raise RobustnicError(f"unknown purifier or defense {prefix!r} in {spec!r}; choose from {', '.join(DEFENSES)}")
        codec = DEFENSES[prefix].from_spec(codec, value.strip())
    return codec


__all__ = ["DEFENSES", "NO_DEFENSE", "make_defense", "register_defense"]
