"""The one console script, ``radlens`` (docs/architecture.md, "Command line").

Each package owns its subcommands in its own light ``cli`` module (argparse only at import time;
the heavy imports happen inside the handlers), so ``radlens info`` never pays for Qt or torch.
This module only dispatches, and turns a RadlensError into one line and exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from radlens.imaging.errors import RadlensError

# Package → subcommands it registers. The viewer's "view" is the default subcommand.
_COMMAND_MODULES = (
    "radlens.viewer.cli",
    "radlens.imaging.cli",
    "radlens.inference.cli",
    "radlens.training.cli",
    "radlens.pacs.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radlens", description="RadLens: a radiology workstation with AI overlays.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _with_default_command(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """``radlens PATH`` and ``radlens --demo`` mean ``radlens view ...``."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    args = [a for a in argv if a != "--debug"]
    if args and (args[0] in sub.choices or args[0] in ("-h", "--help")):
        return argv
    debug = ["--debug"] if "--debug" in argv else []
    return [*debug, "view", *args]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(_with_default_command(argv, parser))
    try:
        return int(args.func(args) or 0)
    except RadlensError as err:
        if args.debug:
            raise
        print(f"radlens: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("radlens: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `radlens info ... | head`: the reader left; stop quietly like other Unix tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
