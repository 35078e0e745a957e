"""The ``analyze`` tables of RESULTS-attacks.md: ``robustnic analyze`` with the arguments given here.

``robustnic analyze`` prints its tables as markdown (per image: the worst-case linear gain of the relaxed
codec's Jacobian beside the attack's VI from real bitstreams, the Spearman correlations over the images;
then the layer-wise magnify ratio), so the RESULTS block is its output as it is. The defaults are the
RESULTS setting: the six held-out photos, 256x256 centre crops, ``paper`` at ``psnr:35``, one CPU thread.

    .venv/bin/python benchmarks/analyze_table.py -m hyperprior-small:q3 --out runs/analyze-q3
    .venv/bin/python benchmarks/analyze_table.py -m hyperprior-small:q3 --steps 100 --out runs/analyze-q3-100
"""

from __future__ import annotations

import sys
import warnings

from robustnic.cli.main import main

#: The RESULTS setting; later arguments (from the command line) override these.
DEFAULTS = ["--images", "bundled", "--crop", "256", "--budget", "psnr:35", "--threads", "1", "--no-progress"]

if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    argv = ["analyze", *DEFAULTS, *sys.argv[1:]]
    sys.argv = ["robustnic", *argv]  # the command analyze.json records
    raise SystemExit(main(argv))
