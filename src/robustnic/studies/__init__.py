"""Studies: the benchmark grid and its results store, recompression, robustness curves, transfer.

>>> from robustnic.studies import run_spec, ResultStore
>>> summary = run_spec("examples/tiny.toml", "results.sqlite", workers=2)   # doctest: +SKIP
>>> with ResultStore("results.sqlite") as store:                           # doctest: +SKIP
...     rows = store.rows("attack")

Layering: studies use codecs, attacks and defenses; ``robustnic.report`` and the CLI use studies.
"""

from robustnic.studies.curves import RobustnessCurve, budget_axis, curve_auc, group_means, robustness_curves
from robustnic.studies.grid import (
    GridSummary,
    Job,
    SpecError,
    code_version,
    expand_spec,
    load_spec,
    parse_shard,
    run_grid,
    run_spec,
    select_shard,
)
from robustnic.studies.jobs import JOB_KINDS, JobKind, JobOutput, apply_defense, execute, resolve_images
from robustnic.studies.recompression import RecompressionResult, first_generation_bpp, match_quality, recompress
from robustnic.studies.store import (
    Artifact,
    ResultStore,
    Row,
    StoreError,
    export_rows,
    job_key,
    latest_rows,
    merge_stores,
)
from robustnic.studies.transfer import TransferMatrix, transfer_across_images, transfer_across_models

__all__ = [
    "JOB_KINDS",
    "Artifact",
    "GridSummary",
    "Job",
    "JobKind",
    "JobOutput",
    "RecompressionResult",
    "ResultStore",
    "RobustnessCurve",
    "Row",
    "SpecError",
    "StoreError",
    "TransferMatrix",
    "apply_defense",
    "budget_axis",
    "code_version",
    "curve_auc",
    "execute",
    "expand_spec",
    "export_rows",
    "first_generation_bpp",
    "group_means",
    "job_key",
    "latest_rows",
    "load_spec",
    "match_quality",
    "merge_stores",
    "parse_shard",
    "recompress",
    "resolve_images",
    "robustness_curves",
    "run_grid",
    "run_spec",
    "select_shard",
    "transfer_across_images",
    "transfer_across_models",
]
