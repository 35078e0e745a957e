"""Registries filled where each entry is defined (``@registry.register("name")``), as timm's models.

A registry may name the package whose modules define its built-in entries: they are imported on
the first lookup, so adding an entry is adding one module with the decorator in it. Entries
registered from anywhere else (a user's own module, once imported) work the same way.
Imports nothing heavy: a registry can be declared in a module the fast CLI reads.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Callable, Iterator, Sequence, TypeVar

from robustnic.errors import RobustnicError

T = TypeVar("T")


class Registry(Mapping[str, T]):
    """Names -> entries (classes or functions), in a stable order: a read-only mapping whose built-in
    entries are loaded when it is first read (not when it is imported).

    ``what`` names an entry in messages (``"attack"``); ``package`` is imported module by module on
    the first read; ``order`` lists names that come first, in that order (the rest follow in
    registration order).
    """

    def __init__(self, what: str, package: str | None = None, order: Sequence[str] = ()):
        self.what, self.package, self.order = what, package, tuple(order)
        self._entries: dict[str, T] = {}
        self._loaded = package is None

    def register(self, *names: str) -> Callable[[T], T]:
        """Decorator registering its target under ``names`` (the first is its own name)."""
        if not names or not all(isinstance(n, str) and n.strip() for n in names):
            raise ValueError(f"a {self.what} is registered under at least one non-empty name")

        def add(entry: T) -> T:
            for name in names:
                old = self._entries.get(name)
                if old is not None and _qualname(old) != _qualname(entry):  # a reloaded module may re-register
                    raise ValueError(f"{self.what} {name!r} is registered twice: {_qualname(old)} and {_qualname(entry)}")
                self._entries[name] = entry
            if self._loaded:
                self._sort()
            return entry

        return add

    def load(self) -> None:
        """Import every module of ``package`` (once), registering the built-in entries."""
        if self._loaded:
            return
        self._loaded = True  # set first: a module imported here may look the registry up again
        try:
            root = importlib.import_module(self.package)  # type: ignore[arg-type]
            for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda m: m.name):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{info.name}")
        except BaseException:
            self._loaded = False
            raise
        self._sort()

    def _sort(self) -> None:
        first = {n: self._entries[n] for n in self.order if n in self._entries}
        rest = {n: e for n, e in self._entries.items() if n not in first}
        self._entries.clear()
        self._entries.update(first | rest)

    def unregister(self, *names: str) -> None:
        """Remove ``names`` (a test's temporary entry, a plugin being replaced); absent names are ignored."""
        for name in names:
            self._entries.pop(name, None)

    def lookup(self, name: str) -> T:
        """The entry called ``name``; :class:`RobustnicError` naming the choices when there is none."""
        self.load()
        if name not in self._entries:
            raise RobustnicError(f"unknown {self.what} {name!r}; choose from {', '.join(self._entries)}")
        return self._entries[name]

    def __getitem__(self, name: str) -> T:
        self.load()
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        self.load()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self.load()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {list(self._entries) if self._loaded else 'not loaded'})"


def _qualname(entry: object) -> str:
    return f"{getattr(entry, '__module__', '?')}.{getattr(entry, '__qualname__', repr(entry))}"


__all__ = ["Registry"]
