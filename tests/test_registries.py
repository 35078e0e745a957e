"""Registries at the point of definition: attacks, defenses and purifiers register themselves with a
decorator, and the worked examples of docs/contributing.md (a new attack, a new purifier, each one
file) work as written."""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from pathlib import Path

import pytest
import torch

from robustnic.attacks import ATTACKS, Attack, Linf, make_attack, register_attack
from robustnic.attacks.registry import ATTACK_NAMES
from robustnic.defenses import DEFENSES, PURIFIERS, PurifiedCodec, SelfEnsembleCodec, make_defense, parse_purifier
from robustnic.errors import RobustnicError
from robustnic.utils.registry import Registry
from tests.conftest import tiny_codec

DOC = Path(__file__).resolve().parent.parent / "docs" / "contributing.md"


def doc_module(path: str, tmp_path: Path):
    """Import the code block of docs/contributing.md that starts with ``# <path>`` as a module."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    (code,) = [b for b in blocks if b.startswith(f"# {path}\n")]
    file = tmp_path / Path(path).name
    file.write_text(code, encoding="utf-8")
    name = f"_doc_example_{file.stem}"
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_every_builtin_attack_is_registered_under_the_name_the_cli_lists():
    """The torch-free name list (CLI choices) equals the decorated registry, in order, and every
    concrete Attack subclass of the package is registered under its own ``name``."""
    assert tuple(ATTACKS) == ATTACK_NAMES
    classes = {cls for name in ATTACK_NAMES for cls in inspect.getmro(ATTACKS[name]) if issubclass(cls, Attack)}
    for module in {c.__module__ for c in classes} - {"robustnic.attacks.base"}:
        for _, cls in inspect.getmembers(sys.modules[module], inspect.isclass):
            if issubclass(cls, Attack) and cls is not Attack and cls.__module__ == module:
                assert ATTACKS[cls.name] is cls, cls


def test_every_defense_prefix_reads_its_own_value():
    assert {"ensemble", "self-ensemble", "jpeg", "blur", "bits", "resize", "noise"} <= set(DEFENSES)
    assert {"median", "unsharp", "quantize", "diffjpeg", "crop", "rotate", "flip"} <= set(PURIFIERS)
    assert set(PURIFIERS) <= set(DEFENSES) and all(DEFENSES[k] is PURIFIERS[k] for k in PURIFIERS)
    codec = tiny_codec()
    for kind, cls in PURIFIERS.items():
        defended = make_defense(codec, kind)  # no value: the purifier's defaults
        assert isinstance(defended, PurifiedCodec) and type(defended.purifier) is cls and cls.kind == kind
    assert parse_purifier("JPEG:Q80").name == "jpeg:q80" and parse_purifier("bits:3").value == 3
    ens = make_defense(codec, "self-ensemble:rd:top2")
    assert isinstance(ens, SelfEnsembleCodec) and (ens.criterion, ens.top_k) == ("rd", 2)
    with pytest.raises(RobustnicError, match="unknown purifier or defense 'box'.*choose from ensemble"):
        make_defense(codec, "box:3+ensemble")
    with pytest.raises(RobustnicError, match="unknown purifier 'box'"):
        parse_purifier("box:3")
    for bad in ("bits:inf", "bits:2.5", "jpeg:q101", "blur:x"):
        with pytest.raises(RobustnicError):
            make_defense(codec, bad)


def test_a_registry_refuses_a_second_entry_under_one_name():
    reg: Registry[type] = Registry("thing")

    @reg.register("a", "alias")
    class A:
        pass

    with pytest.raises(ValueError, match="'a' is registered twice"):
        reg.register("a")(type("B", (), {}))
    assert list(reg) == ["a", "alias"] and reg.lookup("alias") is A
    with pytest.raises(RobustnicError, match="unknown thing 'b'; choose from a, alias"):
        reg.lookup("b")
    reg.unregister("a", "alias")
    assert len(reg) == 0


def test_the_attack_of_the_contributing_guide_is_one_file(tmp_path, photo):
    module = doc_module("src/robustnic/attacks/rfgsm.py", tmp_path)
    try:
        assert ATTACKS["rfgsm"] is module.RFGSM and list(ATTACKS)[-1] == "rfgsm"
        codec = tiny_codec()
        x = photo[..., :32, :32]
        a = make_attack("rfgsm", codec, budget="linf:4", seed=0)(x)
        assert Linf(4).satisfied(x, a) and not torch.equal(a, x)
        assert torch.equal(a, make_attack("rfgsm", codec, budget="linf:4", seed=0)(x))
        with pytest.raises(ValueError, match="registered twice"):
            register_attack("rfgsm")(type("Other", (Attack,), {}))
    finally:
        ATTACKS.unregister("rfgsm")
        sys.modules.pop(module.__name__, None)
    with pytest.raises(RobustnicError, match="unknown attack 'rfgsm'"):
        make_attack("rfgsm", tiny_codec())


def test_the_purifier_of_the_contributing_guide_is_one_file(tmp_path, photo):
    module = doc_module("src/robustnic/defenses/box.py", tmp_path)
    try:
        flat = torch.full((1, 3, 16, 16), 0.5)
        assert torch.allclose(parse_purifier("box:3")(flat), flat)  # a flat image stays flat ...
        salted = flat.clone()
        salted[..., 7, 9] = 1.0
        spread = parse_purifier("box:3")(salted)
        assert spread[..., 6:9, 8:11].sub(0.5).mul(9).allclose(torch.full((1, 3, 3, 3), 0.5))  # ... an outlier spreads
        with pytest.raises(RobustnicError, match="odd"):
            parse_purifier("box:4")
        codec = tiny_codec()
        defended = make_defense(codec, "box:3+ensemble")
        assert isinstance(defended.purifier, module.BoxPurifier) and isinstance(defended.codec, SelfEnsembleCodec)
        assert defended.name.endswith("+box:3")
        coded = defended.roundtrip(photo)
        assert coded.x_hat.shape == photo.shape
        x = photo.clone().requires_grad_(True)
        defended.forward(x).x_hat.sum().backward()  # differentiable: attacks reach the input
        assert x.grad.abs().sum() > 0
    finally:
        PURIFIERS.unregister("box")
        DEFENSES.unregister("box")
        sys.modules.pop(module.__name__, None)
    assert "box" not in DEFENSES
