"""Attack a set of images with several methods and budgets, verify on real bitstreams, save it all.

:func:`run_attacks` is what ``robustnic attack`` and ``benchmarks/attack_table.py`` call: images
of the same size are attacked together as a batch, every result is verified with
:func:`~robustnic.attacks.verify.verify_images`, and :func:`write_results` writes (atomically)::

    OUT/adversarial/IMAGE--METHOD--BUDGET.png       the 8-bit adversarial images
    OUT/reconstructions/IMAGE--clean.png            decoded from the clean image's bytes
    OUT/reconstructions/IMAGE--METHOD--BUDGET.png   decoded from the adversarial image's bytes
    OUT/results.json                                config, per-image rows and summary
    OUT/results.csv, OUT/summary.csv                the same rows and means, as CSV
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from tqdm.auto import tqdm

from robustnic.attacks.budget import Budget, parse_budget
from robustnic.attacks.verify import Verified, verify_images
from robustnic.codecs.base import Codec
from robustnic.data.images import save_image
from robustnic.errors import ImageError
from robustnic.utils.io import atomic_write_text


@dataclass
class AttackResult:
    """One image attacked by one method at one budget, verified on real bitstreams."""

    image: str
    method: str
    budget: str
    x: torch.Tensor
    x_adv: torch.Tensor
    verified: Verified

    @property
    def row(self) -> dict[str, Any]:
        return {"image": self.image, "method": self.method} | self.verified.row | {"budget": self.budget}


def _groups(images: dict[str, torch.Tensor], batch_size: int) -> list[list[str]]:
    """Names of images of equal size, in batches of at most ``batch_size``."""
    by_shape: dict[tuple, list[str]] = {}
    for name, x in images.items():
        by_shape.setdefault(tuple(x.shape[-2:]), []).append(name)
    return [names[i : i + batch_size] for names in by_shape.values() for i in range(0, len(names), batch_size)]


def run_attacks(
    codec: Codec,
    images: dict[str, torch.Tensor],
    methods: Sequence[str] = ("paper",),
    budgets: Sequence[Budget | str] = ("psnr:40",),
    target: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    batch_size: int = 8,
    progress: bool = False,
    **attack_kwargs: Any,
) -> list[AttackResult]:
    """Attack every image with every method at every budget; verify each result on real bytes.

    ``target`` is one image ``(1, 3, H, W)`` used for every image (targeted objective), ``mask``
    its region. ``attack_kwargs`` go to :func:`robustnic.attacks.make_attack` (``objective``, ``standin``,
    ``steps``, ``seed``, ...). With ``progress`` an outer bar shows the mean real input and output
    PSNR of the last batch, and each attack shows its own bar.
    """
    from robustnic.attacks import make_attack

    if not images:
        raise ImageError("no images to attack")
    if target is not None:
        target = target.unsqueeze(0) if target.dim() == 3 else target
        if target.dim() != 4 or target.shape[0] != 1:
            raise ImageError(f"run_attacks takes one target image (1, 3, H, W) for all images, got {tuple(target.shape)}")
    budgets = [parse_budget(b) for b in budgets]
    groups = _groups(images, max(1, int(batch_size)))
    jobs = [(m, b, g) for m in methods for b in budgets for g in groups]
    for m in methods:  # fail fast on a bad method, option or budget, before any work
        make_attack(m, codec, budget=budgets[0], **attack_kwargs)
    for budget in budgets:
        for names in groups:
            budget.check_possible(images[names[0]])
    results: list[AttackResult] = []
    bar = tqdm(jobs, desc="attack", disable=not progress, dynamic_ncols=True)
    for method, budget, names in bar:
        bar.set_description(f"{method} {budget}")
        atk = make_attack(method, codec, budget=budget, progress=progress, **attack_kwargs)
        x = torch.cat([images[n] for n in names])
        x_adv = atk(x, target=None if target is None else target.expand(len(names), -1, -1, -1), mask=mask)
        verified = verify_images(codec, x, x_adv, standin=atk.standin, budget=budget, attack_time=atk.elapsed)
        for i, (name, v) in enumerate(zip(names, verified)):
            results.append(AttackResult(name, method, str(budget), x[i : i + 1], x_adv[i : i + 1].cpu(), v))
        bar.set_postfix({"psnr-in": f"{_mean(v.row['psnr-in'] for v in verified):.2f}",
                         "psnr-out": f"{_mean(v.row['psnr-out'] for v in verified):.2f}"})
    return results


def _mean(values: Iterable[float]) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values) if values else math.nan


def summarize(rows: Sequence[dict[str, Any]], by: Sequence[str] = ("method", "budget")) -> list[dict[str, Any]]:
    """Means of every numeric column per group (``n`` images); booleans become the share that holds."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in by), []).append(row)
    summary = []
    for key, members in groups.items():
        out: dict[str, Any] = dict(zip(by, key)) | {"n": len(members)}
        for col in members[0]:
            if col in by:
                continue
            values = [r.get(col) for r in members]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                out[col] = _mean(values)
            elif all(isinstance(v, bool) for v in values):
                out[col] = sum(values) / len(values)
        summary.append(out)
    return summary


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf", "-inf", "nan": strict JSON has no such numbers
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _csv_text(rows: Sequence[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _file_part(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in text)


def write_results(results: Sequence[AttackResult], out_dir: str | Path, config: dict[str, Any] | None = None) -> dict:
    """Write images, reconstructions, JSON and CSV (every file atomically); return the JSON object."""
    out = Path(out_dir)
    done_clean: set[str] = set()
    rows = []
    for r in results:
        stem = f"{_file_part(r.image)}--{_file_part(r.method)}--{_file_part(r.budget)}"
        save_image(r.x_adv, out / "adversarial" / f"{stem}.png")
        save_image(r.verified.adv.x_hat, out / "reconstructions" / f"{stem}.png")
        if r.image not in done_clean:
            save_image(r.verified.clean.x_hat, out / "reconstructions" / f"{_file_part(r.image)}--clean.png")
            done_clean.add(r.image)
        rows.append(r.row | {"adversarial-png": f"adversarial/{stem}.png"})
    summary = summarize(rows)
    report = _json_safe({"config": config or {}, "summary": summary, "rows": rows})
    atomic_write_text(out / "results.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "results.csv", _csv_text(rows))
    atomic_write_text(out / "summary.csv", _csv_text(summary))
    return report


__all__ = ["AttackResult", "run_attacks", "summarize", "write_results"]
