"""One rule for tables: JSON-safe values, CSV cells, and means that leave None/NaN/inf out and say so.

The attack command's summary, the store export, eval, ``defend`` and the report all use
:mod:`robustnic.utils.tables`, so the same rows give the same means through every path.
"""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from robustnic.attacks.runner import _write_tables, summarize
from robustnic.codecs.evaluate import mean_row, write_results
from robustnic.defenses.evaluate import DefenseAttack
from robustnic.report.html import ATTACK_BY, ATTACK_METRICS, attack_means, render_report
from robustnic.studies import ResultStore, Row, export_rows
from robustnic.utils.tables import csv_text, finite_mean, from_json, group_means, json_safe, mean_count, write_csv

NAN, INF = math.nan, math.inf


# ----- values ------------------------------------------------------------------------------------
def test_json_safe_writes_nan_as_null_and_inf_as_strings_and_reads_both_rules_back():
    value = {"a": NAN, "b": INF, "c": [-INF, 1.5, None], "d": (1, True), "e": "x"}
    safe = json_safe(value)
    assert safe == {"a": None, "b": "inf", "c": ["-inf", 1.5, None], "d": [1, True], "e": "x"}
    back = from_json(json.loads(json.dumps(safe, allow_nan=False)))  # strict JSON
    assert back["b"] == INF and back["c"][0] == -INF and back["a"] is None
    # files written before the one rule used the string "nan": still read as NaN
    old = from_json({"psnr-out": "nan", "delta-psnr": "inf", "image": "a"})
    assert math.isnan(old["psnr-out"]) and old["delta-psnr"] == INF and old["image"] == "a"


def test_csv_cells_leave_none_and_nan_empty_and_write_inf(tmp_path):
    rows = [{"a": 1.5, "b": None}, {"a": NAN, "c": -INF, "b": True}]
    assert csv_text(rows) == "a,b,c\n1.5,,\n,True,-inf\n"
    assert csv_text([{"x": 1 / 3}], float_format="{:.3g}") == "x\n0.333\n"
    write_csv(tmp_path / "t.csv", rows, columns=["c", "a"])
    assert (tmp_path / "t.csv").read_text() == "c,a\n,1.5\n-inf,\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]  # atomic: no temporary file left


def test_means_leave_out_none_nan_and_inf_and_count_what_entered():
    assert mean_count([1.0, None, NAN, INF, -INF, 3.0]) == (2.0, 2)
    assert mean_count([True, False, True, None]) == (pytest.approx(2 / 3), 3)
    assert math.isnan(finite_mean([None, NAN])) and mean_count([])[1] == 0
    rows = [
        {"method": "paper", "budget": "psnr:40", "image": "a", "psnr": 20.0, "ok": True, "est": None},
        {"method": "fgsm", "budget": "psnr:40", "image": "a", "psnr": 10.0, "ok": False, "est": None},
        {"method": "paper", "budget": "psnr:40", "image": "b", "psnr": INF, "ok": True, "est": None},
        {"method": "paper", "budget": "psnr:40", "image": "c", "psnr": 26.0, "ok": False, "est": None},
    ]
    means = group_means(rows, ("method", "budget"))
    assert [m["method"] for m in means] == ["paper", "fgsm"]  # order of first appearance
    paper = means[0]
    assert paper["n"] == 3 and paper["psnr"] == 23.0 and paper["n:psnr"] == 2
    assert paper["ok"] == pytest.approx(2 / 3) and "n:ok" not in paper
    assert "image" not in paper and "est" not in paper  # text and all-None columns are not averaged
    assert means[1] == {"method": "fgsm", "budget": "psnr:40", "n": 1, "psnr": 10.0, "ok": 0.0}
    # asked for explicitly, a column no value entered is NaN with count 0
    explicit = group_means(rows, ("method",), ["est"])[0]
    assert math.isnan(explicit["est"]) and explicit["n:est"] == 0
    # unhashable group values (the store's image dicts) group by value
    by_dict = group_means([{"im": {"n": 1}, "v": 1.0}, {"im": {"n": 1}, "v": 3.0}, {"im": {"n": 2}, "v": 5.0}], ("im",))
    assert [(m["im"], m["v"], m["n"]) for m in by_dict] == [({"n": 1}, 2.0, 2), ({"n": 2}, 5.0, 1)]


def test_eval_and_defend_means_follow_the_same_rule(tmp_path):
    per_image = {"a": {"psnr-rgb": 30.0, "bpp": 0.5, "bpp-estimated": None},
                 "b": {"psnr-rgb": INF, "bpp": 0.7, "bpp-estimated": None},
                 "c": {"psnr-rgb": 32.0, "bpp": NAN, "bpp-estimated": None}}
    mean = mean_row(per_image.values())
    assert mean == {"psnr-rgb": 31.0, "bpp": pytest.approx(0.6), "bpp-estimated": None}
    json_path, csv_path = write_results([{"name": "m", "per_image": per_image, "results": mean}], tmp_path / "rd")
    saved = json.loads(json_path.read_text())  # strict JSON: inf as a string, missing values as null
    assert saved["per_image"]["m"]["b"]["psnr-rgb"] == "inf" and saved["per_image"]["m"]["c"]["bpp"] is None
    assert saved["results"]["bpp-estimated"] == [None]
    with open(csv_path) as f:
        table = {r["image"]: r for r in csv.DictReader(f)}
    assert table["b"]["psnr-rgb"] == "inf" and table["c"]["bpp"] == "" and table["mean"]["psnr-rgb"] == "31"
    attacked = DefenseAttack([{"psnr-out": 20.0}, {"psnr-out": INF}, {"psnr-out": 24.0}], torch.zeros(3, 3, 4, 4))
    assert attacked.mean("psnr-out") == 22.0


# ----- the attack command's summary and the report give the same means -----------------------------
_VALUES = [  # per image: psnr-out, delta-psnr, bpp-increase, budget-ok
    ("a", 20.0, INF, 0.25, True),
    ("b", NAN, 5.0, None, False),
    ("c", 23.5, None, 0.5, True),
    ("d", 21.0, 7.0, -INF, True),
]


def _cli_row(image, out, dpsnr, bpp_inc, ok) -> dict:
    """A row as ``robustnic attack`` writes it (see ``AttackResult.row`` and ``_save_images``)."""
    return {"image": image, "method": "paper", "psnr-in": 40.0, "psnr-clean": 30.0, "psnr-out": out,
            "psnr-drop": 30.0 - out, "delta-psnr": dpsnr, "bpp-clean": 0.4, "bpp-adv": 0.45,
            "bpp-increase": bpp_inc, "standin": "none", "budget": "psnr:40", "budget-ok": ok,
            "adversarial-png": f"adversarial/{image}.png"}


def _store_row(i: int, cli: dict) -> Row:
    """The same measurement as the grid's ``attack`` kind stores it."""
    config = {"kind": "attack", "model": "m", "defense": "none", "adaptive": False, "attack": cli["method"],
              "budget": cli["budget"], "objective": "distortion", "standin": "none", "steps": 5, "crop": 64,
              "seed": 0, "image": {"name": cli["image"]}}
    result = {k: v for k, v in cli.items() if k not in ("image", "method", "budget", "standin", "adversarial-png")}
    return Row(f"k{i}", "attack", config, "v", result, created=float(i + 1))


def _same(a, b) -> bool:
    """Equal means; a mean no value entered is NaN (written to JSON as null)."""
    a = NAN if a is None else a
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_attack_summary_and_report_give_identical_means_with_inf_nan_and_none(tmp_path):
    cli_rows = [_cli_row(*v) for v in _VALUES]
    # the attack command's path: summarize -> summary.json and summary.csv
    _write_tables(tmp_path / "attack", cli_rows, {"config": {}})
    saved = json.loads((tmp_path / "attack" / "summary.json").read_text())
    (summary,) = [from_json(s) for s in saved["summary"]]
    assert summary == from_json(json_safe(summarize(cli_rows)[0]))  # what the file holds is the summary
    with open(tmp_path / "attack" / "summary.csv") as f:
        (summary_csv,) = list(csv.DictReader(f))
    # the report's path: rows in a store -> the attack section's table
    with ResultStore(tmp_path / "s.sqlite") as store:
        for i, r in enumerate(cli_rows):
            store.put(_store_row(i, r))
        page = render_report(store)
        (report,) = attack_means(store.rows("attack"))
    assert set(ATTACK_BY) <= set(report) and report["n"] == summary["n"] == 4
    for metric in ATTACK_METRICS:
        assert _same(summary[metric], report[metric]), metric
        assert summary.get(f"n:{metric}") == report.get(f"n:{metric}"), metric
        csv_value = summary_csv[metric]
        assert (csv_value == "" and math.isnan(report[metric])) or float(csv_value) == report[metric], metric
    # and the numbers are what the rule says: None, NaN and ±inf left out, the count kept
    assert report["psnr-out"] == 21.5 and report["n:psnr-out"] == 3
    assert report["delta-psnr"] == 6.0 and report["n:delta-psnr"] == 2
    assert report["bpp-increase"] == 0.375 and report["n:bpp-increase"] == 2
    assert report["budget-ok"] == 0.75 and "n:budget-ok" not in report
    assert "6.00 <small" in page and "(2/4)</small>" in page  # the page shows how many values entered


def test_store_export_uses_the_same_rule(tmp_path):
    row = Row("k", "attack", {"model": "m", "list": [1.0, NAN]}, "v", {"a": NAN, "b": INF, "c": None})
    export_rows([row], tmp_path / "r.json")
    export_rows([row], tmp_path / "r.csv")
    saved = json.loads((tmp_path / "r.json").read_text())[0]
    assert saved["result"] == {"a": None, "b": "inf", "c": None}
    with open(tmp_path / "r.csv") as f:
        (flat,) = list(csv.DictReader(f))
    assert flat["result.a"] == "" and flat["result.b"] == "inf" and flat["result.c"] == ""
    assert json.loads(flat["config.list"]) == [1.0, None]


def test_is_finite_number_takes_only_finite_ints_and_floats():
    from robustnic.utils.tables import is_finite_number

    assert [is_finite_number(v) for v in (0, -2, 1.5, 1e300)] == [True] * 4
    assert [is_finite_number(v) for v in (True, math.nan, math.inf, -math.inf, None, "1", [1])] == [False] * 7
