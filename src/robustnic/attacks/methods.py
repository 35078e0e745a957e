"""Attack methods by name (:data:`ATTACKS`, built from :mod:`robustnic.attacks.registry`) and
:func:`make_attack`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from robustnic.attacks.registry import ATTACK_CLASSES, load_classes
from robustnic.errors import RobustnicError

if TYPE_CHECKING:
    from robustnic.attacks.base import Attack
    from robustnic.codecs.base import Codec

#: Attack methods by name.
ATTACKS: dict[str, type[Attack]] = load_classes(ATTACK_CLASSES)


def make_attack(method: str, codec: Codec, **kwargs: Any) -> Attack:
    """An attack by name (see :data:`ATTACKS`); ``kwargs`` go to its constructor.

    ``steps=None`` keeps the method's own default (e.g. 1001 for ``paper-reference``).
    """
    if method not in ATTACKS:
        raise RobustnicError(f"unknown attack {method!r}; choose from {', '.join(ATTACKS)}")
    if kwargs.get("steps", 0) is None:
        kwargs.pop("steps")
    return ATTACKS[method](codec, **kwargs)


__all__ = ["ATTACKS", "make_attack"]
