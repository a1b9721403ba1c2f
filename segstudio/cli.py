"""Command line: `segstudio-cli <command>`; each command imports only what it needs.

`gui` loads Qt; the headless commands never do, so they run on machines without PySide6.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

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


# -- gui -----------------------------------------------------------------------------------------
def _add_gui(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", nargs="?", type=Path, help="project folder (default: the last one)")
    p.add_argument("--sample", action="store_true", help="open the bundled sample project")


@command("gui", "open the window")(_add_gui)
def _run_gui(args: argparse.Namespace) -> int:
    from segstudio.ui.app import run_app

    return run_app(project=args.project, sample=args.sample)


# -- new -----------------------------------------------------------------------------------------
def _add_new(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", type=Path, help="folder of images")
    p.add_argument("--out", type=Path, help="project folder (default: IMAGES/segstudio-project)")
    p.add_argument("--copy", action="store_true", help="copy images into the project")
    p.add_argument("--classes", default="background,foreground",
                   help="comma-separated class names, background first")


@command("new", "create a project from a folder of images")(_add_new)
def _run_new(args: argparse.Namespace) -> int:
    from segstudio.core.classes import LabelClass, default_color
    from segstudio.io.project import Project, ProjectError

    names = [n.strip() for n in args.classes.split(",") if n.strip()]
    classes = [LabelClass(i, n, default_color(i)) for i, n in enumerate(names)]
    try:
        project = Project.from_folder(args.images, args.out, copy=args.copy, classes=classes)
    except ProjectError as e:
        err(str(e))
        return 2
    for problem in project.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    print(f"created {project.root} with {len(project.images)} images")
    return 0 if project.images else 1


# -- info ----------------------------------------------------------------------------------------
def _add_info(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", type=Path)
    p.add_argument("--check", action="store_true",
                   help="also open every image and mask and report the ones that fail")


@command("info", "summarise a project and report files that cannot be read")(_add_info)
def _run_info(args: argparse.Namespace) -> int:
    from segstudio.io.images import ImageReadError
    from segstudio.io.masks import MaskError
    from segstudio.io.project import Project, ProjectError

    try:
        project = Project.open(args.project)
    except ProjectError as e:
        err(str(e))
        return 2
    print(f"project: {project.name} ({project.root})")
    print("classes: " + ", ".join(f"{c.id}={c.name}" for c in project.classes))
    counts: dict[str, int] = {}
    for e in project.images:
        counts[e.status] = counts.get(e.status, 0) + 1
    splits = {s: sum(e.split == s for e in project.images) for s in ("train", "val", "test")}
    print(f"images: {len(project.images)} ({', '.join(f'{k} {v}' for k, v in counts.items())}); "
          f"split: {splits}")
    problems = list(project.problems)
    if args.check:
        for e in project.images:
            try:
                info = project.probe(e)
                if project.masks.has_mask(e.id):
                    project.load_mask(e, (info.height, info.width))
            except (ImageReadError, MaskError, OSError) as x:
                problems.append(str(x))
    for p in dict.fromkeys(problems):
        print(f"problem: {p}", file=sys.stderr)
    return 1 if problems else 0


# -- check ---------------------------------------------------------------------------------------
def _add_check(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", type=Path, nargs="+", help="image files")
    p.add_argument("--max-pixels", type=int, default=None)


@command("check", "read image files and say what they hold or why they cannot be read")(_add_check)
def _run_check(args: argparse.Namespace) -> int:
    from segstudio.io.images import DEFAULT_MAX_PIXELS, ImageReadError, probe

    bad = 0
    for f in args.files:
        try:
            for info in probe(f, args.max_pixels or DEFAULT_MAX_PIXELS):
                frame = "" if info.frame is None else f" [{info.frame}]"
                print(f"{f}{frame}: {info.width} x {info.height}, {info.channels} channel(s), "
                      f"{info.dtype}, {info.kind}")
        except ImageReadError as e:
            err(str(e))
            bad += 1
    return 1 if bad else 0


# -- entry points --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from segstudio import __version__

    parser = argparse.ArgumentParser(prog="segstudio-cli", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"segstudio {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, (add, _run)) in COMMANDS.items():
        add(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
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
