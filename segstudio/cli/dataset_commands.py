"""Datasets in and out: export, import."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from segstudio.cli.base import command, err
from segstudio.io.formats import readers as _readers, writers as _writers  # noqa: F401 (register)
from segstudio.io.formats import volume_import as _volume_import  # noqa: F401 (register)
from segstudio.io.formats import nnunet as _nnunet  # noqa: F401,I001 (registers after writers)
from segstudio.io.formats.base import (COCO_MODES, IMAGE_MODES, READERS, UNLABELED_MODES, WRITERS,
                                       labels, using)

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


def _only(registry, option: str) -> str:
    return ", ".join(f.label for f in using(registry, option))


def _add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", type=Path)
    p.add_argument("--format", required=True, choices=list(WRITERS),
                   help="; ".join(f"{f.name}: {f.description}" for f in WRITERS.values()))
    p.add_argument("--out", required=True, type=Path, help="new dataset folder")
    p.add_argument("--split", default="project", type=_parse_split,
                   help="'project' (each image's split) or ratios train,val[,test], e.g. 0.8,0.1,0.1")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed for --split ratios")
    p.add_argument("--images", choices=IMAGE_MODES, default="copy",
                   help="copy images, symlink them, or write masks only")
    p.add_argument("--unlabeled", choices=UNLABELED_MODES, default="ignore",
                   help="unlabeled pixels as 255 (ignore), as background 0, or as the value "
                        "after the last class, declared in classes.json (label: nnU-Net style; "
                        "the nnunet format always declares its 'ignore' label)")
    p.add_argument("--only-fully-labelled", action="store_true",
                   help="leave out images with unlabeled pixels (COCO, YOLO and DICOM-SEG "
                        "cannot mark them: they would become background)")
    p.add_argument("--include-unmasked", action="store_true",
                   help="also export images that have no mask yet")
    p.add_argument("--classes", help="comma-separated class names to keep (others -> background)")
    p.add_argument("--keep-ids", action="store_true",
                   help="keep project class ids instead of renumbering to 1..n")
    p.add_argument("--coco-mode", choices=COCO_MODES, default="polygon",
                   help=f"polygons, or lossless RLE ({_only(WRITERS, 'coco_mode')} only)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT once the export is complete")
    p.add_argument("--workers", type=int, default=0, help="threads (0: automatic)")


@command("export", f"write the project as a dataset ({labels(WRITERS)})")(_add_export)
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
    for w in result.warnings:          # also in export.json's "warnings"
        print(f"warning: {w}", file=sys.stderr)
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
    p.add_argument("project", type=Path)
    p.add_argument("src", type=Path, help="folder or file to import from")
    p.add_argument("--format", required=True, choices=list(READERS),
                   help="; ".join(f"{f.name}: {f.description}" for f in READERS.values()))
    p.add_argument("--map", action="append", type=_parse_map, default=[], metavar="OLD=NEW",
                   help="source class name OLD is project class NEW (repeatable); NEW "
                        "'unlabeled' makes its pixels 255 (labelme's __ignore__ is, unasked)")
    p.add_argument("--new-classes", action="store_true",
                   help="add unknown class names to the project instead of failing")
    p.add_argument("--unannotated", choices=("background", "ignore"), default="background",
                   help=f"pixels no polygon covers ({_only(READERS, 'unannotated')})")
    p.add_argument("--skip-unmatched", action="store_true",
                   help="skip files for images the project does not have instead of failing")
    p.add_argument("--object-class", default=None, metavar="NAME",
                   help="instances: the class the objects belong to (default: the project's one "
                        "object class, else its one class besides background, else 'object')")
    p.add_argument("--as-objects", action="store_true",
                   help="coco, labelme, yolo: the imported classes hold objects (one object per "
                        "annotation, shape or line)")


@command("import", f"read masks into a project ({labels(READERS)})")(_add_import)
def _run_import(args: argparse.Namespace) -> int:
    from segstudio.io.imports import AnnotationImportError, ImportOptions, import_annotations
    from segstudio.io.project import Project, ProjectError

    options = ImportOptions(format=args.format, mapping=dict(args.map),
                            new_classes=args.new_classes, unannotated=args.unannotated,
                            skip_unmatched=args.skip_unmatched,
                            object_class=args.object_class, as_objects=args.as_objects)
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
