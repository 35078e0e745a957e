"""CLI start-up time: wall seconds of fresh ``robustnic`` processes, best of ``--repeats`` (default 3).

Rows: ``robustnic --version``, ``robustnic --help``, ``robustnic attack --help`` (none of them imports
torch or compressai; ``tests/test_cli_start_and_devices.py`` checks that), a cold ``robustnic
compress`` of a 256x256 PNG with the default shipped model (a new process: Python, torch, compressai,
the model, one real encode), and, for reference, a bare ``python -c "import torch, compressai"``.
The header gives the machine's load average: other jobs slow every row.

    .venv/bin/python benchmarks/cli_startup.py [--repeats 3] [--src OTHER_CHECKOUT/src]

``--src`` times another checkout's ``src`` folder with the same interpreter (put first on PYTHONPATH),
e.g. the code before a change.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

def wall_times(argv: list[str], repeats: int, env: dict[str, str]) -> list[float]:
    """Wall seconds of ``repeats`` fresh runs of ``argv`` (each must exit 0)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="runs per row; the best is reported (default 3)")
    p.add_argument("--src", default=None, help="time this checkout's src folder instead (put first on PYTHONPATH)")
    args = p.parse_args()
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(args.src).resolve()), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    script = Path(sys.executable).parent / "robustnic"
    robustnic = [str(script)] if script.is_file() and not args.src else [sys.executable, "-m", "robustnic.cli.main"]
    with tempfile.TemporaryDirectory(prefix="cli-startup-") as tmp:
        image = Path(tmp) / "photo.png"
        subprocess.run([sys.executable, "-c", "import sys; from robustnic.data import bundled_photos, save_image; "
                        "save_image(bundled_photos(['coffee'], crop=256)['coffee'], sys.argv[1])", str(image)],
                       check=True, env=env, stderr=subprocess.DEVNULL)
        rows = [
            ("robustnic --version", [*robustnic, "--version"]),
            ("robustnic --help", [*robustnic, "--help"]),
            ("robustnic attack --help", [*robustnic, "attack", "--help"]),
            ("robustnic compress (256x256 PNG, cold)", [*robustnic, "compress", str(image), "-o", f"{tmp}/x.rnic"]),
            ('python -c "import torch, compressai" (reference)', [sys.executable, "-c", "import torch, compressai"]),
        ]
        load = os.getloadavg()
        print(f"# {platform.node()}: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
              f"python {platform.python_version()}; {'src ' + args.src if args.src else 'installed robustnic'}\n")
        print(f"| command | best of {args.repeats} (s) | all runs (s) |")
        print("|---|---|---|")
        for label, argv in rows:
            times = wall_times(argv, args.repeats, env)
            print(f"| `{label}` | {min(times):.2f} | {', '.join(f'{t:.2f}' for t in times)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
