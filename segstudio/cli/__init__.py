"""Command line: `segstudio-cli <command>`; each command imports only what it needs.

`gui` loads Qt; the headless commands never do, so they run on machines without PySide6.
"""


from __future__ import annotations

import argparse
import logging
import sys

from segstudio.cli import (click_commands, dataset_commands, model_commands,  # noqa: F401
                           project_commands)  # (register)
from segstudio.cli.base import COMMANDS, command, err
from segstudio.cli.model_commands import train_config_from_args

__all__ = ["COMMANDS", "build_parser", "command", "err", "gui_main", "main",
           "train_config_from_args"]


def build_parser() -> argparse.ArgumentParser:
    from segstudio import __version__

    parser = argparse.ArgumentParser(prog="segstudio-cli", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--version", action="version", version=f"segstudio {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, (add, _run)) in COMMANDS.items():
        add(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)   # the app's log file takes INFO; the terminal only what was asked
    if not args.command:
        parser.print_help()
        return 2
    _help, (_add, run) = COMMANDS[args.command]
    try:
        return run(args)
    except KeyboardInterrupt:
        err("interrupted")
        return 130


def gui_main() -> int:
    """`segstudio [PROJECT] [--sample]`: the window."""
    return main(["gui", *sys.argv[1:]])
