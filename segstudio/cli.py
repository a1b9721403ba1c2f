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


# -- train ---------------------------------------------------------------------------------------
def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", type=Path, help="project folder")
    p.add_argument("--preset", default=None, help="model preset: fast (default), strong, tiny")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--minutes", type=float, default=None, help="time budget (stops at whichever "
                   "of --epochs and --minutes comes first)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--resume", metavar="RUN", help="continue a run (id or folder) from its last.pt")
    p.add_argument("--from", dest="init_from", metavar="RUN",
                   help="fine-tune: start from a run's best weights (classes may have been added)")
    p.add_argument("--config", type=Path, help="TOML file with a [train] table of TrainConfig "
                   "fields (flags override it)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--patch-size", type=int, default=None)
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--quiet", action="store_true", help="no progress bar, only the result")


def train_config_from_args(args: argparse.Namespace):
    """TrainConfig from --config (a [train] table) then the flags; unknown keys are errors."""
    import dataclasses

    from segstudio.ml.train import TrainConfig

    values: dict = {}
    if args.config:
        import tomllib   # Python 3.11+

        table = tomllib.loads(args.config.read_text(encoding="utf-8"))
        values.update(table.get("train", table))
    for flag in ("preset", "epochs", "minutes", "device", "batch_size", "patch_size",
                 "steps_per_epoch", "lr", "seed", "threads"):
        if getattr(args, flag, None) is not None:
            values[flag] = getattr(args, flag)
    return TrainConfig.from_dict(dataclasses.asdict(TrainConfig()) | values)


class ProgressBar:
    """One rewritten line on a terminal; one line per epoch otherwise (logs, CI)."""

    def __init__(self, stream=None, width: int = 28) -> None:
        import time

        self._time = time
        stream = stream or sys.stderr
        self._stream, self._width = stream, width
        self._start = time.perf_counter()
        self._tty = stream.isatty()
        self._last = 0.0

    def __call__(self, p) -> None:
        frac = p.done / p.total if p.total else 0.0
        elapsed = self._time.perf_counter() - self._start
        eta = f"ETA {_clock(elapsed * (1 - frac) / frac)}" if frac > 0.01 else "ETA --:--"
        m = p.metrics or {}
        loss = f" loss {m['loss']:.4f}" if "loss" in m else ""
        dice = f" val Dice {m['mean_dice']:.3f}" if "mean_dice" in m else ""
        if self._tty:
            now = self._time.perf_counter()
            if now - self._last < 0.1 and "mean_dice" not in m and p.done < p.total:
                return
            self._last = now
            n = int(frac * self._width)
            line = (f"\r[{'#' * n}{'.' * (self._width - n)}] {frac:4.0%} {p.message}{loss}{dice} "
                    f"{_clock(elapsed)} {eta}")
            self._stream.write(line[:160].ljust(100))
            if "mean_dice" in m:
                self._stream.write("\n")
        elif "mean_dice" in m or not p.metrics:
            self._stream.write(f"{frac:4.0%} {p.message} ({_clock(elapsed)}, {eta})\n")
        self._stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60:02d}:{seconds % 60:02d}"


@command("train", "train a model on a project's labelled images")(_add_train)
def _run_train(args: argparse.Namespace) -> int:
    import signal

    from segstudio.core.jobs import Cancelled, CancelToken
    from segstudio.io.project import Project, ProjectError
    from segstudio.ml.allocator import tune_allocator

    tune_allocator()
    from segstudio.ml.checkpoint import CheckpointError
    from segstudio.ml.data import DataError
    from segstudio.ml.device import DeviceError
    from segstudio.ml.models import ModelError
    from segstudio.ml.train import TrainingError, train

    try:
        cfg = train_config_from_args(args)
        project = Project.open(args.project)
    except (ValueError, OSError, ProjectError) as e:
        err(str(e))
        return 2
    token = CancelToken()

    def on_sigint(_sig, _frame):      # first Ctrl-C stops cleanly after the step; second kills
        if token.cancelled:
            raise KeyboardInterrupt
        print("\nstopping after this step (Ctrl-C again to abort)...", file=sys.stderr)
        token.cancel()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        result = train(project, cfg, resume=args.resume, init_from=args.init_from,
                       on_progress=None if args.quiet else ProgressBar(), cancel=token)
    except Cancelled:
        err("cancelled; the run folder keeps best.pt and last.pt (continue with --resume RUN)")
        return 130
    except (TrainingError, DataError, CheckpointError, DeviceError, ModelError,
            FileNotFoundError) as e:
        err(str(e))
        return 1
    finally:
        signal.signal(signal.SIGINT, previous)
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    best = result.best_metrics
    print(f"run: {result.run_dir}")
    print(f"status: {result.status} after {result.epochs} epochs, {result.steps} steps, "
          f"{result.elapsed_s:.0f} s; best epoch {result.best_epoch}")
    if best:
        per_class = ", ".join(f"{k[5:]} {v:.3f}" for k, v in best.items() if k.startswith("dice:"))
        print(f"validation: mean Dice {best['mean_dice']:.3f}, mean IoU {best['mean_iou']:.3f} "
              f"(Dice per class: {per_class})")
    return 0


# -- doctor --------------------------------------------------------------------------------------
def _add_doctor(p: argparse.ArgumentParser) -> None:
    pass


@command("doctor", "say which device trains and, if no GPU is used, why and what to do")(_add_doctor)
def _run_doctor(args: argparse.Namespace) -> int:
    from segstudio.ml.allocator import allocator_report
    from segstudio.ml.device import doctor

    print(doctor())
    print(allocator_report())
    return 0


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
