"""Command line: `segstudio-cli <command>`; each command imports only what it needs.

`gui` loads Qt; the headless commands never do, so they run on machines without PySide6.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
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
            print(f"{f} [{first.frame}-{infos[-1].frame}]: {what}, "
                  f"{len(infos)} {_ITEMS.get(first.kind, 'items')}")
        else:
            for info in infos:
                print(f"{f} [{info.frame}]: {info.width} x {info.height}, {info.channels} "
                      f"channel(s), {info.dtype}, {info.kind}")
    return 1 if bad else 0


# -- export / import -----------------------------------------------------------------------------
class _ProgressLine:
    """One self-overwriting line on a terminal; a line per tenth of the work elsewhere."""

    def __init__(self, verb: str) -> None:
        self.verb = verb
        self.tty = sys.stderr.isatty()
        self._last_tenth = -1

    def __call__(self, p) -> None:
        if self.tty:
            print(f"\r{self.verb} {p.done}/{p.total} {p.message[:40]:<40}", end="",
                  file=sys.stderr, flush=True)
            return
        tenth = p.done * 10 // max(p.total, 1)
        if tenth != self._last_tenth:
            self._last_tenth = tenth
            print(f"{self.verb} {p.done}/{p.total}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def _parse_split(text: str) -> tuple[str, tuple[float, float, float]]:
    if text == "project":
        return "project", (0.8, 0.2, 0.0)
    try:
        parts = [float(v) for v in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) == 2:
        parts.append(0.0)
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"--split takes 'project' or ratios 'train,val[,test]' "
                                         f"such as 0.8,0.1,0.1; got {text!r}")
    return "ratios", (parts[0], parts[1], parts[2])


def _add_export(p: argparse.ArgumentParser) -> None:
    from segstudio.io.export import FORMATS

    p.add_argument("project", type=Path)
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, type=Path, help="new dataset folder")
    p.add_argument("--split", default="project", type=_parse_split,
                   help="'project' (each image's split) or ratios train,val[,test], e.g. 0.8,0.1,0.1")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed for --split ratios")
    p.add_argument("--images", choices=("copy", "link", "none"), default="copy",
                   help="copy images, symlink them, or write masks only")
    p.add_argument("--unlabeled", choices=("ignore", "background"), default="ignore",
                   help="unlabeled pixels as 255 (ignore) or as background 0")
    p.add_argument("--only-fully-labelled", action="store_true")
    p.add_argument("--include-unmasked", action="store_true",
                   help="also export images that have no mask yet")
    p.add_argument("--classes", help="comma-separated class names to keep (others -> background)")
    p.add_argument("--keep-ids", action="store_true",
                   help="keep project class ids instead of renumbering to 1..n")
    p.add_argument("--coco-mode", choices=("polygon", "rle"), default="polygon")
    p.add_argument("--overwrite", action="store_true", help="replace OUT once the export is complete")
    p.add_argument("--workers", type=int, default=0, help="threads (0: automatic)")


@command("export", "write the project as a dataset (PNG, COCO, YOLO, VOC, NIfTI, DICOM-SEG)")(_add_export)
def _run_export(args: argparse.Namespace) -> int:
    from segstudio.io.export import ExportError, ExportOptions, export_dataset
    from segstudio.io.project import Project, ProjectError

    split, ratios = args.split
    options = ExportOptions(
        format=args.format, split=split, ratios=ratios, seed=args.seed, images=args.images,
        unlabeled=args.unlabeled, only_fully_labelled=args.only_fully_labelled,
        include_unmasked=args.include_unmasked,
        classes=tuple(n.strip() for n in args.classes.split(",") if n.strip()) if args.classes else None,
        renumber=not args.keep_ids, coco_mode=args.coco_mode, overwrite=args.overwrite,
        workers=args.workers)
    result = _with_progress("exporting", (ProjectError, ExportError, ImportError, OSError),
                            lambda progress: export_dataset(Project.open(args.project), args.out,
                                                            options, on_progress=progress))
    if result is None:
        return 2
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items() if v)
    print(f"exported {sum(result.counts.values())} item(s) ({counts}) as {result.format} to "
          f"{result.out}; classes: " + ", ".join(f"{c.id}={c.name}" for c in result.classes))
    return 0


def _with_progress(verb: str, errors: tuple, work):
    """Run work(progress) with a progress line; report expected errors and skipped items."""
    progress = _ProgressLine(verb)
    try:
        result = work(progress)
    except errors as e:
        progress.close()
        err(str(e))
        return None
    progress.close()
    for s in result.skipped:
        print(f"skipped: {s}", file=sys.stderr)
    return result


def _parse_map(text: str) -> tuple[str, str]:
    old, sep, new = text.partition("=")
    if not sep or not old.strip() or not new.strip():
        raise argparse.ArgumentTypeError(f"--map takes OLD=NEW (source class = project class), "
                                         f"got {text!r}")
    return old.strip(), new.strip()


def _add_import(p: argparse.ArgumentParser) -> None:
    from segstudio.io.imports import IMPORT_FORMATS

    p.add_argument("project", type=Path)
    p.add_argument("src", type=Path, help="folder or file to import from")
    p.add_argument("--format", required=True, choices=IMPORT_FORMATS)
    p.add_argument("--map", action="append", type=_parse_map, default=[], metavar="OLD=NEW",
                   help="source class name OLD is project class NEW (repeatable)")
    p.add_argument("--new-classes", action="store_true",
                   help="add unknown class names to the project instead of failing")
    p.add_argument("--unannotated", choices=("background", "ignore"), default="background",
                   help="pixels no polygon covers (COCO, YOLO, labelme)")
    p.add_argument("--skip-unmatched", action="store_true",
                   help="skip files for images the project does not have instead of failing")


@command("import", "read masks from a folder, COCO, YOLO-seg or labelme into a project")(_add_import)
def _run_import(args: argparse.Namespace) -> int:
    from segstudio.io.imports import AnnotationImportError, ImportOptions, import_annotations
    from segstudio.io.project import Project, ProjectError

    options = ImportOptions(format=args.format, mapping=dict(args.map),
                            new_classes=args.new_classes, unannotated=args.unannotated,
                            skip_unmatched=args.skip_unmatched)
    project = None

    def run(progress):
        nonlocal project
        project = Project.open(args.project)
        project.require_writable("segstudio-cli import")   # not while a window edits it
        try:
            return import_annotations(project, args.src, options, on_progress=progress)
        finally:
            project.release_lock()

    result = _with_progress("importing", (ProjectError, AnnotationImportError, ImportError, OSError), run)
    if result is None:
        return 2
    added = f"; new classes: {', '.join(result.added_classes)}" if result.added_classes else ""
    print(f"imported masks for {len(result.imported)} image(s) into {project.root}{added}")
    return 0


# -- predict / evaluate --------------------------------------------------------------------------
def _add_tiling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tile", type=int, default=256, help="tile size in pixels (default 256)")
    p.add_argument("--overlap", type=float, default=0.25, help="tile overlap, 0..1 (default 0.25)")
    p.add_argument("--batch", type=int, default=8, help="tiles per forward pass (default 8)")


def _tile_options(args: argparse.Namespace):
    from segstudio.ml.predict import TileOptions

    return TileOptions(tile=args.tile, overlap=args.overlap, batch_size=args.batch)


def _add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=Path, help="project folder, folder of images, or one image")
    p.add_argument("--run", required=True,
                   help="run id under PROJECT/runs, 'latest', or the path of a run folder")
    p.add_argument("--out", type=Path, required=True, help="folder for the masks")
    p.add_argument("--probabilities", action="store_true",
                   help="also write ID.probs.npy: (classes, h, w) float16 probabilities")
    _add_tiling(p)


def _raising(error: Exception):
    def read():
        raise error
    return read


def _prediction_sources(source: Path, out: Path):
    """(id, label, read() -> ndarray) for a project's images or a folder's image files."""
    from segstudio.io.images import is_supported, probe, read_image
    from segstudio.io.project import Project

    if (source / "project.json").is_file():
        project = Project.open(source)
        return source, [(e.id, e.display_name, lambda e=e: project.read_image(e).data)
                        for e in project.images]
    out = out.resolve()
    files = ([source] if source.is_file() else
             sorted(f for f in source.rglob("*") if f.is_file() and is_supported(f)
                    and out not in f.resolve().parents))       # not our own earlier masks
    items = []
    for f in files:
        rel = f.name if source.is_file() else f.relative_to(source).as_posix()
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", rel.rsplit(".", 1)[0]).strip("._") or "image"
        try:
            infos = probe(f)
        except Exception as e:   # an unreadable file is reported, the others still predicted
            items.append((stem, rel, _raising(e)))
            continue
        for info in infos:
            iid = stem if info.frame is None else f"{stem}_{info.frame:03d}"
            items.append((iid, rel, lambda f=f, fr=info.frame: read_image(f, fr).data))
    return None, items


@command("predict", "predict masks for a project or a folder of images with a trained run")(
    _add_predict)
def _run_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from segstudio.core.ranking import uncertainty_score
    from segstudio.io.atomic import atomic_write_bytes, atomic_write_json
    from segstudio.io.masks import encode_mask_png
    from segstudio.io.project import ProjectError
    from segstudio.ml.predict import predict_tiled
    from segstudio.ml.runs import RunError, load_run_model

    if not args.source.exists():
        err(f"{args.source} does not exist")
        return 2
    from segstudio.io.outdir import OutputFolderError, check_output_folder

    try:
        project_root, items = _prediction_sources(args.source, args.out)
        check_output_folder(args.out, protect=[project_root] if project_root else [],
                            overwrite=False, marker="predictions.json", marker_key=None,
                            what="prediction folder", replaces=False)
        model, normalise, classes = load_run_model(project_root, args.run)
        options = _tile_options(args)
    except (ProjectError, RunError, ValueError, OutputFolderError) as e:
        err(str(e))
        return 2
    if not items:
        err(f"{args.source} holds no images")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    summary, failed = [], 0
    for k, (iid, label, read) in enumerate(items, start=1):
        try:
            image = read()
        except Exception as e:
            err(f"{label}: {e}")
            failed += 1
            continue
        pred = predict_tiled(model, image, normalise, options, probabilities=args.probabilities)
        atomic_write_bytes(args.out / f"{iid}.png", encode_mask_png(pred.labels))
        row = {"id": iid, "source": label, "mask": f"{iid}.png",
               "height": int(image.shape[0]), "width": int(image.shape[1])}
        if pred.probabilities is not None:
            np.save(args.out / f"{iid}.probs.npy", pred.probabilities)
            row["probabilities"] = f"{iid}.probs.npy"
        assert pred.entropy is not None and pred.margin is not None
        score = uncertainty_score(iid, pred.entropy, pred.margin)
        row.update(mean_entropy=round(score.mean_entropy, 6),
                   mean_margin=round(score.mean_margin, 6))
        summary.append(row)
        print(f"[{k}/{len(items)}] {label} -> {args.out / row['mask']}", file=sys.stderr)
    atomic_write_json(args.out / "predictions.json", {
        "run": str(args.run), "classes": [{"id": c.id, "name": c.name, "color": c.color}
                                          for c in classes], "images": summary})
    print(f"wrote {len(summary)} mask(s) to {args.out}" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", type=Path)
    p.add_argument("--run", required=True,
                   help="run id under PROJECT/runs, 'latest', or the path of a run folder")
    p.add_argument("--split", default="val", choices=["train", "val", "test", "all"],
                   help="which labelled images to measure (default: val)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--exclude-background", action="store_true",
                   help="leave class 0 out of the class means")
    p.add_argument("--objects", default=None, metavar="IDS",
                   help="comma-separated class ids to count as objects (connected components, "
                        "matched at IoU >= 0.5); default: class 1 of a background/one-class "
                        "project, none otherwise; 'none' turns it off")
    _add_tiling(p)


@command("evaluate", "measure a trained run on the project's labelled images, per class")(
    _add_evaluate)
def _run_evaluate(args: argparse.Namespace) -> int:
    import json

    from segstudio.io.project import Project, ProjectError
    from segstudio.ml.evaluate import evaluate_project
    from segstudio.ml.runs import RunError, load_run_model

    objects = None
    try:
        if args.objects is not None:
            objects = () if args.objects == "none" else tuple(
                int(v) for v in args.objects.split(",") if v.strip())
    except ValueError:
        err(f"--objects takes class ids like 1,3 or 'none', got {args.objects!r}")
        return 2
    try:
        project = Project.open(args.project)
        model, normalise, classes = load_run_model(project.root, args.run)
        options = _tile_options(args)
    except (ProjectError, RunError, ValueError) as e:
        err(str(e))
        return 2
    report = evaluate_project(project, model, normalise, classes, split=args.split,
                              options=options, instance_classes=objects,
                              exclude_from_mean=(0,) if args.exclude_background else ())
    if args.json:
        print(json.dumps(report.as_dict(), indent=1))
    else:
        print(f"run {args.run} on {project.name}, split {args.split}")
        print(report.format_table())
    if not report.images:
        err(f"no labelled images in split {args.split!r}; nothing was measured")
        return 1
    return 0


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
    p.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the training step (slower start, often faster on CUDA)")
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
                 "steps_per_epoch", "lr", "seed", "threads", "compile"):
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
        dice = ""
        if "mean_dice" in m:        # NaN: no foreground class labelled in validation images
            dice = f" val Dice {m['mean_dice']:.3f}" if m["mean_dice"] == m["mean_dice"] \
                else " no val score"
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
    rc = _train(args)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Under torchrun, gloo's worker threads can abort interpreter finalization
        # ("terminate called without an active exception", SIGABRT) after the process group
        # is destroyed; the run is complete on disk by now, so leave without that teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(rc)
    return rc


def _train(args: argparse.Namespace) -> int:
    import signal

    from segstudio.core.jobs import Cancelled, CancelToken
    from segstudio.io.project import Project, ProjectError
    from segstudio.ml.allocator import tune_allocator

    tune_allocator()
    from segstudio.ml.checkpoint import CheckpointError
    from segstudio.ml.data import DataError
    from segstudio.ml.device import DeviceError
    from segstudio.ml.distributed import is_main_process, quiet_other_ranks
    from segstudio.ml.models import ModelError
    from segstudio.ml.train import TrainingError, cancelled_message, describe_score, train

    # under torchrun every rank runs this command; rank 0 alone prints, logs and writes
    quiet_other_ranks()
    main_rank = is_main_process()

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
                       on_progress=None if args.quiet or not main_rank else ProgressBar(),
                       cancel=token)
    except Cancelled as e:
        if main_rank:
            err(cancelled_message(e))
        return 130
    except (TrainingError, DataError, CheckpointError, DeviceError, ModelError,
            FileNotFoundError) as e:
        err(str(e) if main_rank else f"rank {os.environ.get('RANK')}: {e}")
        return 1
    finally:
        signal.signal(signal.SIGINT, previous)
    if not main_rank:
        return 0
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    best = result.best_metrics
    print(f"run: {result.run_dir}")
    print(f"status: {result.status} after {result.epochs} epochs, {result.steps} steps, "
          f"{result.elapsed_s:.0f} s; best epoch {result.best_epoch}")
    score = describe_score(best)
    if best and score.startswith("mean Dice"):
        per_class = ", ".join(f"{k[5:]} {v:.3f}" for k, v in best.items()
                              if k.startswith("dice:") and v == v)
        print(f"validation: {score}, mean IoU {best['mean_iou']:.3f} "
              f"(Dice per class: {per_class})")
    else:
        print(f"validation: {score}")
    return 0


# -- doctor --------------------------------------------------------------------------------------
def _add_doctor(p: argparse.ArgumentParser) -> None:
    pass


@command("doctor", "say which device trains and, if no GPU is used, why and what to do")(_add_doctor)
def _run_doctor(args: argparse.Namespace) -> int:
    from segstudio.ml.allocator import allocator_report
    from segstudio.ml.device import doctor
    from segstudio.ui.app import window_report     # no Qt import: checks the libraries Qt needs

    print(doctor())
    print(allocator_report())
    print(window_report())
    return 0


# -- export-model --------------------------------------------------------------------------------
def _add_export_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", type=Path, help="project folder")
    p.add_argument("--run", default="latest", help="run id, 'latest' (default) or a run folder")
    p.add_argument("--out", type=Path, required=True, help="folder to write (model.pt, model.onnx, model_card.json)")
    p.add_argument("--no-onnx", action="store_true", help="only the checkpoint and model card")
    p.add_argument("--overwrite", action="store_true")


@command("export-model", "export a trained run: checkpoint, model card and ONNX")(_add_export_model)
def _run_export_model(args: argparse.Namespace) -> int:
    from segstudio.ml.export_model import ModelExportError, export_run
    from segstudio.ml.export_onnx import OnnxExportError
    from segstudio.ml.runs import RunError

    try:
        summary = export_run(args.project, args.run, args.out, onnx=not args.no_onnx,
                             overwrite=args.overwrite)
    except (ModelExportError, OnnxExportError, RunError, OSError) as e:
        err(str(e))
        return 2
    onnx = summary["onnx"]
    check = ""
    if onnx:
        check = (f"; ONNX checked with onnxruntime, max |diff| {onnx['max_abs_diff']:.2e}"
                 if onnx["checked_with_onnxruntime"] else "; ONNX written (onnxruntime not installed: not checked)")
    print(f"exported run {summary['run']} to {summary['out']}{check}")
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
