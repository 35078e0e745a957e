"""The benchmark grid: spec expansion, the SQLite store, sharding + merge, and resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robustnic.cli.main import main
from robustnic.studies.grid import (
    CODE_VERSION_ENV,
    SpecError,
    code_version,
    expand_spec,
    load_spec,
    parse_shard,
    run_grid,
    select_shard,
    source_hash,
)
from robustnic.studies.store import ResultStore, Row, StoreError, canonical_json, export_rows, merge_stores

TINY = "bmshj2018-hyperprior:N=8:M=16:random"

SPEC_TOML = f"""
seed = 0
crop = 64
images = ["bundled"]

[[study]]
kind = "recompression"
models = ["{TINY}", "bmshj2018-factorized:N=8:M=16:random", "jpeg:match"]
match = "{TINY}"
generations = 6
snapshots = [1, 6]

[[study]]
kind = "rd"
models = ["{TINY}", "webp:q60"]
"""
#: 6 bundled photos x (3 recompression models + 2 rd models)
N_JOBS = 30


@pytest.fixture(scope="module", autouse=True)
def pinned_code_version():
    """Pin the code version: other engineers may edit the hashed sources while these tests run."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CODE_VERSION_ENV, "test-pinned")
        yield


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.toml"
    path.write_text(SPEC_TOML)
    return path


@pytest.fixture(scope="module")
def reference_store(spec_file, tmp_path_factory) -> Path:
    """The grid run once, uninterrupted, in this process."""
    store = tmp_path_factory.mktemp("ref") / "ref.sqlite"
    summary = run_grid(expand_spec(load_spec(spec_file)), store, workers=1, progress=False)
    assert summary.done == N_JOBS and not summary.failed
    return store


def _contents(path: Path) -> dict[str, tuple[str, str, dict]]:
    """key -> (config, result, artifacts) of every row, canonical."""
    with ResultStore(path, readonly=True) as store:
        return {
            r.key: (canonical_json(r.config), canonical_json(r.result),
                    {n: a.data for n, a in store.artifacts(r.key).items()})
            for r in store.rows()
        }


# ----- specs ---------------------------------------------------------------------------------------
def test_spec_expands_axes_into_a_product(spec_file):
    jobs = expand_spec(load_spec(spec_file))
    assert len(jobs) == N_JOBS == len({j.key for j in jobs})
    kinds = [j.kind for j in jobs]
    assert kinds.count("recompression") == 18 and kinds.count("rd") == 12
    matched = [j for j in jobs if j.config["model"] == "jpeg:match"]
    assert all(j.config["match"] == TINY for j in matched)
    # 'match' only enters the key of the jobs it applies to
    assert all("match" not in j.config for j in jobs if j.config["model"] != "jpeg:match")
    assert all(len(j.config["image"]["sha256"]) == 64 for j in jobs)


def test_spec_yaml_equals_toml(spec_file, tmp_path):
    import tomllib

    import yaml

    data = tomllib.loads(spec_file.read_text())
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    assert [j.key for j in expand_spec(load_spec(tmp_path / "s.yaml"))] == [j.key for j in expand_spec(data)]


def test_keys_depend_on_every_config_value(spec_file):
    data = load_spec(spec_file)
    base = {j.key for j in expand_spec(data)}
    changed = dict(data, seed=1)
    assert base.isdisjoint(j.key for j in expand_spec(changed))
    one = dict(data, study=[dict(data["study"][1], models=["webp:q61"])])
    assert {j.key for j in expand_spec(one)}.isdisjoint(base)


@pytest.mark.parametrize("bad, message", [
    ({"study": [{"kind": "nope", "models": ["jpeg:q5"]}]}, "unknown kind"),
    ({"study": [{"kind": "rd", "models": ["jpeg:q5"], "images": "bundled:astronaut", "stepz": 3}]}, "stepz"),
    ({"study": [{"kind": "rd", "images": "bundled:astronaut"}]}, "missing 'models'"),
    ({"study": [{"kind": "rd", "models": [], "images": "bundled:astronaut"}]}, "empty"),
    ({"study": [{"kind": "rd", "models": ["jpeg:q5"], "images": "bundled:nothere"}]}, "nothere"),
    ({"colour": 1, "study": [{"kind": "rd", "models": ["jpeg:q5"]}]}, "colour"),
    ({}, "at least one"),
])
def test_bad_specs_raise_spec_errors(bad, message):
    with pytest.raises(SpecError, match=message):
        expand_spec(bad)


def test_images_are_checked_before_anything_runs(tmp_path, photo):
    from robustnic.data.images import save_image
    from robustnic.errors import ImageError

    save_image(photo, tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    spec = {"study": [{"kind": "rd", "models": ["jpeg:q50"], "images": [str(tmp_path / "good.png")]}]}
    assert len(expand_spec(spec)) == 1
    with pytest.raises(ImageError, match="good.png.*over the limit"):
        expand_spec(spec, max_pixels=100)
    with pytest.raises(ImageError, match="broken.png"):
        expand_spec({"study": [{"kind": "rd", "models": ["jpeg:q50"], "images": [str(tmp_path)]}]})
    store = tmp_path / "s.sqlite"
    assert main(["bench", str(_write(tmp_path, spec | {"max_pixels": 100})), "--store", str(store)]) == 2
    assert not store.exists()


def _write(folder: Path, spec: dict) -> Path:
    path = folder / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def test_shards_partition_the_grid(spec_file):
    jobs = expand_spec(load_spec(spec_file))
    parts = [select_shard(jobs, (i, 3)) for i in (1, 2, 3)]
    keys = [{j.key for j in p} for p in parts]
    assert sum(len(k) for k in keys) == len(jobs) and set().union(*keys) == {j.key for j in jobs}
    assert all(p for p in parts)
    for text in ("0/2", "3/2", "x"):
        with pytest.raises(SpecError):
            parse_shard(text)


def test_code_version_hashes_the_source(tmp_path, monkeypatch):
    (tmp_path / "codecs").mkdir()
    (tmp_path / "codecs" / "a.py").write_text("x = 1\n")
    before = source_hash(tmp_path)
    assert source_hash(tmp_path) == before
    (tmp_path / "codecs" / "a.py").write_text("x = 2\n")
    assert source_hash(tmp_path) != before
    assert code_version() == "test-pinned"
    monkeypatch.delenv(CODE_VERSION_ENV)
    assert code_version().startswith("0.") and "+" in code_version()


# ----- the store -----------------------------------------------------------------------------------
def test_store_rows_are_written_once(tmp_path):
    with ResultStore(tmp_path / "s.sqlite") as store:
        row = Row("k1", "rd", {"a": 1}, "v", {"psnr": 30.5, "x": float("inf")})
        assert store.put(row) is True
        assert store.put(Row("k1", "rd", {"a": 1}, "v", {"psnr": 0.0})) is False
        assert len(store) == 1 and store.row("k1").result["psnr"] == 30.5
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    export_rows(ResultStore(tmp_path / "s.sqlite").rows(), tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text())[0]["result"]["x"] == "inf"


def test_store_rejects_other_files(tmp_path):
    (tmp_path / "x.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError):
        ResultStore(tmp_path / "x.sqlite")
    with pytest.raises(StoreError):
        ResultStore(tmp_path / "missing.sqlite", readonly=True)


def test_rerun_skips_finished_rows(spec_file, reference_store, tmp_path):
    copy = tmp_path / "copy.sqlite"
    assert merge_stores([reference_store], copy)["rows"] == N_JOBS
    summary = run_grid(expand_spec(load_spec(spec_file)), copy, progress=False)
    assert (summary.skipped, summary.done) == (N_JOBS, 0)


def test_recompression_rows_hold_every_generation(reference_store):
    with ResultStore(reference_store, readonly=True) as store:
        rows = store.rows("recompression")
        for r in rows:
            assert len(r.result["psnr"]) == len(r.result["bpp"]) == 6
            assert store.artifact_names(r.key) == ["generation-000.png", "generation-001.png", "generation-006.png"]
        jpeg = [r for r in rows if r.config["model"] == "jpeg:match"]
        assert all(r.result["codec"].startswith("jpeg:q") for r in jpeg)
        assert all(r.result["matched-bpp"] == r.result["bpp"][0] for r in jpeg)


# ----- shards, merge and export through the CLI ------------------------------------------------------
def test_sharded_runs_merge_into_the_full_grid(spec_file, reference_store, tmp_path, capsys):
    for i in (1, 2):
        assert main(["bench", str(spec_file), "--store", str(tmp_path / f"s{i}.sqlite"), "--shard", f"{i}/2",
                     "--no-progress"]) == 0
    merged = tmp_path / "merged.sqlite"
    assert main(["merge", str(tmp_path / "s1.sqlite"), str(tmp_path / "s2.sqlite"), "-o", str(merged)]) == 0
    assert _contents(merged) == _contents(reference_store)
    assert main(["merge", str(tmp_path / "s1.sqlite"), "-o", str(merged)]) == 2  # never overwrites
    assert main(["merge", str(merged), "-o", str(tmp_path / "all.csv")]) == 0
    lines = (tmp_path / "all.csv").read_text().splitlines()
    assert len(lines) == N_JOBS + 1 and "result.psnr-rgb" in lines[0] and "config.image.name" in lines[0]
    capsys.readouterr()


def test_print_sbatch_array_run_locally_merges_into_one_run(spec_file, reference_store, tmp_path, capsys):
    """The script ``--print-sbatch 3`` prints, run as Slurm would (each array task, then the merge job
    task 0 submitted), with a stand-in ``sbatch``: the merged store holds the rows of one plain run."""
    store = tmp_path / "out" / "grid.sqlite"
    assert main(["bench", str(spec_file), "--print-sbatch", "3", "--store", str(store)]) == 0
    script = capsys.readouterr().out
    assert script.startswith("#!/bin/bash\n") and "#SBATCH --array=0-2\n" in script
    assert "--shard $((SLURM_ARRAY_TASK_ID + 1))/3" in script and "--gres" not in script
    path = tmp_path / "grid.sbatch"
    path.write_text(script)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text('#!/bin/sh\nprintf \'%s\\0\' "$@" >> "$SBATCH_LOG"\n')
    (bin_dir / "sbatch").chmod(0o755)
    env = os.environ | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_ARRAY_JOB_ID": "4242",
                        "ROBUSTNIC": f"{sys.executable} -m robustnic.cli.main", "SBATCH_LOG": str(tmp_path / "sbatch.log")}
    for task in range(3):
        subprocess.run(["bash", str(path)], env=env | {"SLURM_ARRAY_TASK_ID": str(task)}, cwd=tmp_path, check=True,
                       stdout=subprocess.DEVNULL, timeout=300)
    submitted = (tmp_path / "sbatch.log").read_text().split("\0")[:-1]  # task 0 alone submits, once
    assert "--dependency=afterok:4242" in submitted
    wrap = next(a for a in submitted if a.startswith("--wrap="))[len("--wrap="):]
    assert not store.exists()
    subprocess.run(["bash", "-c", wrap], env=env, cwd=tmp_path, check=True, stdout=subprocess.DEVNULL, timeout=120)
    shards = sorted((tmp_path / "out" / "grid-shards").glob("shard-*.sqlite"))
    assert [p.name for p in shards] == ["shard-0.sqlite", "shard-1.sqlite", "shard-2.sqlite"]
    assert all(_rows(p) > 0 for p in shards)
    assert _contents(store) == _contents(reference_store)


def test_print_sbatch_options(spec_file, tmp_path, capsys):
    assert main(["bench", str(spec_file), "--print-sbatch", "2", "--threads", "4", "--max-pixels", "1000000"]) == 0
    script = capsys.readouterr().out
    assert "#SBATCH --cpus-per-task=4" in script and "--threads 4 --max-pixels 1000000" in script
    assert "results-shards/shard-${SLURM_ARRAY_TASK_ID}.sqlite" in script and "--out results.sqlite" in script
    assert main(["bench", str(spec_file), "--print-sbatch", "0"]) == 2
    assert main(["bench", str(spec_file)]) == 2  # a run needs --store
    assert "--store is required" in capsys.readouterr().err


# ----- SIGKILL halfway, then resume ---------------------------------------------------------------------
def _rows(path: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM results").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def _bench(spec: Path, store: Path, workers: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "robustnic.cli.main", "bench", str(spec), "--store", str(store),
           "--workers", str(workers), "--no-progress"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_sigkill_halfway_then_rerun_gives_the_uninterrupted_rows(spec_file, reference_store, tmp_path, capsys):
    store = tmp_path / "killed.sqlite"
    proc = _bench(spec_file, store, workers=2)
    try:
        deadline = time.monotonic() + 240
        while _rows(store) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        at_kill = _rows(store)
        assert 0 < at_kill < N_JOBS, f"kill came too late or too early ({at_kill} rows)"
        # the orphaned workers notice their runner is gone and exit
        deadline = time.monotonic() + 30
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _group_alive(proc.pid), "worker processes outlived the killed runner"
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    assert main(["bench", str(spec_file), "--store", str(store), "--no-progress"]) == 0
    got, want = _contents(store), _contents(reference_store)
    assert sorted(got) == sorted(want) and len(got) == N_JOBS
    assert got == want  # configs, results and images identical, nothing doubled or lost
