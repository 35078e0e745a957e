"""Kept for ``from robustnic.attacks.methods import ATTACKS, make_attack``: both live in
:mod:`robustnic.attacks.registry`."""

from robustnic.attacks.registry import ATTACKS, make_attack

__all__ = ["ATTACKS", "make_attack"]
