"""Reports: a self-contained HTML page (plots, tables, image panels) from a results store.

>>> from robustnic.report import build_report
>>> build_report("results.sqlite", "report/")          # doctest: +SKIP
PosixPath('report/report.html')
"""

from robustnic.report.figures import heatmap_figure, rd_figure, recompression_figure, robustness_figure
from robustnic.report.html import REPORT_NAME, build_report, render_report
from robustnic.report.panels import amplified_perturbation, attack_panel, generation_strip, zoom_window
from robustnic.report.run import StudyRun, attack_headline, run_demo, run_study

__all__ = [
    "REPORT_NAME",
    "StudyRun",
    "attack_headline",
    "amplified_perturbation",
    "attack_panel",
    "build_report",
    "generation_strip",
    "heatmap_figure",
    "rd_figure",
    "recompression_figure",
    "render_report",
    "robustness_figure",
    "run_demo",
    "run_study",
    "zoom_window",
]
