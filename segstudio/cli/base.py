"""The command registry every `segstudio-cli` command module adds itself to."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

# name -> (add arguments, run). Run functions return the exit code.
Command = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
COMMANDS: dict[str, tuple[str, Command]] = {}


def command(name: str, help: str):
    def register(add: Callable[[argparse.ArgumentParser], None]):
        def with_run(run: Callable[[argparse.Namespace], int]):
            COMMANDS[name] = (help, (add, run))
            return run
        return with_run
    return register


def err(message: str) -> None:
    print(f"segstudio: error: {message}", file=sys.stderr)


