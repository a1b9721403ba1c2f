"""Commands on projects and files: gui, new, info, check."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from segstudio.cli.base import command, err

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
    for note in project.notes:
        print(f"note: {note}", file=sys.stderr)
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
        verified: dict[Path, list | str] = {}    # decode each file once, not once per slice
        for e in project.images:
            path = project.image_path(e)
            try:
                if path not in verified:
                    infos, problem = _verify_file(path, project.max_pixels)
                    verified[path] = problem if problem else infos
                if isinstance(verified[path], str):
                    problems.append(verified[path])
                    continue
                info = next((i for i in verified[path] if i.frame == e.frame), None)
                if info is None:
                    raise ImageReadError(f"{path}: has no frame {e.frame}")
                if project.masks.has_mask(e.id):
                    project.load_mask(e, (info.height, info.width))
            except (ImageReadError, MaskError, OSError) as x:
                problems.append(str(x))
    for p in dict.fromkeys(problems):
        print(f"problem: {p}", file=sys.stderr)
    return 1 if problems else 0


# -- check ---------------------------------------------------------------------------------------
def _add_check(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", type=Path, nargs="+",
                   help="image files (each is decoded, not only its header read)")
    p.add_argument("--max-pixels", type=int, default=None)


def _verify_file(path: Path, max_pixels: int):
    """(infos, None) or (None, one-line reason): the header read and the pixels decoded.

    The readers' warnings (pydicom's do not name the file) are printed as one line each,
    naming the file; the CLI runs one file at a time, so catching them here is safe. pydicom
    also logs each failed decoder with its traceback: that goes quiet here, since the reason
    is in the error message.
    """
    import warnings

    from segstudio.io.images import ImageReadError, verify

    pydicom_log = logging.getLogger("pydicom")
    propagate, pydicom_log.propagate = pydicom_log.propagate, False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                infos, problem = verify(path, max_pixels), None
            except ImageReadError as e:
                infos, problem = None, str(e)
    finally:
        pydicom_log.propagate = propagate
    for message in dict.fromkeys(" ".join(str(w.message).split()) for w in caught):
        print(f"segstudio: warning: {path}: {message}", file=sys.stderr)
    return infos, problem


_ITEMS = {"tiff": "pages", "dicom": "frames", "nifti": "slices"}


@command("check", "read image files and say what they hold or why they cannot be read")(_add_check)
def _run_check(args: argparse.Namespace) -> int:
    from segstudio.io.images import DEFAULT_MAX_PIXELS

    bad = 0
    for f in args.files:
        infos, problem = _verify_file(f, args.max_pixels or DEFAULT_MAX_PIXELS)
        if problem:
            err(problem)
            bad += 1
            continue
        first = infos[0]
        what = (f"{first.width} x {first.height}, {first.channels} channel(s), {first.dtype}, "
                f"{first.kind}")
        if len(infos) == 1:
            print(f"{f}: {what}")
        elif all((i.width, i.height) == (first.width, first.height) for i in infos):
            shape = (first.extra or {}).get("volume_shape") or []
            volumes = int(shape[3]) if len(shape) > 3 and int(shape[3]) > 1 else 1
            count = (f"{volumes} volumes of {len(infos) // volumes} slices (each volume is an "
                     f"item of its own in a project)" if volumes > 1
                     else f"{len(infos)} {_ITEMS.get(first.kind, 'items')}")
            print(f"{f} [{first.frame}-{infos[-1].frame}]: {what}, {count}")
        else:
            for info in infos:
                print(f"{f} [{info.frame}]: {info.width} x {info.height}, {info.channels} "
                      f"channel(s), {info.dtype}, {info.kind}")
    return 1 if bad else 0
