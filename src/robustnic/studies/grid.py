"""The benchmark grid: a spec file expands into jobs; a runner executes the missing ones into a store.

A spec (TOML, YAML or JSON) holds shared defaults and a list of studies; each study names a job kind
(see :data:`robustnic.studies.jobs.JOB_KINDS`) and its axes - list-valued keys such as ``models``,
``attacks``, ``budgets``, ``defenses`` and ``images`` - whose Cartesian product gives the jobs::

    seed = 0
    crop = 64
    images = ["bundled:astronaut", "bundled:coffee"]   # image sets: bundled[:name], a folder, a file

    [[study]]
    kind = "attack"
    models = ["hyperprior-small:q3"]
    attacks = ["paper"]
    budgets = ["psnr:40", "psnr:35"]
    defenses = ["none", "self-ensemble"]
    steps = 100

Every job's configuration is complete (model and image files are fingerprinted by sha256), so its
key (:func:`~robustnic.studies.store.job_key`, with :func:`code_version`) names exactly one result.
:func:`run_grid` skips the keys the store already has, runs the rest on an engine
(:mod:`robustnic.studies.engines`: here, in worker processes when ``workers > 1``, or as Ray tasks) and
commits each finished job as one row, in this process alone: a killed run resumes where it stopped.
``shard=(i, n)`` keeps the i-th of n disjoint parts (by key), for machines writing separate stores
that ``merge_stores`` joins later.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as a package
    import tomli as tomllib

from tqdm.auto import tqdm

from robustnic import __version__
from robustnic.data.images import DEFAULT_MAX_PIXELS
from robustnic.errors import ImageError, RobustnicError
from robustnic.studies.engines import Engine, Finished, LocalEngine, make_engine
from robustnic.studies.jobs import JOB_KINDS, JobOutput
from robustnic.studies.store import ResultStore, Row, job_key

#: Sub-packages whose source defines what a job computes (hashed into :func:`code_version`).
RESULT_PACKAGES = ("codecs", "attacks", "defenses", "studies", "data", "metrics", "utils")
#: Keys a spec may set at the top level, inherited by every study.
SHARED_KEYS = ("seed", "crop", "images")
#: Top-level keys that steer the expansion but are not part of any job's configuration.
RUN_KEYS = ("max_pixels",)


class SpecError(RobustnicError):
    """A benchmark spec is unreadable or names something unknown."""


@dataclass(frozen=True)
class Job:
    """One unit of work: a kind and a complete, JSON-safe configuration."""

    kind: str
    config: dict[str, Any]
    key: str
    code_version: str = ""

    def describe(self) -> str:
        """Short human label, e.g. ``attack hyperprior-small:q3 paper psnr:40 astronaut``."""
        parts = [self.kind]
        for name in ("model", "attack", "budget", "defense"):
            value = self.config.get(name)
            if value not in (None, "none"):
                parts.append(str(value))
        image = self.config.get("image")
        if isinstance(image, dict):
            parts.append(image["name"])
        return " ".join(parts)


#: Environment variable that pins :func:`code_version` (e.g. shards run from different checkouts).
CODE_VERSION_ENV = "ROBUSTNIC_CODE_VERSION"


def source_hash(root: Path, packages: tuple[str, ...] = RESULT_PACKAGES) -> str:
    """sha256 (12 hex digits) of every ``.py`` file under ``root/<package>``, paths included."""
    h = hashlib.sha256()
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def code_version() -> str:
    """``VERSION+HASH``: the package version and a hash of the source that computes results.

    Editing any module under :data:`RESULT_PACKAGES` changes it, so stale rows are never reused.
    The environment variable :data:`CODE_VERSION_ENV` overrides it, when set and not empty.
    """
    pinned = os.environ.get(CODE_VERSION_ENV, "").strip()
    if pinned:
        return pinned
    return f"{__version__}+{source_hash(Path(__file__).resolve().parent.parent)}"


# ----- specs -------------------------------------------------------------------------------------
def load_spec(path: str | os.PathLike) -> dict[str, Any]:
    """Read a spec file (``.toml``, ``.yaml``/``.yml`` or ``.json``) into a dict."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            spec = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            spec = yaml.safe_load(text)
        elif suffix == ".json":
            spec = json.loads(text)
        else:
            raise SpecError(f"{path}: spec must be .toml, .yaml, .yml or .json")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise SpecError(f"{path}: cannot parse ({exc})") from None
    except Exception as exc:  # yaml.YAMLError
        if type(exc).__module__.startswith("yaml"):
            raise SpecError(f"{path}: cannot parse ({exc})") from None
        raise
    if not isinstance(spec, dict):
        raise SpecError(f"{path}: a spec is a mapping with a 'study' list")
    return spec


def _studies(spec: dict[str, Any]) -> list[dict[str, Any]]:
    studies = spec.get("study", spec.get("studies"))
    if isinstance(studies, dict):
        studies = [studies]
    if not isinstance(studies, list) or not studies or not all(isinstance(s, dict) for s in studies):
        raise SpecError("a spec needs at least one [[study]] table (with a 'kind')")
    unknown = set(spec) - {"study", "studies", "name", *SHARED_KEYS, *RUN_KEYS}
    if unknown:
        raise SpecError(f"unknown top-level spec key(s) {sorted(unknown)}; allowed: study, name, "
                        f"{', '.join(SHARED_KEYS + RUN_KEYS)}")
    return studies


def expand_spec(spec: dict[str, Any], max_pixels: int | None = None) -> list[Job]:
    """All jobs of a spec, in spec order, without duplicates (same key once).

    Every image is checked readable first; images over ``max_pixels`` (default: the spec's
    ``max_pixels``, else :data:`~robustnic.data.images.DEFAULT_MAX_PIXELS`) are refused.
    """
    version = code_version()
    if max_pixels is None:
        max_pixels = int(spec.get("max_pixels", DEFAULT_MAX_PIXELS))
    jobs: dict[str, Job] = {}
    shared = {k: spec[k] for k in SHARED_KEYS if k in spec}
    for index, study in enumerate(_studies(spec)):
        kind_name = study.get("kind")
        if kind_name not in JOB_KINDS:
            raise SpecError(f"study {index + 1}: unknown kind {kind_name!r}; choose from {', '.join(JOB_KINDS)}")
        kind = JOB_KINDS[kind_name]
        params = {k: v for k, v in (shared | study).items() if k not in ("kind", "name")}
        try:
            for config in kind.expand(params, max_pixels):
                job = Job(kind_name, config, job_key(config, version), version)
                jobs.setdefault(job.key, job)
        except ImageError:
            raise  # names the file already
        except RobustnicError as exc:
            raise SpecError(f"study {index + 1} ({kind_name}): {exc}") from None
    return list(jobs.values())


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (1 <= I <= N) -> ``(I, N)``."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise SpecError(f"shard must look like I/N (e.g. 1/2), got {text!r}") from None
    if not 1 <= i <= n:
        raise SpecError(f"shard I/N needs 1 <= I <= N, got {text!r}")
    return i, n


def select_shard(jobs: list[Job], shard: tuple[int, int] | None) -> list[Job]:
    """Jobs of shard ``(i, n)``: those whose key, as a number, is ``i - 1`` modulo ``n``.

    Depends only on the keys, so every machine computes the same disjoint split.
    """
    if shard is None:
        return jobs
    i, n = shard
    return [j for j in jobs if int(j.key, 16) % n == i - 1]


# ----- running -----------------------------------------------------------------------------------
@dataclass
class GridSummary:
    """What a run did: ``done`` rows written now, ``skipped`` found finished, ``failed`` (key, error)."""

    total: int
    skipped: int = 0
    done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "skipped": self.skipped, "done": self.done,
                "failed": [{"key": k, "error": e} for k, e in self.failed]}


def run_grid(
    jobs: list[Job],
    store: str | os.PathLike,
    workers: int | None = None,
    threads: int = 1,
    device: str = "cpu",
    progress: bool = True,
    on_row: Callable[[Job, JobOutput], None] | None = None,
    engine: str | Engine = "local",
    address: str | None = None,
) -> GridSummary:
    """Run every job whose key ``store`` lacks; commit each result as its own row.

    ``engine`` says where jobs run (see :mod:`robustnic.studies.engines`): ``"local"`` runs them here
    (``workers`` 1, the default) or in that many spawned processes; ``"ray"`` runs each as a Ray task on a
    local Ray instance with ``workers`` CPUs (default: all) or on the cluster at ``address``; an
    :class:`~robustnic.studies.engines.Engine` instance is used as given. Every worker runs ``threads``
    torch threads (results do not depend on it). Whatever the engine, this process alone writes the
    store. A job that raises is reported in the summary (key and message) and leaves no row, so a rerun
    retries it; the other jobs go on.
    """
    runner = engine if isinstance(engine, Engine) else make_engine(engine, workers, threads, address)
    if isinstance(runner, LocalEngine):
        device = runner.resolve_device(device)  # a missing device fails before the store is touched
    with ResultStore(store) as results:
        finished = results.keys()
        pending = [j for j in jobs if j.key not in finished]
        summary = GridSummary(total=len(jobs), skipped=len(jobs) - len(pending))
        if not pending:
            return summary  # nothing to run: no engine to start
        with runner:
            # "auto" becomes the real device (on the engine's machines), in every worker and every row
            device = runner.resolve_device(device)
            bar = tqdm(total=len(pending), desc=f"bench ({runner.name})", unit="job", disable=not progress)

            def record(done: Finished) -> None:
                job, output = done.job, done.output
                if output is None:
                    summary.failed.append((job.key, done.error or "unknown error"))
                    tqdm.write(f"failed: {job.describe()}: {(done.error or '').splitlines()[0]}", file=sys.stderr)
                else:
                    timing = output.timing | {"elapsed": done.elapsed, "device": device}
                    row = Row(job.key, job.kind, job.config, job.code_version or code_version(), output.result,
                              timing)
                    results.put(row, output.artifacts)
                    summary.done += 1
                    if on_row is not None:
                        on_row(job, output)
                bar.set_postfix_str(job.describe()[:60])
                bar.update(1)

            try:
                with closing(runner.run(pending, device)) as stream:
                    for done in stream:
                        record(done)
            finally:
                bar.close()
    return summary


def run_spec(
    spec: dict[str, Any] | str | os.PathLike,
    store: str | os.PathLike,
    shard: tuple[int, int] | None = None,
    max_pixels: int | None = None,
    **kwargs: Any,
) -> GridSummary:
    """Expand a spec (dict or file), keep one shard, and :func:`run_grid` it into ``store``."""
    spec = spec if isinstance(spec, dict) else load_spec(spec)
    return run_grid(select_shard(expand_spec(spec, max_pixels), shard), store, **kwargs)
