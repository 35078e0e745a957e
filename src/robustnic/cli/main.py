"""Entry point: ``robustnic COMMAND ...``. Errors robustnic raises on purpose become one line on
stderr and exit status 2; no traceback for bad input.

Start-up is kept light: ``robustnic --help``, ``--version`` and ``robustnic CMD --help`` import
neither torch nor compressai. The top-level listing comes from the table
:data:`robustnic.cli.commands.COMMANDS`; only the chosen command's module is imported, and command
modules import the heavy stack inside their run functions.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from typing import Iterable

from robustnic import __version__
from robustnic.cli.commands import COMMANDS
from robustnic.errors import LabelDeprecationWarning, RobustnicError

_show_warning = warnings.showwarning


def _show_warning_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    """Deprecations meant for users are one line on stderr; every other warning as Python shows it."""
    if issubclass(category, LabelDeprecationWarning):
        print(f"robustnic: warning: {message}", file=file or sys.stderr)
    else:
        _show_warning(message, category, filename, lineno, file, line)


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The ``robustnic`` parser with every command (default), or with only ``commands`` complete.

    Commands not in ``commands`` get a stand-in sub-parser that only carries their one-line help
    (enough for ``robustnic --help``), so their modules are not imported.
    """
    parser = argparse.ArgumentParser(
        prog="robustnic", description="Attack, defend and benchmark learned image codecs on real bitstreams."
    )
    parser.add_argument("--version", action="version", version=f"robustnic {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    names = COMMANDS if commands is None else [c for c in commands if c in COMMANDS]
    modules = {COMMANDS[name].module for name in names}
    registered: set[str] = set()
    for name, command in COMMANDS.items():
        if command.module in modules:
            if command.module not in registered:  # registers every command of that module
                importlib.import_module(f"robustnic.cli.commands.{command.module}").register(sub)
                registered.add(command.module)
        else:
            sub.add_parser(name, help=command.help, add_help=False)
    return parser


def _command_in(argv: list[str]) -> str | None:
    """The command named in ``argv`` (top-level options take no values: the first non-option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*Inference on GPU is not recommended.*")
    warnings.filterwarnings("default", category=LabelDeprecationWarning)
    warnings.showwarning = _show_warning_one_line
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_in(argv)
    parser = build_parser([command] if command in COMMANDS else [])
    args = parser.parse_args(argv)
    try:
        if getattr(args, "device", None) is not None:  # one device resolution for every command
            from robustnic.utils.runtime import resolve_device

            args.device = str(resolve_device(args.device))
        return int(args.func(args) or 0)
    except RobustnicError as exc:
        print(f"robustnic {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"robustnic {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
