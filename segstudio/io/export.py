"""Export a project as a dataset folder, in any format of `io.formats.base.WRITERS`.

`export_dataset(project, out, options)` plans everything first (which images, which split,
which class ids), then writes into a hidden temporary folder beside `out` and renames it to
`out` only when every file is written: an interrupted or cancelled export leaves nothing
half-written. Per-image work (mask decode, class remapping, encoding) runs on a few
threads; OpenCV and zlib release the GIL, so this scales with cores. What a format writes is
its writer's business (`io.formats.writers`); both sides meet in `io.formats.base`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from segstudio.core.classes import BACKGROUND, UNLABELED
from segstudio.core.jobs import CancelToken, Progress, ProgressFn
from segstudio.io.formats import writers as _writers  # noqa: F401 (fills WRITERS)
from segstudio.io.formats import nnunet as _nnunet  # noqa: F401,I001 (after writers: its order)
from segstudio.io.formats.base import (WRITERS, ClassPlan, ExportContext, ExportedClass,
                                       ExportError, ExportOptions, Item, Skip, Writer)
from segstudio.io.outdir import OutputFolderError, check_output_folder, swap_into_place
from segstudio.io.project import SPLITS, ImageEntry, Project

__all__ = ["WRITERS", "ClassPlan", "ExportContext", "ExportError", "ExportOptions",
           "ExportResult", "ExportedClass", "Item", "Skip", "assign_splits", "export_dataset",
           "export_warnings", "label_status", "plan_classes", "select_entries", "unlabeled_warning",
           "writer_for"]

log = logging.getLogger(__name__)

PARTIAL = ".partial-"


@dataclass
class ExportResult:
    out: Path
    format: str
    counts: dict[str, int]                   # items written per split
    classes: list[ExportedClass]
    skipped: list[str] = field(default_factory=list)   # "image: why", for the user to read
    warnings: list[str] = field(default_factory=list)  # exported, but changed (export.json too)


def plan_classes(project: Project, options: ExportOptions) -> ClassPlan:
    """Which project classes are kept and the ids they get; dropped ones become background."""
    by_name = {c.name.casefold(): c for c in project.classes}
    if options.classes is None:
        kept = [c for c in project.classes if c.id != BACKGROUND]
    else:
        unknown = [n for n in options.classes if n.casefold() not in by_name]
        if unknown:
            raise ExportError(f"unknown class(es) {unknown}; the project has "
                              f"{[c.name for c in project.classes]}")
        wanted = {n.casefold() for n in options.classes}
        kept = [c for c in project.classes if c.name.casefold() in wanted and c.id != BACKGROUND]
    bg = project.class_by_id(BACKGROUND)
    classes = [ExportedClass(BACKGROUND, bg.name if bg else "background",
                             bg.color if bg else "#000000", BACKGROUND)]
    for i, c in enumerate(sorted(kept, key=lambda c: c.id), 1):
        classes.append(ExportedClass(i if options.renumber else c.id, c.name, c.color, c.id))
    if options.unlabeled == "label":      # declared ignore label: the value after the last class
        unlabeled_value = max(c.id for c in classes) + 1
        if unlabeled_value >= UNLABELED:
            raise ExportError(f"--unlabeled label needs a value after the last class id "
                              f"({unlabeled_value - 1}), and 255 is the last; renumber the "
                              f"classes (no --keep-ids) or use --unlabeled ignore")
    else:
        unlabeled_value = UNLABELED if options.unlabeled == "ignore" else BACKGROUND
    lut = np.full(256, unlabeled_value, np.uint8)    # ids no class owns: treated as unlabeled
    for c in project.classes:
        lut[c.id] = BACKGROUND
    for c in classes[1:]:
        lut[c.source_id] = c.id
    lut[UNLABELED] = unlabeled_value
    holds_objects = {c.id for c in project.classes if c.objects}
    objects = frozenset(c.id for c in classes[1:] if c.source_id in holds_objects)
    return ClassPlan(lut, classes, unlabeled_value, objects)


def assign_splits(entries: list[ImageEntry], options: ExportOptions) -> dict[str, str]:
    """image id -> split: the project's, or shuffled with `seed` and cut by `ratios`."""
    if options.split == "project":
        return {e.id: e.split for e in entries}
    order = [e.id for e in entries]
    np.random.default_rng(options.seed).shuffle(order)
    r = np.asarray(options.ratios, np.float64) / sum(options.ratios)
    cuts = np.round(np.cumsum(r) * len(order)).astype(int)
    out = {}
    for i, image_id in enumerate(order):
        out[image_id] = SPLITS[int(np.searchsorted(cuts, i, side="right"))] if i < cuts[-1] else "test"
    return out


def select_entries(project: Project, options: ExportOptions) -> list[ImageEntry]:
    entries = [e for e in project.images if options.include_unmasked or project.masks.has_mask(e.id)]
    if options.only_fully_labelled:
        entries = [e for e in entries if e.labelled >= 1.0]    # checked again on the pixels
    return entries


def label_status(project: Project) -> tuple[int, int]:
    """(partly labelled, labelled at all) image counts from the manifest: no mask is read, so
    a dialog can call it on the GUI thread."""
    labelled = [e.labelled for e in project.images if e.labelled > 0]
    return sum(1 for v in labelled if v < 1.0), len(labelled)


def unlabeled_warning(options: ExportOptions, partly: int, total: int) -> str | None:
    """What the user should know before exporting `partly` of `total` images that are only
    partly labelled in a format that cannot say "unlabeled"; None when nothing is lost."""
    fmt = WRITERS.get(options.format)
    if (fmt is None or fmt.keeps_unlabeled or partly == 0 or options.only_fully_labelled
            or options.unlabeled == "background"):     # asked for: unlabeled -> background
        return None
    return (f"{partly} of {total} image(s) are only partly labelled; {fmt.label} cannot mark "
            f"pixels as unlabeled, so theirs become background. Export only fully labelled "
            f"images ('Only fully labelled images', --only-fully-labelled) to leave them out.")


def export_warnings(options: ExportOptions, entries: list[ImageEntry]) -> list[str]:
    """Warnings for export.json, the CLI and the window (from the manifest's label status)."""
    partly = sum(1 for e in entries if e.labelled < 1.0)
    return [w for w in [unlabeled_warning(options, partly, len(entries))] if w]


def _unlabeled_doc(options: ExportOptions, plan: ClassPlan) -> dict[str, Any]:
    """export.json's word on unlabeled pixels: which value they have, or that they cannot."""
    if not WRITERS[options.format].keeps_unlabeled:
        return {"value": None, "note": "not expressible in this format: exported as background"}
    if options.format == "nnunet":
        return {"value": "dataset.json labels['ignore']",
                "note": "nnU-Net's ignore label, the highest label value (declared only when used)"}
    if options.unlabeled == "label":
        return {"value": plan.unlabeled_value, "note": "unlabeled pixels have the value after "
                "the last class (classes.json 'unlabeled'), nnU-Net style: ignore it in training"}
    if plan.unlabeled_value == UNLABELED:
        return {"value": UNLABELED, "note": "unlabeled pixels are 255 in the masks (NIfTI "
                "too); ignore 255 in training (e.g. CrossEntropyLoss(ignore_index=255)); for "
                "nnU-Net export as 'nnunet', which declares them as its 'ignore' label"}
    return {"value": None, "note": "exported as background (0), as asked"}


# -- the work ----------------------------------------------------------------------------------
def writer_for(name: str) -> Writer:
    """A new writer for format `name`; the error lists the registered formats."""
    try:
        return WRITERS[name].make()
    except KeyError:
        raise ExportError(f"unknown format {name!r}; known: {list(WRITERS)}") from None


def object_notes(fmt: str, names: list[str]) -> list[str]:
    """What export.json says about object classes (`names`), per format."""
    if not names:
        return []
    what = {"coco": "one annotation per object (touching objects stay apart); an object with "
                    "holes, or whose outline would not decode to its own pixels, is written as "
                    "RLE (iscrowd 0) even in polygon mode",
            "yolo": "one line per object (touching objects stay apart); a line is one outline "
                    "without holes: holes are filled and of an object in several parts only "
                    "the largest part is written (YOLO-seg's limit)",
            "png": "instances/<split>/<id>.png beside masks/: 16-bit object ids (0 = none, "
                   "1..n per image; a uint32 .tif above 65535 objects)"}.get(fmt)
    if what is None:
        return [f"class(es) {names} hold objects; {fmt} keeps only their class pixels"]
    return [f"class(es) {names} hold objects: {what}; pixels of those classes without an "
            f"object id are written as 8-connected regions, like the other classes"]


def consumer_notes(fmt: str, results: list[tuple[Item, Any]]) -> list[str]:
    """What the consumer of this format needs to know, for export.json's `notes`."""
    if fmt == "coco":
        most = 0           # objects of one category in one image: what COCOeval's maxDets caps
        for _item, res in results:
            anns = res[3] if isinstance(res, tuple) and len(res) == 4 else []
            most = max([most, *Counter(a.get("category_id") for a in anns).values()])
        limit = max(most, 100)
        return [f"COCOeval (pycocotools) scores only the maxDets[-1] best detections per image "
                f"and category (default [1, 10, 100]); the most objects of one class in one "
                f"image here is {most}, so set E.params.maxDets = [1, 10, {limit}] before "
                f"evaluate(), or an image with more objects scores below 1.0 even against "
                f"itself. summarize()'s stats[0] stays fixed at maxDets=100 (-1 when 100 is "
                f"not listed): read AP@[.5:.95] as the mean of eval['precision'][:, :, :, 0, "
                f"-1] over values > -1; stats[1] and stats[2] (AP50, AP75) follow maxDets[2]"]
    if fmt == "yolo":
        return ["classes.txt lists the YOLO classes in index order (line 1 is class 0), like "
                "data.yaml's names; polygon vertices lie 0.004 px past the pixel centres, so "
                "Ultralytics' int32 truncation draws exactly the exported pixels"]
    if fmt == "voc":
        return ["torchvision.datasets.VOCSegmentation(<this folder>, year='2012', "
                "image_set='train' | 'val' | 'trainval') loads it unchanged (its 2012 loader "
                "takes no 'test'; test.txt is there for other tools)"]
    return []


def _class_files(ctx: ExportContext) -> None:
    plan = ctx.plan
    doc = {"classes": [asdict(c) for c in plan.classes],
           "background": BACKGROUND,
           "unlabeled": plan.unlabeled_value if plan.unlabeled_value != BACKGROUND else None}
    (ctx.root / "classes.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
    if (ctx.root / "classes.txt").exists():    # the writer's own (YOLO: by YOLO index)
        return
    names = {c.id: c.name for c in plan.classes}
    lines = [names.get(i, f"_unused_{i}") for i in range(max(names) + 1)]     # by mask value
    (ctx.root / "classes.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def default_workers() -> int:
    """Export threads when the options say 0 (automatic): PNG coding releases the GIL."""
    return min(4, os.cpu_count() or 1)


def _run_items(items: list[Item], work: Callable[[Item], Any], workers: int,
               on_progress: ProgressFn | None, cancel: CancelToken,
               skipped: list[str]) -> list[tuple[Item, Any]]:
    """Run `work` on every item on `workers` threads, in order; skips are collected."""
    results: list[tuple[Item, Any]] = []
    done = 0
    total = len(items)

    def finish(item: Item, fut: Future) -> None:
        nonlocal done
        try:
            results.append((item, fut.result()))
        except Skip as s:
            skipped.append(str(s))
        done += 1
        if on_progress:
            on_progress(Progress(done, total, item.key))

    if workers <= 1:
        for item in items:
            cancel.raise_if_cancelled()
            fut: Future = Future()
            try:
                fut.set_result(work(item))
            except Skip as s:
                fut.set_exception(s)
            finish(item, fut)
        return results
    with ThreadPoolExecutor(workers, thread_name_prefix="export") as pool:
        pending: dict[Future, Item] = {}
        queue = iter(items)
        try:
            for item in queue:
                cancel.raise_if_cancelled()
                pending[pool.submit(work, item)] = item
                if len(pending) >= 2 * workers:     # bounded: memory stays flat, cancel is quick
                    ready, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for f in ready:
                        finish(pending.pop(f), f)
            while pending:
                ready, _ = wait(pending, return_when=FIRST_COMPLETED)
                for f in ready:
                    finish(pending.pop(f), f)
                cancel.raise_if_cancelled()
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    order = {item.key: i for i, item in enumerate(items)}
    results.sort(key=lambda r: order[r[0].key])
    return results


def export_dataset(project: Project, out: Path | str, options: ExportOptions | None = None, *,
                   on_progress: ProgressFn | None = None,
                   cancel: CancelToken | None = None) -> ExportResult:
    """Write the dataset to `out` (which must not exist unless options.overwrite)."""
    options = options or ExportOptions()
    options.check()
    cancel = cancel or CancelToken()
    writer = writer_for(options.format)
    try:
        out = check_output_folder(out, protect=[project.root], overwrite=options.overwrite,
                                  marker="export.json", marker_key="format", what="dataset export")
    except OutputFolderError as e:
        raise ExportError(str(e)) from None
    plan = plan_classes(project, options)
    entries = select_entries(project, options)
    if not entries:
        raise ExportError("nothing to export: no image has a mask" +
                          (" and is fully labelled" if options.only_fully_labelled else ""))
    splits = assign_splits(entries, options)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}{PARTIAL}*"):    # left by a killed export
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f".{out.name}{PARTIAL}{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    skipped: list[str] = []
    try:
        ctx = ExportContext(project, options, plan, tmp, out)
        items = writer.items(ctx, entries, splits)
        skipped += ctx.notes
        workers = options.workers or default_workers()
        results = _run_items(items, lambda it: writer.write_item(ctx, it), workers,
                             on_progress, cancel, skipped)
        cancel.raise_if_cancelled()
        if not results:
            raise ExportError("nothing was exported: " + "; ".join(skipped[:5]))
        counts = Counter(item.split for item, _ in results)
        writer.finish(ctx, results)
        _class_files(ctx)
        exported = {e.id for item, _ in results for e in item.entries}
        warnings = export_warnings(options, [e for e in entries if e.id in exported])
        manifest = {"format": options.format, "project": project.name,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "options": asdict(options), "counts": dict(counts), "skipped": skipped,
                    "unlabeled": _unlabeled_doc(options, plan), "warnings": warnings,
                    "notes": consumer_notes(options.format, results) + object_notes(
                        options.format, [c.name for c in plan.classes if c.id in plan.objects])}
        (tmp / "export.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False,
                                                    default=str) + "\n", encoding="utf-8")
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for s in skipped:
        log.info("export skipped %s", s)
    for w in warnings:
        log.warning("export: %s", w)
    return ExportResult(out, options.format, {s: counts.get(s, 0) for s in SPLITS},
                        plan.classes, skipped, warnings)
