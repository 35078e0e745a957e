"""``robustnic demo --quick``: runs every study, writes the report, resumes; the report renders in Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
from PIL import Image

from robustnic.cli.main import main
from robustnic.studies import ResultStore
from robustnic.studies.grid import CODE_VERSION_ENV

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CODE_VERSION_ENV, "test-pinned")  # others may edit the hashed sources meanwhile
        yield tmp_path_factory.mktemp("demo")


def test_quick_demo_runs_every_study_and_prints_the_report(demo, capsys):
    assert main(["demo", "--quick", "--out", str(demo), "--workers", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    report = demo / "report.html"
    assert f"report: {report.resolve()}" in printed and report.is_file()
    with ResultStore(demo / "results.sqlite", readonly=True) as store:
        kinds = {r.kind for r in store.rows()}
        n = len(store)
    assert kinds == {"rd", "attack", "recompression", "transfer-model", "transfer-image"}
    page = report.read_text()
    for section in ("rd", "attacks", "curves", "recompression", "transfer"):
        assert f'<section id="{section}">' in page
    assert "quick mode" in page
    # a rerun finds every row and runs nothing
    assert main(["demo", "--quick", "--out", str(demo), "--workers", "1", "--no-progress"]) == 0
    assert re.search(rf"0 jobs run, {n} already done, 0 failed", capsys.readouterr().out)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(demo, tmp_path):
    report = demo / "report.html"
    if not report.is_file():
        pytest.skip("the demo test did not produce a report")
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}", f"--screenshot={shot}", "--window-size=1400,3000",
           report.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, timeout=180)
    assert shot.is_file(), proc.stderr.decode()[-2000:]
    arr = np.asarray(Image.open(shot).convert("RGB"))
    assert arr.shape[:2] == (3000, 1400)
    ink = (arr < 200).any(axis=2)
    assert ink.mean() > 0.05  # tables, plots and panels drawn, not a blank page
    colourful = (arr.max(axis=2).astype(int) - arr.min(axis=2)) > 60
    assert colourful.sum() > 20_000  # plots and photos, not only text


def _attacked(spec: dict) -> set[tuple[str, str]]:
    return {(m, b) for s in spec["study"] if s["kind"] == "attack" and s.get("attacks") == ["paper"]
            for m in s["models"] for b in s["budgets"]}


def test_demo_attacks_the_highest_rate_model_beside_the_vanilla_one_at_35_and_40_db():
    from robustnic.codecs.zoo import read_manifest
    from robustnic.studies.presets import demo_spec, highest_rate_model, robust_models

    manifest = read_manifest()
    high = highest_rate_model(manifest)
    robust = set(robust_models(manifest))
    assert manifest[high].info["lambda"] == max(m.info["lambda"] for s, m in manifest.items()
                                                if m.metric == "mse" and s not in robust)
    spec, notes = demo_spec()
    vanilla = spec["study"][0]["models"][0]
    assert {(vanilla, "psnr:35"), (vanilla, "psnr:40"), (high, "psnr:35"), (high, "psnr:40")} <= _attacked(spec)
    assert any(high in n and "highest rate" in n for n in notes)
    family = high.split(":")[0]  # the clean RD plot draws the high-rate family as a line of all its rates
    ladder = {m for m in manifest if m.split(":")[0] == family}
    assert len(ladder) > 1 and ladder <= set(spec["study"][0]["models"])


def test_pretrained_demo_runs_the_same_sections_on_compressai_models():
    from robustnic.studies.presets import PRETRAINED_DEMO, demo_spec

    shipped, _ = demo_spec()
    spec, notes = demo_spec(pretrained=True)
    low, high = PRETRAINED_DEMO
    assert {(low, "psnr:35"), (low, "psnr:40"), (high, "psnr:35"), (high, "psnr:40")} <= _attacked(spec)
    assert [s["kind"] for s in spec["study"]] == [s["kind"] for s in shipped["study"]]
    assert all("pretrained" in m or m.startswith(("jpeg", "webp")) for s in spec["study"] for m in s.get("models", []))
    assert any("CompressAI's pretrained" in n for n in notes)
