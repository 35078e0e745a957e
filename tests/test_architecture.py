"""The layers of ``src/robustnic``: every import (module level, inside functions, under TYPE_CHECKING,
or a module path written as a string for a lazy import) runs down the layer order, never up or
sideways. The order is written out here; a new top-level package must be placed in it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import robustnic

#: Lowest first. A module may import its own component and components of lower layers; components
#: that share a layer are independent of each other.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "_lazy"),  # exceptions, lazy package exports
    ("robustnic",),  # the package root: its version, and the exceptions again
    ("utils",),
    ("data", "metrics"),
    ("codecs",),
    ("attacks",),
    ("defenses",),
    ("training", "studies"),
    ("report",),
    ("app",),  # runs studies and the demo, then the report
    ("cli",),
    ("testing",),  # helpers of the test suite and benchmarks (bad inputs); nothing imports them
]
LAYER_OF = {component: i for i, layer in enumerate(LAYERS) for component in layer}
ROOT = Path(robustnic.__file__).resolve().parent
# a module path written as a whole string: "robustnic.attacks.objectives" or "robustnic.codecs.zoo:load_codec"
_MODULE_STRING = re.compile(r"robustnic(\.[A-Za-z_]\w*)+(:[A-Za-z_]\w*)?")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("robustnic", *parts))


def component(module: str) -> str:
    """The top-level part of ``robustnic`` a module belongs to (``robustnic`` for the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "robustnic"


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, module) for every robustnic module that ``source`` imports, anywhere in it."""
    found: list[tuple[int, str]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base == "robustnic":  # from robustnic import codecs / __version__: a component or the root
                found += [(node.lineno, f"robustnic.{a.name}" if a.name in LAYER_OF else base) for a in node.names]
            else:
                found.append((node.lineno, base))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_STRING.fullmatch(node.value):
            found.append((node.lineno, node.value.partition(":")[0]))
    return [(line, m) for line, m in found if m == "robustnic" or m.startswith("robustnic.")]


def layer_violations(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """Every import among ``sources`` (module -> (source, is_package)) that breaks :data:`LAYERS`."""
    problems = []
    for module, (source, is_package) in sorted(sources.items()):
        here = component(module)
        if here not in LAYER_OF:
            problems.append(f"{module}: component {here!r} has no layer (add it to LAYERS)")
            continue
        for line, target in imported_modules(source, module, is_package):
            there = component(target)
            if there == here:
                continue
            if there not in LAYER_OF:
                problems.append(f"{module}:{line} imports {target}, whose component {there!r} has no layer")
            elif LAYER_OF[there] > LAYER_OF[here]:
                problems.append(f"{module}:{line} imports {target}: {here} may not import the higher layer {there}")
            elif LAYER_OF[there] == LAYER_OF[here]:
                problems.append(f"{module}:{line} imports {target}: {here} and {there} share a layer and stay independent")
    return problems


def package_sources(root: Path = ROOT) -> dict[str, tuple[str, bool]]:
    return {module_name(p, root): (p.read_text(encoding="utf-8"), p.name == "__init__.py") for p in root.rglob("*.py")}


def test_no_import_runs_up_a_layer():
    sources = package_sources()
    assert len(sources) > 50 and "robustnic.codecs.zoo" in sources
    problems = layer_violations(sources)
    assert not problems, "\n".join(problems)


def test_every_component_has_a_layer():
    components = {component(m) for m in package_sources()}
    assert components <= set(LAYER_OF), sorted(components - set(LAYER_OF))


def test_the_checker_finds_upward_sideways_and_hidden_imports():
    """The checker itself: imports inside functions, under TYPE_CHECKING, relative, ``from robustnic
    import X`` and module paths in strings all count."""
    sources = {
        "robustnic.data.bad": ("def f():\n    from robustnic.codecs import container\n", False),
        "robustnic.codecs.bad": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                 "    from robustnic.attacks.base import Attack\n", False),
        "robustnic.metrics.bad": ("from ..data import images\n", False),
        "robustnic.utils.bad": ("from robustnic import studies\n", False),
        "robustnic.attacks.bad": ("TABLE = {'x': 'robustnic.defenses.ensemble:SelfEnsembleCodec'}\n", False),
        "robustnic.studies.bad": ("import robustnic.training.rd\n", False),
        "robustnic.cli.good": ("import robustnic\nfrom robustnic.codecs import load_codec\nfrom . import main\n"
                               "'see robustnic.testing.badinputs for more'\n", False),
        "robustnic.newpkg.x": ("", False),
    }
    problems = layer_violations(sources)
    for module, target in [("robustnic.data.bad:2", "robustnic.codecs"),
                           ("robustnic.codecs.bad:3", "robustnic.attacks.base"),
                           ("robustnic.metrics.bad:1", "robustnic.data"),
                           ("robustnic.utils.bad:1", "robustnic.studies"),
                           ("robustnic.attacks.bad:1", "robustnic.defenses.ensemble"),
                           ("robustnic.studies.bad:1", "robustnic.training.rd")]:
        assert any(p.startswith(f"{module} imports {target}") for p in problems), (module, problems)
    assert not any(p.startswith("robustnic.cli.good") for p in problems)
    assert any("'newpkg' has no layer" in p for p in problems)
    assert len(problems) == 7
