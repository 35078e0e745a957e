"""The application layer: what the CLI's study commands and the demo do, as Python functions.

Layering: ``cli`` -> ``app`` -> ``studies`` (run grids into stores) and ``report`` (render stores).

>>> from robustnic.app import run_study
>>> run = run_study(spec, "out/")      # doctest: +SKIP
>>> run.report                          # doctest: +SKIP
PosixPath('out/report.html')
"""

from robustnic.app.studies import StudyRun, attack_headline, pretrained_demo_cached, run_demo, run_study

__all__ = ["StudyRun", "attack_headline", "pretrained_demo_cached", "run_demo", "run_study"]
