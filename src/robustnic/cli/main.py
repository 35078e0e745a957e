"""Entry point: ``robustnic COMMAND ...``. Errors robustnic raises on purpose become one line on
stderr and exit status 2; no traceback for bad input."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings

from robustnic import __version__
from robustnic.errors import RobustnicError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robustnic", description="Attack, defend and benchmark learned image codecs on real bitstreams."
    )
    parser.add_argument("--version", action="version", version=f"robustnic {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    import robustnic.cli.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"robustnic.cli.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*Inference on GPU is not recommended.*")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RobustnicError as exc:
        print(f"robustnic {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"robustnic {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
