"""Grid engines: the ray engine gives the local engine's rows, records failures, resumes without doubles;
without Ray, ``--engine ray`` is one line and exit 2."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from robustnic.cli.main import main
from robustnic.errors import RobustnicError
from robustnic.studies.engines import RAY_MISSING, LocalEngine, make_engine
from robustnic.studies.grid import CODE_VERSION_ENV, expand_spec, load_spec, run_grid
from robustnic.studies.store import ResultStore, canonical_json

TINY_SPEC = Path(__file__).resolve().parent.parent / "examples" / "tiny.yaml"
HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="ray not installed (pip install 'robustnic[ray]')")

#: Seven quick jobs (JPEG at seven qualities on one small crop) and one that fails when it runs.
SMALL = {"seed": 0, "crop": 32, "images": ["bundled:astronaut"],
         "study": [{"kind": "rd", "models": [f"jpeg:q{q}" for q in (10, 20, 30, 40, 50, 60, 70)]}]}
BROKEN = "/nonexistent/model.pt"


@pytest.fixture(scope="module", autouse=True)
def pinned_code_version():
    """Pin the code version: other engineers may edit the hashed sources while these tests run."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CODE_VERSION_ENV, "test-pinned")
        yield


def _contents(path: Path) -> dict[str, tuple[str, str, dict]]:
    """key -> (config, result, artifacts) of every row, canonical."""
    with ResultStore(path, readonly=True) as store:
        return {
            r.key: (canonical_json(r.config), canonical_json(r.result),
                    {n: a.data for n, a in store.artifacts(r.key).items()})
            for r in store.rows()
        }


@pytest.fixture(scope="module")
def small_reference(tmp_path_factory) -> Path:
    """The small grid on the local engine, in this process."""
    store = tmp_path_factory.mktemp("small") / "local.sqlite"
    summary = run_grid(expand_spec(SMALL), store, progress=False)
    assert summary.done == 7 and not summary.failed
    return store


# ----- without Ray, and the engine table ---------------------------------------------------------------
def test_without_ray_the_ray_engine_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # "import ray" raises ImportError
    spec = tmp_path / "small.json"
    spec.write_text(json.dumps(SMALL))
    store = tmp_path / "s.sqlite"
    assert main(["bench", str(spec), "--store", str(store), "--engine", "ray", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"robustnic bench: error: {RAY_MISSING}"]
    assert "pip install 'robustnic[ray]'" in err[0]
    assert not store.exists()
    with pytest.raises(RobustnicError, match="robustnic\\[ray\\]"):
        make_engine("ray")


def test_engine_names_and_options_are_checked():
    assert isinstance(make_engine("local", None), LocalEngine) and make_engine("local", None).workers == 1
    assert make_engine("local", 3).workers == 3
    with pytest.raises(RobustnicError, match="unknown engine 'dask'"):
        make_engine("dask")
    with pytest.raises(RobustnicError, match="--address belongs to the ray engine"):
        make_engine("local", address="auto")


def test_a_failing_job_is_reported_and_the_others_finish_locally(tmp_path):
    spec = dict(SMALL, study=[{"kind": "rd", "models": ["jpeg:q10", BROKEN, "jpeg:q20"]}])
    summary = run_grid(expand_spec(spec), tmp_path / "s.sqlite", progress=False)
    assert summary.done == 2 and len(summary.failed) == 1 and BROKEN in summary.failed[0][1]


# ----- on Ray ------------------------------------------------------------------------------------------
@needs_ray
def test_tiny_spec_on_ray_equals_the_local_engine(tmp_path, capsys):
    """``robustnic bench examples/tiny.yaml --engine ray`` (a local Ray with 2 CPUs): the same rows,
    values and images as the local engine; Ray is shut down afterwards."""
    import ray

    local, on_ray = tmp_path / "local.sqlite", tmp_path / "ray.sqlite"
    assert main(["bench", str(TINY_SPEC), "--store", str(local), "--no-progress"]) == 0
    assert main(["bench", str(TINY_SPEC), "--store", str(on_ray), "--engine", "ray", "--workers", "2",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert '"engine": "ray"' in out and '"failed": []' in out
    want, got = _contents(local), _contents(on_ray)
    assert len(want) == len(expand_spec(load_spec(TINY_SPEC))) and got == want
    with ResultStore(on_ray, readonly=True) as store:
        assert {r.timing["device"] for r in store.rows()} == {"cpu"}
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance (2 CPUs) shared by the tests below: engines use it and leave it running."""
    if not HAS_RAY:
        pytest.skip("ray not installed")
    import ray

    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@needs_ray
def test_on_ray_a_failing_job_is_recorded_failed_and_the_others_complete(local_ray, small_reference, tmp_path):
    spec = dict(SMALL, study=[{"kind": "rd", "models": ["jpeg:q10", BROKEN, "jpeg:q20", "jpeg:q30"]}])
    store = tmp_path / "s.sqlite"
    summary = run_grid(expand_spec(spec), store, engine="ray", progress=False)
    assert summary.done == 3 and len(summary.failed) == 1
    key, message = summary.failed[0]
    assert "CheckpointError" in message and BROKEN in message
    rows = _contents(store)
    assert key not in rows and len(rows) == 3
    reference = _contents(small_reference)
    assert all(reference[k] == v for k, v in rows.items())  # the same keys and values as locally
    assert local_ray.is_initialized()  # an instance the engine did not start is left running


@needs_ray
def test_on_ray_an_interrupted_run_resumes_without_doubles(local_ray, small_reference, tmp_path):
    jobs = expand_spec(SMALL)
    store = tmp_path / "s.sqlite"
    seen: list[str] = []

    def interrupt_after_three(job, output) -> None:
        seen.append(job.key)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_grid(jobs, store, engine="ray", progress=False, on_row=interrupt_after_three)
    assert len(_contents(store)) == 3
    summary = run_grid(jobs, store, engine="ray", progress=False)
    assert (summary.skipped, summary.done, summary.failed) == (3, 4, [])
    assert _contents(store) == _contents(small_reference)  # every row once, values as on the local engine
    with ResultStore(store, readonly=True) as s:
        assert s.conn.execute("SELECT count(*), count(DISTINCT key) FROM results").fetchone() == (7, 7)
    again = run_grid(jobs, store, engine="ray", progress=False)
    assert (again.skipped, again.done) == (7, 0)


@needs_ray
def test_ray_devices_follow_the_cluster(local_ray):
    from robustnic.studies.engines import RayEngine

    with RayEngine() as engine:
        assert engine.resolve_device("auto") == "cpu" and engine.resolve_device("cpu") == "cpu"
        with pytest.raises(RobustnicError, match="no GPUs"):
            engine.resolve_device("cuda")
        with pytest.raises(RobustnicError, match="use --device cuda"):
            engine.resolve_device("cuda:1")
    with pytest.raises(RobustnicError, match="leave --workers out"):
        make_engine("ray", workers=2, address="auto")
