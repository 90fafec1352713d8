"""The ``serbench`` command line: wiring only.

Each sub-command lives in its own module under :mod:`serbench.commands` and exposes
``register(subparsers)``; that module sets ``func`` on its parser. Adding a command is adding a
module there, nothing here changes.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from serbench import __version__, commands, progress
from serbench.errors import SerbenchError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="serbench",
        description="Benchmark compressed speech-emotion-recognition models without speaker leakage.",
    )
    parser.add_argument("--version", action="version", version=f"serbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"serbench.commands.{info.name}").register(sub)
    return parser


INTERRUPTED = 130   # 128 + SIGINT, what a shell reports for a command ended by Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        quiet = getattr(args, "quiet", False) or getattr(args, "json", False)
        with progress.shown(not quiet):   # long silent steps say they are going, on stderr
            return int(args.func(args) or 0)
    except SerbenchError as exc:
        print(f"serbench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:   # Ctrl-C: one line, no traceback; a run's unfinished runs stay resumable
        again = ("; its unfinished runs stay in the store, not failed: resume with the same command and "
                 "--resume" if hasattr(args, "resume") else "")
        print(f"serbench {args.command}: interrupted (Ctrl-C){again}", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
