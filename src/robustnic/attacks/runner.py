"""Attack a set of images with several methods and budgets, verify on real bitstreams, save it all.

:func:`run_attacks` is what ``robustnic attack`` and ``benchmarks/attack_table.py`` call: images
of the same size are attacked together as a batch through the one attack path,
:func:`~robustnic.attacks.pipeline.attack_and_verify` (crafted, then verified on real bitstreams),
and :func:`write_results` (or, batch by batch, :class:`AttackRunDir`) writes, every file
atomically (``IMAGE``, ``METHOD`` and ``BUDGET`` with characters other than letters, digits and
``._-`` replaced by ``-``; ``psnr:35,linf:16`` is ``psnr-35-linf-16``)::

    OUT/summary.json       config, settings, the perturbation gain k and the file layout, and per
                           method and budget the mean over its n images of every per-image number
    OUT/summary.csv        those means
    OUT/per_image.json     settings and one row per image x method x budget (what a rerun resumes)
    OUT/per_image.csv      those rows
    OUT/images/IMAGE/source.png                        the image as attacked (after --crop)
    OUT/images/IMAGE/clean-reconstruction.png          decoded from the source's bitstream
    OUT/images/IMAGE/triplets.png                      a ready figure, one row per method and budget:
                                                       source | adversarial | clean reconstruction |
                                                       attacked reconstruction | perturbation
    OUT/images/IMAGE/METHOD--BUDGET/adversarial.png    the 8-bit adversarial image (the budget and
                                                       every number are measured on this file)
    OUT/images/IMAGE/METHOD--BUDGET/reconstruction.png decoded from the adversarial image's bitstream
    OUT/images/IMAGE/METHOD--BUDGET/perturbation.png   0.5 + k * (adversarial - source), clipped to [0, 1]

Resuming (what ``robustnic attack`` does): :class:`AttackRunDir` rewrites the four tables and the
touched images' ``triplets.png`` after every verified batch, so an interrupted run keeps every
finished image; a rerun with the same settings skips them (``run_attacks(..., skip=run.done,
on_batch=run.add)``) and its files cover every image. A folder that holds a run with other
settings, or other results, is refused, never mixed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Sequence

import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from robustnic.attacks.budget import Budget, parse_budget
from robustnic.attacks.pipeline import AttackSettings, attack_and_verify
from robustnic.attacks.verify import Verified
from robustnic.codecs.base import Codec
from robustnic.data.images import save_image
from robustnic.errors import ImageError, RobustnicError
from robustnic.utils.io import atomic_path, atomic_write_text
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
                         "vif-in": f"{_mean(v.row['vif-in'] for v in out.verified):.3f}",
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


#: The perturbation image's gain k: ``0.5 + k * (adversarial - source)``, clipped to [0, 1].
PERTURBATION_GAIN = 5.0
SUMMARY_JSON, SUMMARY_CSV = "summary.json", "summary.csv"
PER_IMAGE_JSON, PER_IMAGE_CSV = "per_image.json", "per_image.csv"
#: Where each file lies, relative to the output folder (written into ``summary.json``).
LAYOUT = {
    "summary": f"{SUMMARY_JSON}, {SUMMARY_CSV}: per method and budget, the mean over its n images",
    "per-image": f"{PER_IMAGE_JSON}, {PER_IMAGE_CSV}: one row per image x method x budget",
    "source": "images/IMAGE/source.png",
    "clean-reconstruction": "images/IMAGE/clean-reconstruction.png",
    "triplets": "images/IMAGE/triplets.png",
    "adversarial": "images/IMAGE/METHOD--BUDGET/adversarial.png",
    "reconstruction": "images/IMAGE/METHOD--BUDGET/reconstruction.png",
    "perturbation": "images/IMAGE/METHOD--BUDGET/perturbation.png",
}
#: The triplet figure's columns: (title, row key of the image's path).
_COLUMNS = (("source", "source-png"), ("adversarial", "adversarial-png"),
            ("clean recon.", "clean-reconstruction-png"), ("attacked recon.", "reconstruction-png"),
            (f"perturbation x{PERTURBATION_GAIN:g}", "perturbation-png"))


def image_folder(image: str) -> str:
    """The folder (relative to the output folder) holding one image's files."""
    return f"images/{_file_part(image)}"


def perturbation_image(x: torch.Tensor, x_adv: torch.Tensor, gain: float = PERTURBATION_GAIN) -> torch.Tensor:
    """``0.5 + gain * (x_adv - x)`` clipped to [0, 1], both images rounded to 8 bits first (as saved)."""
    def q(t: torch.Tensor) -> torch.Tensor:
        return t.detach().float().cpu().clamp(0, 1).mul(255).round().div(255)

    return (0.5 + gain * (q(x_adv) - q(x))).clamp(0, 1)


def _from_json(value: Any) -> Any:
    """Undo :func:`_json_safe` for a row read back from ``per_image.json`` (also the older ``"nan"``)."""
    return from_json(value)


def _save_images(r: AttackResult, out: Path, first: bool = True) -> dict[str, Any]:
    """Write one result's images (the source and clean reconstruction too if ``first`` of its image); return its row."""
    folder = image_folder(r.image)
    sub = f"{folder}/{_file_part(r.method)}--{_file_part(r.budget)}"
    paths = {"source-png": f"{folder}/source.png", "clean-reconstruction-png": f"{folder}/clean-reconstruction.png",
             "adversarial-png": f"{sub}/adversarial.png", "reconstruction-png": f"{sub}/reconstruction.png",
             "perturbation-png": f"{sub}/perturbation.png"}
    if first:
        save_image(r.x, out / paths["source-png"])
        save_image(r.verified.clean.x_hat, out / paths["clean-reconstruction-png"])
    save_image(r.x_adv, out / paths["adversarial-png"])
    save_image(r.verified.adv.x_hat, out / paths["reconstruction-png"])
    save_image(perturbation_image(r.x, r.x_adv), out / paths["perturbation-png"])
    return r.row | paths


def _number(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _row_title(row: dict[str, Any]) -> str:
    return (f"{row['method']} {row['budget']}: input PSNR {_number(row.get('psnr-in'))} dB; reconstruction PSNR "
            f"{_number(row.get('psnr-clean'))} clean -> {_number(row.get('psnr-out'))} dB attacked")


def _tile(path: Path, width: int) -> Image.Image:
    """An image file scaled to ``width`` (pixel-exact enlargement of small images, smooth reduction of large)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
    if im.width == width:
        return im
    height = max(1, round(im.height * width / im.width))
    return im.resize((width, height), Image.Resampling.NEAREST if width > im.width else Image.Resampling.LANCZOS)


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def write_triplets(out: str | Path, rows: Sequence[dict[str, Any]], path: str | Path | None = None) -> Path:
    """Draw one image's ``triplets.png`` from its rows' saved PNGs; return its path.

    One row of tiles per result (source | adversarial | clean reconstruction | attacked
    reconstruction | perturbation), titled with method, budget and the real PSNRs, under one line
    of column titles. Tiles are at least 128 pixels (and as wide as their title) and at most 512
    pixels wide (small crops enlarged pixel by pixel). ``path`` defaults to
    ``images/IMAGE/triplets.png`` of the rows' image.
    """
    if not rows:
        raise ValueError("write_triplets needs at least one row")
    out = Path(out)
    font, pad = _font(), 4
    least = max(128, *(round(font.getlength(title)) + pad for title, _ in _COLUMNS))
    with Image.open(out / rows[0]["source-png"]) as im:
        w = im.width
    width = w * -(-least // w) if w < least else min(w, 512)  # an integer enlargement, or a reduction
    line = font.getbbox("Ag")[3] + 2 * pad
    tiles = [[_tile(out / row[key], width) for _, key in _COLUMNS] for row in rows]
    height = tiles[0][0].height
    fig = Image.new("RGB", (len(_COLUMNS) * (width + pad) + pad, line + len(rows) * (line + height + pad)), "white")
    draw = ImageDraw.Draw(fig)
    for j, (title, _) in enumerate(_COLUMNS):
        draw.text((pad + j * (width + pad), pad), title, fill="black", font=font)
    for i, (row, images) in enumerate(zip(rows, tiles)):
        top = line + i * (line + height + pad)
        draw.text((pad, top + pad), _row_title(row), fill="black", font=font)
        for j, tile in enumerate(images):
            fig.paste(tile, (pad + j * (width + pad), top + line))
    path = Path(path) if path is not None else out / image_folder(rows[0]["image"]) / "triplets.png"
    with atomic_path(path) as tmp:
        fig.save(tmp, format="PNG")
    return path


def _write_tables(out: Path, rows: list[dict[str, Any]], head: dict[str, Any]) -> dict:
    """Write ``per_image.json`` (``settings`` from ``head`` + rows), ``per_image.csv``, ``summary.json``
    (``head`` + perturbation gain, layout and means) and ``summary.csv``; return the summary object.

    ``per_image.json`` is written first: a run killed in between resumes from it and rewrites the rest.
    """
    summary = summarize(rows)
    per_image = {"settings": head["settings"]} if "settings" in head else {}
    atomic_write_text(out / PER_IMAGE_JSON, json.dumps(_json_safe(per_image | {"rows": rows}), indent=2) + "\n")
    atomic_write_text(out / PER_IMAGE_CSV, _csv_text(rows))
    report = _json_safe(head | {"n-images": len({r["image"] for r in rows}),
                                "perturbation": {"image": "0.5 + k * (adversarial - source), clipped to [0, 1]",
                                                 "k": PERTURBATION_GAIN},
                                "layout": LAYOUT, "summary": summary})
    atomic_write_text(out / SUMMARY_JSON, json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / SUMMARY_CSV, _csv_text(summary))
    return report


def _write_all_triplets(out: Path, rows: Sequence[dict[str, Any]], images: Collection[str] | None = None) -> None:
    """Rewrite ``triplets.png`` of each image in ``images`` (default: all) from ``rows`` (in their order)."""
    by_image: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if images is None or row["image"] in images:
            by_image.setdefault(row["image"], []).append(row)
    for image_rows in by_image.values():
        write_triplets(out, image_rows)


def write_results(results: Sequence[AttackResult], out_dir: str | Path, config: dict[str, Any] | None = None) -> dict:
    """Write images, triplets, JSON and CSV (every file atomically; layout in the module docstring);
    return the ``summary.json`` object."""
    out = Path(out_dir)
    seen: set[str] = set()
    rows = []
    for r in results:
        rows.append(_save_images(r, out, first=r.image not in seen))
        seen.add(r.image)
    _write_all_triplets(out, rows)
    return _write_tables(out, rows, {"config": config or {}})


class AttackRunDir:
    """An attack output folder filled batch by batch, that a rerun with the same settings resumes.

    ``settings`` is what defines the results (model and its weights' fingerprint, images, methods,
    budgets, steps, objective, seed, ...; not the device or batch size): a folder whose
    ``per_image.json`` holds other settings, or that holds results without it (written by something
    else, or by an older ``robustnic attack`` with its ``results.json``), raises
    :class:`~robustnic.errors.RobustnicError` instead of mixing runs. ``images`` lists this run's
    image names in order: rows are kept and written for these images only, in the order
    method, budget, image. ``config`` (e.g. the command line) is written as is.

    >>> run = AttackRunDir("runs/attack", settings, config, images=list(images))   # doctest: +SKIP
    >>> run_attacks(codec, images, skip=run.done, on_batch=run.add, ...)          # doctest: +SKIP
    >>> run.finish()["summary"]                                                    # doctest: +SKIP
    """

    RESULTS = PER_IMAGE_JSON

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
        elif any((self.out / name).is_file() for name in (SUMMARY_JSON, "results.json")):
            saved = {}
        else:
            saved = None
        if saved is not None:
            if not isinstance(saved, dict) or "settings" not in saved:
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
        """Write a batch's images, its images' triplets, then the tables with its rows (each file atomically)."""
        seen = {image for image, _, _ in self.rows}
        for r in results:
            self.rows[(r.image, r.method, r.budget)] = _save_images(r, self.out, first=r.image not in seen)
            seen.add(r.image)
        _write_all_triplets(self.out, self._ordered_rows(), {r.image for r in results})
        self.finish()

    def _ordered_rows(self) -> list[dict[str, Any]]:
        methods = {m: i for i, m in enumerate(self.settings.get("methods", []))}
        budgets = {b: i for i, b in enumerate(self.settings.get("budgets", []))}
        images = {name: i for i, name in enumerate(self.images)}
        order = sorted(self.rows, key=lambda k: (methods.get(k[1], len(methods)), budgets.get(k[2], len(budgets)),
                                                 images.get(k[0], len(images))))
        return [self.rows[k] for k in order]

    def finish(self) -> dict:
        """(Re)write the four tables with every finished row; return the ``summary.json`` object."""
        return _write_tables(self.out, self._ordered_rows(), {"config": self.config, "settings": self.settings})


__all__ = ["PERTURBATION_GAIN", "AttackResult", "AttackRunDir", "image_folder", "perturbation_image", "run_attacks",
           "summarize", "write_results", "write_triplets"]
