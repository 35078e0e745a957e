"""Report sections, registered per job kind, and the generic table for kinds that have none.

A section is a function ``(ReportContext) -> str`` (an HTML ``<section>``, or ``""`` when it has
nothing to show) registered for the job kinds it reads::

    @register_section("my-kind")
    def my_section(ctx: ReportContext) -> str:
        rows = ctx.rows("my-kind")
        return f'<section id="mine"><h2>Mine</h2>{html_table(...)}</section>'

The page shows the registered sections of the kinds the store holds, in registration order; every
other kind gets :func:`generic_section`, a table of its rows, so no row is left out of the page.
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from robustnic.studies.store import ResultStore, Row, flat_row

#: Most rows the generic table shows (all of them are in ``results.csv``).
GENERIC_MAX_ROWS = 500


@dataclass
class ReportContext:
    """What a section renders from: the store (for artifacts), its newest rows by kind, and the figures."""

    store: ResultStore
    by_kind: dict[str, list[Row]]
    #: PNGs embedded in the page (file name -> bytes), also written beside it.
    figures: dict[str, bytes] = field(default_factory=dict)
    max_panels: int = 8

    def rows(self, *kinds: str) -> list[Row]:
        """The rows of ``kinds``, kind by kind."""
        return [r for k in kinds for r in self.by_kind.get(k, [])]


SectionFn = Callable[[ReportContext], str]


@dataclass(frozen=True)
class Section:
    """A registered section: its name, the job kinds it renders and its function."""

    name: str
    kinds: tuple[str, ...]
    render: SectionFn


#: Every registered section, in page order.
SECTIONS: list[Section] = []


def register_section(*kinds: str, name: str | None = None) -> Callable[[SectionFn], SectionFn]:
    """Register the decorated function as a section for rows of ``kinds`` (one or more job kinds).

    ``name`` (default: the function's name) identifies it: registering the same name again replaces
    the earlier section in place.
    """
    if not kinds:
        raise ValueError("register_section needs at least one job kind")

    def decorate(fn: SectionFn) -> SectionFn:
        section = Section(name or fn.__name__, tuple(kinds), fn)
        for i, s in enumerate(SECTIONS):
            if s.name == section.name:
                SECTIONS[i] = section
                break
        else:
            SECTIONS.append(section)
        return fn

    return decorate


def covered_kinds() -> set[str]:
    """The job kinds some registered section renders."""
    return {k for s in SECTIONS for k in s.kinds}


def render_sections(ctx: ReportContext) -> list[str]:
    """The registered sections of the kinds ``ctx`` holds, then a generic table per kind without one."""
    present = set(ctx.by_kind)
    out = [s.render(ctx) for s in SECTIONS if present & set(s.kinds)]
    out += [generic_section(kind, ctx.by_kind[kind]) for kind in sorted(present - covered_kinds())]
    return [s for s in out if s]


# ----- HTML helpers ----------------------------------------------------------------------------------
def img_tag(png: bytes, alt: str) -> str:
    """An ``<img>`` with the PNG inlined as a data URI."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def fmt(v: Any) -> str:
    """A table cell's text: 4 decimals below 1, 2 below 1000, none above; NaN/None as –, inf as ∞."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        a = abs(v)
        return f"{v:.4f}" if a < 1 else f"{v:.2f}" if a < 1000 else f"{v:.0f}"
    return html.escape(str(v))


#: Decimals of a table's dB values (PSNR, drops, ΔPSNR) and of its bpp values (rates and rate changes).
DB, BPP, SSIM = 2, 3, 4
#: A column's format: decimals (a fixed-point number), ``"%"`` (a share as a percentage) or a function.
CellFormat = int | str | Callable[[Any], str] | None


def fmt_as(v: Any, spec: CellFormat = None) -> str:
    """A table cell's text in the format ``spec`` (see :data:`CellFormat`; None: :func:`fmt`).

    None, NaN and ±inf read as in :func:`fmt` whatever the format; non-numbers are escaped as they are.
    """
    if callable(spec):
        return spec(v)
    if spec is None or not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        return fmt(v)
    if spec == "%":
        return f"{100 * v:.0f}%"
    text = f"{v:.{int(spec)}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text  # no "-0.000"


Column = tuple[str, str] | tuple[str, str, CellFormat]


def html_table(rows: list[dict[str, Any]], columns: list[Column], left: int = 1,
               group: Callable[[dict[str, Any]], str] | None = None) -> str:
    """An HTML table; ``columns`` are (key, header) or (key, header, format) (:func:`fmt_as`); the first
    ``left`` columns are left-aligned.

    With ``group``, a header row spanning the table (its text: ``group(row)``, HTML) starts every run
    of consecutive rows with the same group text; sort ``rows`` by group first.

    A mean that some but not all of its group's rows entered (a row of
    :func:`robustnic.utils.tables.group_means` with ``n:KEY``) shows how many did, e.g. ``(2/3)``; a
    mean none entered shows as –.
    """
    def cls(i: int) -> str:
        return ' class="l"' if i < left else ""

    def cell(r: dict[str, Any], k: str, spec: CellFormat) -> str:
        text = fmt_as(r.get(k), spec)
        if r.get(f"n:{k}") and "n" in r:
            text += (f' <small title="mean of {r[f"n:{k}"]} of {r["n"]} values: None, NaN and inf are left out">'
                     f'({r[f"n:{k}"]}/{r["n"]})</small>')
        return text

    specs = [(c[0], c[1], c[2] if len(c) > 2 else None) for c in columns]
    head = "".join(f"<th{cls(i)}>{html.escape(h)}</th>" for i, (_, h, _) in enumerate(specs))
    body, current = [], None
    for r in rows:
        if group is not None and (label := group(r)) != current:
            current = label
            body.append(f'<tr class="group"><th class="l" colspan="{len(specs)}">{label}</th></tr>')
        body.append("<tr>" + "".join(f"<td{cls(i)}>{cell(r, k, spec)}</td>" for i, (k, _, spec) in enumerate(specs))
                    + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# ----- the generic section ---------------------------------------------------------------------------
def _short_headers(columns: list[str]) -> list[str]:
    """``config.x`` / ``result.x`` -> ``x`` where that is unambiguous."""
    short = [c.split(".", 1)[1] if c.startswith(("config.", "result.")) else c for c in columns]
    return [s if short.count(s) == 1 else c for s, c in zip(short, columns)]


def generic_section(kind: str, rows: Iterable[Row]) -> str:
    """A table of every row of a job kind that no section is registered for: its configuration and
    result values, one row each; values that every row shares are listed once above the table."""
    flats = [{k: v for k, v in flat_row(r).items() if k.startswith(("config.", "result.")) and k != "config.kind"}
             for r in rows]
    if not flats:
        return ""
    columns: list[str] = []
    for f in flats:
        columns.extend(k for k in f if k not in columns)
    values = {c: [repr(f.get(c)) for f in flats] for c in columns}
    shared = [c for c in columns if len(flats) > 1 and len(set(values[c])) == 1]
    varying = [c for c in columns if c not in shared]
    slug = re.sub(r"[^a-z0-9-]+", "-", kind.lower()).strip("-") or "rows"
    shown = flats[:GENERIC_MAX_ROWS]
    more = (f" The first {GENERIC_MAX_ROWS} of {len(flats)} rows are shown." if len(flats) > GENERIC_MAX_ROWS else "")
    common = "; ".join(f"{html.escape(h)} = {fmt(flats[0].get(c))}" for c, h in zip(shared, _short_headers(shared)))
    return (
        f'<section id="kind-{slug}"><h2>{html.escape(kind)}</h2>'
        f'<p class="note">Rows of job kind <code>{html.escape(kind)}</code>, which has no section of its own: '
        f"one row per job, as stored (also in results.csv).{more}</p>"
        + (f'<p class="note">Every row: {common}.</p>' if common else "")
        + html_table(shown, list(zip(varying, _short_headers(varying))))
        + "</section>"
    )


__all__ = ["BPP", "DB", "GENERIC_MAX_ROWS", "SECTIONS", "SSIM", "CellFormat", "ReportContext", "Section",
           "covered_kinds", "fmt", "fmt_as", "generic_section", "html_table", "img_tag", "register_section",
           "render_sections"]
