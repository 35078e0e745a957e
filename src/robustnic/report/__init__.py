"""Reports: a self-contained HTML page (plots, tables, image panels) from a results store.

The report only reads stores; running studies into them is :mod:`robustnic.app`'s job. Sections
are registered per job kind (:func:`register_section`); a kind without one gets a generic table.

>>> from robustnic.report import build_report
>>> build_report("results.sqlite", "report/")          # doctest: +SKIP
PosixPath('report/report.html')
"""

from robustnic.report.figures import (bar_figure, heatmap_figure, metric_label, rd_figure, recompression_figure,
                                      robustness_figure)
from robustnic.report.html import REPORT_NAME, build_report, render_report
from robustnic.report import robust_rd as _robust_rd  # noqa: F401  (registers the robust-RD section)
from robustnic.report.panels import amplified_perturbation, attack_panel, generation_strip, uniform_offset, zoom_window
from robustnic.report.sections import ReportContext, generic_section, register_section

__all__ = [
    "REPORT_NAME",
    "ReportContext",
    "amplified_perturbation",
    "attack_panel",
    "bar_figure",
    "build_report",
    "generation_strip",
    "generic_section",
    "heatmap_figure",
    "metric_label",
    "rd_figure",
    "recompression_figure",
    "register_section",
    "render_report",
    "robustness_figure",
    "uniform_offset",
    "zoom_window",
]
