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
