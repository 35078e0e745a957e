"""Attack a set of images with several methods and budgets, verify on real bitstreams, save it all.

:func:`run_attacks` is what ``robustnic attack`` and ``benchmarks/attack_table.py`` call: images
of the same size are attacked together as a batch through the one attack path,
:func:`~robustnic.attacks.pipeline.attack_and_verify` (crafted, then verified on real bitstreams),
and :func:`write_results` (or, batch by batch,
:class:`AttackRunDir`) writes, every file atomically::

    OUT/adversarial/IMAGE--METHOD--BUDGET.png       the 8-bit adversarial images
    OUT/reconstructions/IMAGE--clean.png            decoded from the clean image's bytes
    OUT/reconstructions/IMAGE--METHOD--BUDGET.png   decoded from the adversarial image's bytes
    OUT/results.json                                config, settings, per-image rows and summary
    OUT/results.csv, OUT/summary.csv                the same rows and means, as CSV

Resuming (what ``robustnic attack`` does): :class:`AttackRunDir` rewrites the three result files
after every verified batch, so an interrupted run keeps every finished image; a rerun with the
same settings skips them (``run_attacks(..., skip=run.done, on_batch=run.add)``) and its files
cover every image. A folder that holds a run with other settings is refused, never mixed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Sequence

import torch
from tqdm.auto import tqdm

from robustnic.attacks.budget import Budget, parse_budget
from robustnic.attacks.pipeline import AttackSettings, attack_and_verify
from robustnic.attacks.verify import Verified
from robustnic.codecs.base import Codec
from robustnic.data.images import save_image
from robustnic.errors import ImageError, RobustnicError
from robustnic.utils.io import atomic_write_text
from robustnic.utils.tables import csv_text, finite_mean, from_json, group_means, json_safe


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
    skip: Collection[tuple[str, str, str]] = (),
    on_batch: Callable[[list[AttackResult]], None] | None = None,
    adaptive: bool = False,
    **settings: Any,
) -> list[AttackResult]:
    """Attack every image with every method at every budget; verify each result on real bytes.

    Each batch goes through :func:`~robustnic.attacks.pipeline.attack_and_verify` with an
    :class:`~robustnic.attacks.pipeline.AttackSettings` made of ``settings`` (``objective``,
    ``standin``, ``steps``, ``seed``, ``restarts``, ``reference``, ``metric``, ...) and the method and
    budget; ``adaptive`` as there (a defended ``codec``: worst over its attack modes). ``target`` is
    one image ``(1, 3, H, W)`` used for every image (targeted objective), ``mask`` its region. With
    ``progress`` an outer bar shows the mean real input and output PSNR of the last batch, and each
    attack shows its own bar; without it nothing is drawn.

    ``skip`` holds ``(image, method, str(budget))`` triples already done: they are neither attacked
    nor returned. ``on_batch`` receives each batch's results as soon as they are verified (e.g.
    :meth:`AttackRunDir.add`, so an interrupted run keeps them). Batches are formed from all images
    before skipping, so a resumed run attacks the same batches as an uninterrupted one.
    """
    if not images:
        raise ImageError("no images to attack")
    if target is not None:
        target = target.unsqueeze(0) if target.dim() == 3 else target
        if target.dim() != 4 or target.shape[0] != 1:
            raise ImageError(f"run_attacks takes one target image (1, 3, H, W) for all images, got {tuple(target.shape)}")
    budgets = [parse_budget(b) for b in budgets]
    base = AttackSettings(method=methods[0] if methods else "paper", budget=budgets[0], target=target, mask=mask,
                          progress=progress, **settings)
    groups = _groups(images, max(1, int(batch_size)))
    jobs = [(m, b, left) for m in methods for b in budgets for g in groups
            if (left := [n for n in g if (n, m, str(b)) not in skip])]
    for m in methods:  # fail fast on a bad method, option or budget, before any work
        base.replace(method=m).make(codec)
    for budget in budgets:
        for names in groups:
            budget.check_possible(images[names[0]])
    results: list[AttackResult] = []
    bar = tqdm(jobs, desc="attack", disable=not progress, dynamic_ncols=True)
    for method, budget, names in bar:
        bar.set_description(f"{method} {budget}")
        x = torch.cat([images[n] for n in names])
        out = attack_and_verify(codec, x, base.replace(method=method, budget=budget), adaptive=adaptive)
        batch = [AttackResult(name, method, str(budget), out.x[i : i + 1], out.x_adv[i : i + 1], v)
                 for i, (name, v) in enumerate(zip(names, out.verified))]
        results.extend(batch)
        if on_batch is not None:
            on_batch(batch)
        bar.set_postfix({"psnr-in": f"{_mean(v.row['psnr-in'] for v in out.verified):.2f}",
                         "psnr-out": f"{_mean(v.row['psnr-out'] for v in out.verified):.2f}"})
    return results


def _mean(values: Iterable[float]) -> float:
    return finite_mean(values)


def summarize(rows: Sequence[dict[str, Any]], by: Sequence[str] = ("method", "budget")) -> list[dict[str, Any]]:
    """Means of every numeric column per group, by :func:`robustnic.utils.tables.group_means`'s rule:
    ``n`` rows per group, None/NaN/inf left out of a mean (``n:COLUMN`` counts what entered when fewer
    did), booleans averaged to the share that holds."""
    return group_means(rows, by)


_json_safe = json_safe


def _csv_text(rows: Sequence[dict[str, Any]]) -> str:
    return csv_text(rows)


def _file_part(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in text)


def _from_json(value: Any) -> Any:
    """Undo :func:`_json_safe` for a row read back from ``results.json`` (also the older ``"nan"``)."""
    return from_json(value)


def _save_images(r: AttackResult, out: Path, clean: bool = True) -> dict[str, Any]:
    """Write one result's adversarial PNG and reconstructions (the clean one if ``clean``); return its row."""
    stem = f"{_file_part(r.image)}--{_file_part(r.method)}--{_file_part(r.budget)}"
    save_image(r.x_adv, out / "adversarial" / f"{stem}.png")
    save_image(r.verified.adv.x_hat, out / "reconstructions" / f"{stem}.png")
    if clean:
        save_image(r.verified.clean.x_hat, out / "reconstructions" / f"{_file_part(r.image)}--clean.png")
    return r.row | {"adversarial-png": f"adversarial/{stem}.png"}


def _write_tables(out: Path, rows: list[dict[str, Any]], head: dict[str, Any]) -> dict:
    """Write ``results.json`` (``head`` + summary + rows), ``results.csv`` and ``summary.csv``."""
    summary = summarize(rows)
    report = _json_safe(head | {"summary": summary, "rows": rows})
    atomic_write_text(out / "results.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "results.csv", _csv_text(rows))
    atomic_write_text(out / "summary.csv", _csv_text(summary))
    return report


def write_results(results: Sequence[AttackResult], out_dir: str | Path, config: dict[str, Any] | None = None) -> dict:
    """Write images, reconstructions, JSON and CSV (every file atomically); return the JSON object."""
    out = Path(out_dir)
    done_clean: set[str] = set()
    rows = []
    for r in results:
        rows.append(_save_images(r, out, clean=r.image not in done_clean))
        done_clean.add(r.image)
    return _write_tables(out, rows, {"config": config or {}})


class AttackRunDir:
    """An attack output folder filled batch by batch, that a rerun with the same settings resumes.

    ``settings`` is what defines the results (model and its weights' fingerprint, images, methods,
    budgets, steps, objective, seed, ...; not the device or batch size): a folder whose
    ``results.json`` holds other settings, or none (written by something else), raises
    :class:`~robustnic.errors.RobustnicError` instead of mixing runs. ``images`` lists this run's
    image names in order: rows are kept and written for these images only, in the order
    method, budget, image. ``config`` (e.g. the command line) is written as is.

    >>> run = AttackRunDir("runs/attack", settings, config, images=list(images))   # doctest: +SKIP
    >>> run_attacks(codec, images, skip=run.done, on_batch=run.add, ...)          # doctest: +SKIP
    >>> run.finish()["summary"]                                                    # doctest: +SKIP
    """

    RESULTS = "results.json"

    def __init__(self, out_dir: str | Path, settings: dict[str, Any], config: dict[str, Any] | None = None,
                 images: Sequence[str] = ()):
        self.out = Path(out_dir)
        self.settings = json.loads(json.dumps(_json_safe(settings)))  # as it reads back from the file
        self.config = config or {}
        self.images = list(images)
        self.rows: dict[tuple[str, str, str], dict[str, Any]] = {}
        path = self.out / self.RESULTS
        if path.is_file():
            try:
                saved = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise RobustnicError(f"{path} is unreadable ({exc}): use another --out") from None
            if "settings" not in saved:
                raise RobustnicError(f"{self.out} holds results that were not written by a resumable attack run: "
                                     "use another --out")
            old = saved["settings"]
            diff = sorted(k for k in set(old) | set(self.settings) if old.get(k) != self.settings.get(k))
            if diff:
                raise RobustnicError(f"{self.out} holds an attack run with other settings ({', '.join(diff)}): "
                                     "use another --out, or rerun with the same arguments to resume it")
            for row in saved.get("rows", []):
                row = {k: _from_json(v) for k, v in row.items()}
                if row.get("image") in self.images:
                    self.rows[(row["image"], row["method"], row["budget"])] = row
        self.resumed = len(self.rows)  # nothing is written before the first batch: a refused run leaves no trace

    @property
    def done(self) -> set[tuple[str, str, str]]:
        """The ``(image, method, budget)`` triples finished (by this run or an earlier one)."""
        return set(self.rows)

    def add(self, results: Sequence[AttackResult]) -> None:
        """Write a batch's images, then the result files with its rows (each file atomically)."""
        clean_done = {image for image, _, _ in self.rows}
        for r in results:
            self.rows[(r.image, r.method, r.budget)] = _save_images(r, self.out, clean=r.image not in clean_done)
            clean_done.add(r.image)
        self.finish()

    def _ordered_rows(self) -> list[dict[str, Any]]:
        methods = {m: i for i, m in enumerate(self.settings.get("methods", []))}
        budgets = {b: i for i, b in enumerate(self.settings.get("budgets", []))}
        images = {name: i for i, name in enumerate(self.images)}
        order = sorted(self.rows, key=lambda k: (methods.get(k[1], len(methods)), budgets.get(k[2], len(budgets)),
                                                 images.get(k[0], len(images))))
        return [self.rows[k] for k in order]

    def finish(self) -> dict:
        """(Re)write the result files with every finished row; return the ``results.json`` object."""
        return _write_tables(self.out, self._ordered_rows(), {"config": self.config, "settings": self.settings})


__all__ = ["AttackResult", "AttackRunDir", "run_attacks", "summarize", "write_results"]
