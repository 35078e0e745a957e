"""The results store: one SQLite file, one row per finished job.

A row is keyed by :func:`job_key` - a hash of the job's full configuration and the code version -
so a rerun of the same grid finds its finished rows and skips them. Each row (and the images it
produced, in ``artifacts``) is written in its own transaction, in WAL mode: a run killed at any
moment leaves only whole rows behind, and resuming adds exactly the missing ones.

Tables::

    results(key PRIMARY KEY, kind, config JSON, code_version, result JSON, timing JSON, created)
    artifacts(key, name, mime, data BLOB)           -- PNGs a job produced (panels, snapshots)
    meta(name PRIMARY KEY, value)                   -- schema version

``result`` holds only what the job measured (deterministic under its seed); wall-clock times go to
``timing`` so that two runs of the same grid can be compared row by row.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from robustnic.errors import RobustnicError
from robustnic.utils.io import atomic_path, atomic_write_text
from robustnic.utils.tables import group_means, json_safe, write_csv

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    config TEXT NOT NULL,
    code_version TEXT NOT NULL,
    result TEXT NOT NULL,
    timing TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS results_kind ON results(kind);
CREATE TABLE IF NOT EXISTS artifacts (
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    mime TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (key, name)
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class StoreError(RobustnicError):
    """A results store cannot be opened, is not a robustnic store, or cannot be merged."""


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal configurations give equal strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


def job_key(config: dict[str, Any], code_version: str) -> str:
    """The row key: sha256 of the canonical configuration and the code version (24 hex digits)."""
    payload = canonical_json({"config": config, "code": code_version})
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


@dataclass
class Row:
    """One finished job."""

    key: str
    kind: str
    config: dict[str, Any]
    code_version: str
    result: dict[str, Any]
    timing: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0


@dataclass
class Artifact:
    """A file a job produced (a PNG image, usually), stored inside the results store."""

    name: str
    data: bytes
    mime: str = "image/png"


class ResultStore:
    """An SQLite results store (created if missing). Use as a context manager or call :meth:`close`.

    >>> with ResultStore("results.sqlite") as store:      # doctest: +SKIP
    ...     store.has(key), len(store)
    """

    def __init__(self, path: str | os.PathLike, readonly: bool = False):
        self.path = Path(path)
        if readonly and not self.path.is_file():
            raise StoreError(f"{self.path}: no such results store")
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            uri = f"file:{self.path}?mode=ro" if readonly else f"file:{self.path}"
            self.conn = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None)
            if not readonly:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=FULL")
                self.conn.executescript(_SCHEMA)
                self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            self.conn.execute("SELECT count(*) FROM results").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a robustnic results store ({exc})") from None

    # ----- context management ------------------------------------------------------------
    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- reading ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.conn.execute("SELECT count(*) FROM results").fetchone()[0]

    def keys(self) -> set[str]:
        """The keys of every finished row."""
        return {k for (k,) in self.conn.execute("SELECT key FROM results")}

    def has(self, key: str) -> bool:
        return self.conn.execute("SELECT 1 FROM results WHERE key = ?", (key,)).fetchone() is not None

    def rows(self, kind: str | None = None) -> list[Row]:
        """All rows (of one ``kind`` if given), oldest first."""
        sql = "SELECT key, kind, config, code_version, result, timing, created FROM results"
        args: tuple = ()
        if kind is not None:
            sql, args = sql + " WHERE kind = ?", (kind,)
        cur = self.conn.execute(sql + " ORDER BY created, key", args)
        return [
            Row(k, kd, json.loads(c), v, json.loads(r), json.loads(t), cr) for k, kd, c, v, r, t, cr in cur
        ]

    def row(self, key: str) -> Row | None:
        """The row with ``key``, or None."""
        cur = self.conn.execute(
            "SELECT key, kind, config, code_version, result, timing, created FROM results WHERE key = ?", (key,)
        ).fetchone()
        if cur is None:
            return None
        k, kd, c, v, r, t, cr = cur
        return Row(k, kd, json.loads(c), v, json.loads(r), json.loads(t), cr)

    def artifact_names(self, key: str) -> list[str]:
        return [n for (n,) in self.conn.execute("SELECT name FROM artifacts WHERE key = ? ORDER BY name", (key,))]

    def artifact(self, key: str, name: str) -> Artifact | None:
        """One stored artifact, or None."""
        got = self.conn.execute(
            "SELECT name, data, mime FROM artifacts WHERE key = ? AND name = ?", (key, name)
        ).fetchone()
        return Artifact(got[0], bytes(got[1]), got[2]) if got else None

    def artifacts(self, key: str) -> dict[str, Artifact]:
        """Every artifact of a row, by name."""
        cur = self.conn.execute("SELECT name, data, mime FROM artifacts WHERE key = ?", (key,))
        return {n: Artifact(n, bytes(d), m) for n, d, m in cur}

    # ----- writing ---------------------------------------------------------------------------
    def put(self, row: Row, artifacts: Iterable[Artifact] = ()) -> bool:
        """Insert a row and its artifacts in one transaction; False (nothing written) if the key exists."""
        created = row.created or time.time()
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute(
                "INSERT OR IGNORE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)",
                (row.key, row.kind, canonical_json(row.config), row.code_version,
                 canonical_json(row.result), canonical_json(row.timing), created),
            )
            inserted = cur.rowcount == 1
            if inserted:
                cur.executemany(
                    "INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?)",
                    [(row.key, a.name, a.mime, sqlite3.Binary(a.data)) for a in artifacts],
                )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return inserted

    def merge_from(self, other: "ResultStore") -> tuple[int, int, int]:
        """Copy every row of ``other`` that this store lacks.

        Returns ``(added, same, conflicting)``: rows already present with an equal result count as
        ``same``; present with a different result as ``conflicting`` (this store's row is kept).
        """
        added = same = conflicting = 0
        for row in other.rows():
            mine = self.row(row.key)
            if mine is None:
                self.put(row, other.artifacts(row.key).values())
                added += 1
            elif canonical_json(mine.result) == canonical_json(row.result):
                same += 1
            else:
                conflicting += 1
        return added, same, conflicting


def latest_rows(rows: Iterable[Row]) -> list[Row]:
    """One row per configuration: a row computed by newer code supersedes older ones (by ``created``).

    A store that outlived a code change holds both; summaries and reports use the newest.
    """
    latest: dict[str, Row] = {}
    for r in rows:
        c = canonical_json(r.config)
        if c not in latest or r.created >= latest[c].created:
            latest[c] = r
    return sorted(latest.values(), key=lambda r: (r.created, r.key))


# ----- merging and export -------------------------------------------------------------------------
def merge_stores(sources: list[str | os.PathLike], out: str | os.PathLike) -> dict[str, int]:
    """Join results stores into ``out`` (written atomically: the file appears whole or not at all).

    A key present in several sources is kept once (from the first source that has it).
    """
    if not sources:
        raise StoreError("merge needs at least one results store")
    if Path(out).exists():
        raise StoreError(f"{out} exists: merge writes a new store (remove it or choose another name)")
    opened = [ResultStore(s, readonly=True) for s in sources]
    counts = {"added": 0, "same": 0, "conflicting": 0}
    try:
        with atomic_path(out) as tmp:
            tmp.unlink()
            with ResultStore(tmp) as merged:
                for src in opened:
                    a, s, c = merged.merge_from(src)
                    counts["added"] += a
                    counts["same"] += s
                    counts["conflicting"] += c
                merged.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                merged.conn.execute("PRAGMA journal_mode=DELETE")
                counts["rows"] = len(merged)
    finally:
        for s in opened:
            s.close()
    return counts


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, (list, tuple)):
        out[prefix] = json.dumps(json_safe(value))
    else:
        out[prefix] = value


def flat_row(row: Row) -> dict[str, Any]:
    """A row as one flat dict: ``key``, ``kind``, ``code_version``, ``config.*``, ``result.*``."""
    out: dict[str, Any] = {"key": row.key, "kind": row.kind, "code_version": row.code_version}
    _flatten("config", row.config, out)
    _flatten("result", row.result, out)
    _flatten("timing", row.timing, out)
    return out


def export_rows(rows: list[Row], path: str | os.PathLike) -> Path:
    """Write rows as CSV (flat columns) or JSON (nested), by suffix; non-finite floats and empty cells follow
    :mod:`robustnic.utils.tables` (JSON: NaN -> null, ±inf -> "inf"/"-inf"; CSV: NaN and None empty)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        payload = [
            {"key": r.key, "kind": r.kind, "code_version": r.code_version, "config": r.config,
             "result": r.result, "timing": r.timing}
            for r in rows
        ]
        atomic_write_text(path, json.dumps(json_safe(payload), indent=1, allow_nan=False) + "\n")
    elif suffix == ".csv":
        write_csv(path, [flat_row(r) for r in rows])
    else:
        raise StoreError(f"{path}: export format must be .csv or .json")
    return path


def row_records(rows: Iterable[Row], by: Sequence[str], metrics: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Rows as flat records for a table: the configuration values ``by`` and the result values
    ``metrics`` (default: every result key not in ``by``)."""
    out = []
    for r in rows:
        values = {m: r.result.get(m) for m in metrics} if metrics is not None else dict(r.result)
        out.append({k: v for k, v in values.items() if k not in by} | {k: r.config.get(k) for k in by})
    return out


def row_means(rows: Iterable[Row], by: Sequence[str], metrics: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Means of result values over rows that share the configuration values ``by``, by the rule of
    :func:`robustnic.utils.tables.group_means` (``n`` rows per group; None/NaN/inf left out of a mean,
    ``n:METRIC`` counting what entered when fewer did; booleans average to a share)."""
    return group_means(row_records(rows, by, metrics), by, metrics)


def iter_rows(path: str | os.PathLike, kind: str | None = None) -> Iterator[Row]:
    """Rows of a store file, read-only."""
    with ResultStore(path, readonly=True) as store:
        yield from store.rows(kind)
