"""`make results` (benchmarks/results.py): blocks between markers are replaced by a command's output under
a stamp with the code fingerprint, and a table already made by this code is skipped (resume)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_runner(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "results.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def results(tmp_path, monkeypatch):
    mod = load_runner("bench_results")
    monkeypatch.setattr(mod, "BENCH", tmp_path)
    return mod


def test_every_registered_table_has_its_markers_and_script():
    mod = load_runner("bench_results_real")
    assert len(mod.BY_ID) == len(mod.TABLES)
    for table in mod.TABLES:
        assert table.script is not None and table.script.is_file(), table.id
        if not table.writes_file:
            text = (ROOT / "benchmarks" / table.file).read_text(encoding="utf-8")
            assert mod._block(text, table.id) is not None, f"{table.file} lacks the markers of {table.id}"


def test_block_is_replaced_stamped_and_then_skipped_as_current(results, tmp_path, capsys):
    counter = tmp_path / "runs.txt"
    script = "import pathlib,sys; p=pathlib.Path(sys.argv[1]); p.write_text(p.read_text()+'x') if p.exists() " \
             "else p.write_text('x'); print('| a | b |'); print('|---|---|'); print('| 1 |', len(p.read_text()), '|')"
    table = results.Table("demo", "R.md", (sys.executable, "-c", script, str(counter)))
    (tmp_path / "R.md").write_text("# R\n\nprose\n<!-- results:demo -->\nold table\n<!-- /results:demo -->\nmore prose\n")
    assert results.recorded_fingerprint(table) is None
    assert results.run_table(table) is True
    text = (tmp_path / "R.md").read_text()
    assert "old table" not in text and "| 1 | 1 |" in text
    assert text.startswith("# R\n\nprose\n") and text.endswith("more prose\n")
    assert results.recorded_fingerprint(table) == results.code_fingerprint(table)
    assert results.run_table(table) is False and counter.read_text() == "x"  # current: not rerun
    assert results.run_table(table, force=True) is True and "| 1 | 2 |" in (tmp_path / "R.md").read_text()


def test_a_failing_command_leaves_the_block_alone(results, tmp_path):
    table = results.Table("bad", "R.md", (sys.executable, "-c", "print('partial'); raise SystemExit(3)"))
    original = "<!-- results:bad -->\nkept\n<!-- /results:bad -->\n"
    (tmp_path / "R.md").write_text(original)
    with pytest.raises(SystemExit, match="exit status 3"):
        results.run_table(table)
    assert (tmp_path / "R.md").read_text() == original


def test_json_output_is_fenced_and_a_missing_marker_is_a_clear_error(results, tmp_path):
    table = results.Table("j", "R.md", (sys.executable, "-c", "print('{\"cases\": 2}')"), fence="json")
    (tmp_path / "R.md").write_text("<!-- results:j --><!-- /results:j -->\n")
    results.run_table(table)
    assert '```json\n{"cases": 2}\n```' in (tmp_path / "R.md").read_text()
    (tmp_path / "R.md").write_text("no markers\n")
    with pytest.raises(SystemExit, match="no markers for 'j'"):
        results.run_table(table, force=True)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_fingerprint_covers_the_code_a_table_runs_and_only_that(tmp_path, monkeypatch):
    mod = load_runner("bench_results_scope")
    src = tmp_path / "src" / "robustnic"
    _write(src / "__init__.py", "")
    _write(src / "a.py", "def f():\n    from robustnic import b\n    return b\n")
    _write(src / "b.py", "X = 1\n")
    _write(src / "lazy.py", "MODULE = 'robustnic.c:thing'\n")  # named in a string: imported at run time
    _write(src / "c.py", "Y = 2\n")
    _write(src / "unused.py", '"""Mentions robustnic.b in prose only."""\nimport robustnic.report\n')
    _write(src / "report" / "__init__.py", "")
    _write(src / "reg" / "__init__.py", "from robustnic.utils import Registry\nR = Registry('robustnic.reg')\n")
    _write(src / "reg" / "one.py", "Z = 3\n")
    _write(src / "utils" / "__init__.py", "class Registry: ...\n")
    _write(src / "weights" / "manifest.json",
           '{"models": [{"family": "m", "quality": 3, "sha256": "aa"}, {"family": "n", "quality": 3, "sha256": "bb"}]}')
    script = _write(tmp_path / "benchmarks" / "t.py",
                    "import robustnic.a\nimport robustnic.lazy\nimport robustnic.reg\nMODEL = 'm:q3'\n")
    monkeypatch.setattr(mod, "ROOT", tmp_path)
    monkeypatch.setattr(mod, "SOURCE", src)
    table = mod.Table("t", "R.md", ("python", "benchmarks/t.py"))

    names = {str(p.relative_to(src)) for p in mod.table_modules(table, src)}
    assert names == {"__init__.py", "a.py", "b.py", "lazy.py", "c.py", "reg/__init__.py", "reg/one.py",
                     "utils/__init__.py"}
    assert [w[:2] for w in mod.table_weights(table, mod.table_modules(table, src), src)] == [("m", 3)]

    before = mod.code_fingerprint(table)
    _write(src / "unused.py", "# edited\n")
    _write(src / "report" / "__init__.py", "# edited\n")
    manifest = (src / "weights" / "manifest.json")
    manifest.write_text(manifest.read_text().replace('"bb"', '"cc"'))
    assert mod.code_fingerprint(table) == before  # code and weights it does not use
    for edit in (src / "c.py", src / "reg" / "one.py"):
        _write(edit, edit.read_text() + "# edited\n")
        after = mod.code_fingerprint(table)
        assert after != before, edit.name
        before = after
    manifest.write_text(manifest.read_text().replace('"aa"', '"dd"'))
    assert mod.code_fingerprint(table) != before  # the weights it names


def test_fingerprint_covers_the_benchmark_helpers_a_script_imports(tmp_path, monkeypatch):
    mod = load_runner("bench_results_helpers")
    src = tmp_path / "src" / "robustnic"
    _write(src / "__init__.py", "")
    _write(src / "d.py", "W = 4\n")
    helper = _write(tmp_path / "benchmarks" / "helper.py", "import json\nimport robustnic.d\n")
    other = _write(tmp_path / "benchmarks" / "other.py", "V = 5\n")
    _write(tmp_path / "benchmarks" / "t.py", "import sys\nfrom helper import thing\n")
    monkeypatch.setattr(mod, "ROOT", tmp_path)
    table = mod.Table("t", "R.md", ("python", "benchmarks/t.py"))
    assert set(mod.table_modules(table, src)) == {helper, src / "__init__.py", src / "d.py"}
    monkeypatch.setattr(mod, "SOURCE", src)
    before = mod.code_fingerprint(table)
    _write(other, "V = 6\n")
    assert mod.code_fingerprint(table) == before  # a script it does not import
    _write(helper, helper.read_text() + "# edited\n")
    assert mod.code_fingerprint(table) != before
