"""`segstudio-cli train-click`: the Click tool's model, learned from a project's labelled objects."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from segstudio.cli.base import command, err


def _add_train_click(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", type=Path, help="project folder")
    p.add_argument("--minutes", type=float, default=5.0, help="time budget (default 5)")
    p.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1…")
    p.add_argument("--seed", type=int, default=0)


@command("train-click", "train the Click tool's model on a project's labelled objects "
         "(runs/click/)")(_add_train_click)
def _run_train_click(args: argparse.Namespace) -> int:
    from segstudio.io.manifest import ProjectError
    from segstudio.io.project import Project
    from segstudio.ml.click_model import ClickConfig, train_click_model
    from segstudio.ml.events import TrainingError

    try:
        project = Project.open(args.project)
        extra = {"steps": args.steps} if args.steps else {}
        cfg = ClickConfig(minutes=args.minutes, device=args.device, seed=args.seed, **extra)
        last = [""]

        def show(p) -> None:
            if p.message != last[0]:
                last[0] = p.message
                print(p.message, file=sys.stderr, flush=True)

        result = train_click_model(project, cfg, on_progress=show)
    except (ProjectError, TrainingError, ValueError, OSError) as e:
        err(str(e))
        return 2
    print(f"click model {result.run_dir} ({result.status}, {result.steps} steps in "
          f"{result.elapsed_s:.0f} s, loss {result.loss:.3f}); the Click tool (K) uses it")
    return 0
