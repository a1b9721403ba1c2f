"""One writer per export format: how items are formed, what each writes, what closes the folder.

Each class registers itself (`@register_writer`, io.formats.base): a new format is a class
here (or in its own module imported by io.export) and nothing else lists it.

A writer has `items(ctx, entries, splits)` (units of work, in order), `write_item(ctx, item)`
(runs on a worker thread, writes only its own files) and `finish(ctx, results)` (runs once on
the calling thread: indexes, JSON, data.yaml).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from segstudio.core.names import slug
from segstudio.io.formats.base import (ExportContext, ExportError, Item, Skip, iter_split_names,
                                       register_writer)
from segstudio.io.formats.indexed_png import class_palette, encode_indexed_png
from segstudio.io.images import suffix_of
from segstudio.io.project import ImageEntry

log = logging.getLogger(__name__)


def _palette(ctx: ExportContext) -> np.ndarray:
    return class_palette({c.id: _rgb(c.color) for c in ctx.plan.classes})


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _per_image(entries: list[ImageEntry], splits: dict[str, str]) -> list[Item]:
    return [Item(e.id, splits[e.id], [e]) for e in entries]


def _write_lists(ctx: ExportContext, folder: Path, results: list[tuple[Item, Any]],
                 trainval: bool = False) -> None:
    by_split: dict[str, list[str]] = {}
    for item, _ in results:
        by_split.setdefault(item.split, []).append(item.key)
    if trainval:
        by_split["trainval"] = by_split.get("train", []) + by_split.get("val", [])
    for split, ids in by_split.items():
        # an empty list is an empty file: a lone newline reads as one image named ""
        (folder / f"{split}.txt").write_text("".join(i + "\n" for i in ids), encoding="utf-8")


@register_writer("png", label="PNG", description="Indexed PNG masks (VOC palette)")
class PngWriter:
    """images/<split>/<id>.<ext>, masks/<split>/<id>.png (indexed), <split>.txt lists; with
    object classes also instances/<split>/<id>.png (16-bit ids, .tif above 65535 objects)."""

    def items(self, ctx: ExportContext, entries: list[ImageEntry], splits: dict[str, str]) -> list[Item]:
        self.palette = _palette(ctx)
        return _per_image(entries, splits)

    def write_item(self, ctx: ExportContext, item: Item) -> str:
        entry = item.entries[0]
        info = ctx.info(entry)
        mask = ctx.mask(entry, info)
        (self._mask_folder(ctx, item.split) / f"{entry.id}.png").write_bytes(
            encode_indexed_png(mask, self.palette))
        folder = self._instance_folder(ctx, item.split)
        if folder is not None:
            from segstudio.io.formats.instances import write_instance_image

            objects = ctx.objects(entry, info, mask)
            # every mask gets its instance image (zeros: no objects), so the two folders pair up
            write_instance_image(folder, entry.id, objects if objects is not None
                                 else np.zeros(mask.shape, np.uint32))
        return self._put_image(ctx, entry, info, item.split)

    def _mask_folder(self, ctx: ExportContext, split: str) -> Path:
        return ctx.folder("masks", split)

    def _instance_folder(self, ctx: ExportContext, split: str) -> Path | None:
        """instances/<split>/ beside masks/ when an exported class holds objects."""
        return ctx.folder("instances", split) if ctx.plan.objects else None

    def _put_image(self, ctx: ExportContext, entry: ImageEntry, info, split: str) -> str:
        return ctx.put_image(entry, info, ctx.image_folder("images", split))

    def finish(self, ctx: ExportContext, results: list[tuple[Item, Any]]) -> None:
        _write_lists(ctx, ctx.root, results)


@register_writer("coco", label="COCO", description="COCO JSON (polygons or RLE)",
                 options=("coco_mode",), keeps_unlabeled=False)
class CocoWriter:
    """images/<split>/, annotations/instances_<split>.json; background is not a category."""

    def items(self, ctx: ExportContext, entries: list[ImageEntry], splits: dict[str, str]) -> list[Item]:
        if ctx.options.coco_mode == "rle" or ctx.plan.objects:    # objects: RLE for holes
            from segstudio.io.formats.coco import require_pycocotools

            require_pycocotools()
        return _per_image(entries, splits)

    def write_item(self, ctx: ExportContext, item: Item) -> tuple[str, int, int, list]:
        from segstudio.io.formats.coco import annotations_for

        entry = item.entries[0]
        info = ctx.info(entry)
        mask = ctx.mask(entry, info)
        objects = ctx.objects(entry, info, mask)
        anns = annotations_for(mask, 0, [c.id for c in ctx.plan.foreground], 0, ctx.options.coco_mode,
                               objects, ctx.plan.objects if objects is not None else frozenset())
        name = ctx.put_image(entry, info, ctx.image_folder("images", item.split))
        return name, info.height, info.width, anns

    def finish(self, ctx: ExportContext, results: list[tuple[Item, Any]]) -> None:
        from segstudio.io.formats.coco import categories

        cats = categories({c.id: c.name for c in ctx.plan.foreground})
        docs: dict[str, dict] = {}
        ann_id = 1
        for image_id, (item, (name, h, w, anns)) in enumerate(results, 1):
            doc = docs.setdefault(item.split, {
                "info": {"description": f"{ctx.project.name} (SegStudio export)"},
                "licenses": [], "images": [], "annotations": [], "categories": cats})
            doc["images"].append({"id": image_id, "file_name": name, "height": h, "width": w})
            for ann in anns:
                ann["id"], ann["image_id"] = ann_id, image_id
                ann_id += 1
            doc["annotations"].extend(anns)
        folder = ctx.folder("annotations")
        for split, doc in docs.items():
            with open(folder / f"instances_{split}.json", "w", encoding="utf-8") as f:
                json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))


@register_writer("yolo", label="YOLO", description="YOLO segmentation (Ultralytics)",
                 keeps_unlabeled=False)
class YoloWriter:
    """Ultralytics: images/<split>/, labels/<split>/<id>.txt, data.yaml."""

    def items(self, ctx: ExportContext, entries: list[ImageEntry], splits: dict[str, str]) -> list[Item]:
        if not ctx.plan.foreground:
            raise ExportError("YOLO needs at least one class besides background")
        self.index = {c.id: i for i, c in enumerate(ctx.plan.foreground)}
        return _per_image(entries, splits)

    def write_item(self, ctx: ExportContext, item: Item) -> str:
        from segstudio.io.formats.yolo import label_lines

        entry = item.entries[0]
        info = ctx.info(entry)
        mask = ctx.mask(entry, info)
        objects = ctx.objects(entry, info, mask)
        lines = label_lines(mask, self.index, objects,
                            ctx.plan.objects if objects is not None else frozenset())
        (ctx.folder("labels", item.split) / f"{entry.id}.txt").write_text(
            "".join(ln + "\n" for ln in lines), encoding="utf-8")
        return ctx.put_image(entry, info, ctx.image_folder("images", item.split))

    def finish(self, ctx: ExportContext, results: list[tuple[Item, Any]]) -> None:
        from segstudio.io.formats.yolo import data_yaml

        splits = iter_split_names(item for item, _ in results)
        for split in splits:               # Ultralytics wants every listed folder to exist
            ctx.image_folder("images", split)
        names = [c.name for c in ctx.plan.foreground]     # YOLO index i = names[i]
        (ctx.root / "data.yaml").write_text(data_yaml(ctx.final, splits, names), encoding="utf-8")
        # classes.txt in YOLO index order, as data.yaml (not by mask value as other formats
        # write it): line 1 is class 0, so tools that read only classes.txt do not shift by one
        (ctx.root / "classes.txt").write_text("".join(n + "\n" for n in names), encoding="utf-8")


VOC_ROOT = ("VOCdevkit", "VOC2012")     # where torchvision's VOCSegmentation(root) looks


@register_writer("voc", label="VOC", description="Pascal VOC layout")
class VocWriter(PngWriter):
    """Pascal VOC as the devkit ships it: VOCdevkit/VOC2012/{JPEGImages/<id>.jpg,
    SegmentationClass/<id>.png (indexed), ImageSets/Segmentation/{train,val,trainval,test}.txt},
    so `torchvision.datasets.VOCSegmentation(<out>, year="2012", image_set="train")` loads the
    export unchanged; classes.json and export.json stay at the top."""

    def _mask_folder(self, ctx: ExportContext, split: str) -> Path:
        return ctx.folder(*VOC_ROOT, "SegmentationClass")

    def _instance_folder(self, ctx: ExportContext, split: str) -> Path | None:
        return None      # VOC's SegmentationObject is 8-bit with 255 borders: not written

    def _put_image(self, ctx: ExportContext, entry: ImageEntry, info, split: str) -> str:
        return ctx.put_image(entry, info, ctx.image_folder(*VOC_ROOT, "JPEGImages"), jpeg=True)

    def finish(self, ctx: ExportContext, results: list[tuple[Item, Any]]) -> None:
        _write_lists(ctx, ctx.folder(*VOC_ROOT, "ImageSets", "Segmentation"), results,
                     trainval=True)


_slug = slug      # the same naming rule as image ids (core/names.py)


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(suffix_of(path))] if suffix_of(path) else name


def _group_by_file(ctx: ExportContext, entries: list[ImageEntry], splits: dict[str, str],
                   kinds: tuple[str, ...]) -> tuple[list[Item], list[ImageEntry]]:
    """Entries of multi-slice files (of `kinds`) grouped per file; returns (items, the rest)."""
    groups: dict[str, list[ImageEntry]] = {}
    names: dict[str, str] = {}
    rest = []
    for e in entries:
        record = ctx.project.series.get(e.series) if e.series is not None else None
        if record is not None and (record.kind == "dicom" and "dicom" in kinds
                                   or record.volume is not None and "nifti" in kinds):
            # a DICOM series (one item for all its files), a volume of a 4-D NIfTI file
            groups.setdefault(f"series:{record.id}", []).append(e)
            names[f"series:{record.id}"] = record.id
        elif ctx.info(e).kind in kinds:
            path = str(ctx.project.image_path(e))
            groups.setdefault(path, []).append(e)
            names[path] = _slug(_stem(Path(path)))
        else:
            rest.append(e)
    items, used = [], {e.id for e in rest}     # names of single images are taken too
    for path, group in groups.items():
        key, n = names[path], 2
        while key in used:
            key, n = f"{names[path]}-{n}", n + 1
        used.add(key)
        # a volume goes where most of its slices are: slices never straddle two splits
        split = Counter(splits[e.id] for e in group).most_common(1)[0][0]
        items.append(Item(key, split, group))
    return items, rest


def _masks_of(ctx: ExportContext, item: Item) -> dict[int | None, np.ndarray]:
    masks, why = {}, []
    for e in item.entries:
        try:
            masks[e.frame] = ctx.mask(e, ctx.info(e))
        except Skip as s:
            why.append(str(s))
    if not masks:
        raise Skip("; ".join(why))
    return masks


@register_writer("nifti", label="NIfTI", description="NIfTI .nii.gz (medical)")
class NiftiWriter:
    """masks/<split>/<name>.nii.gz: one volume per NIfTI/DICOM file, with its geometry."""

    def items(self, ctx: ExportContext, entries: list[ImageEntry], splits: dict[str, str]) -> list[Item]:
        items, rest = _group_by_file(ctx, entries, splits, ("nifti", "dicom"))
        return items + [Item(e.id, splits[e.id], [e]) for e in rest]

    def write_item(self, ctx: ExportContext, item: Item) -> str:
        from segstudio.io.formats.medical import dicom_affine, nifti_volume, write_nifti

        from segstudio.io.formats.series_export import series_record, write_series_nifti_item

        record = series_record(ctx, item)
        if record is not None and (record.kind == "dicom" or record.volume is not None):
            return write_series_nifti_item(ctx, item, record)
        first = item.entries[0]
        info = ctx.info(first)
        masks = _masks_of(ctx, item)
        fill = ctx.plan.unlabeled_value
        images = ctx.image_folder("images", item.split)
        if info.kind == "nifti":
            shape = tuple(info.extra["volume_shape"])
            affine = np.asarray(info.extra["affine"])
            ctx.put_source_file(first, images, item.key)
        elif info.kind == "dicom":
            import pydicom

            ds = pydicom.dcmread(ctx.project.image_path(first), stop_before_pixels=True)
            frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
            shape = (info.width, info.height, frames)
            affine = dicom_affine(ds)
            if affine is None:
                log.info("%s: no image plane geometry; its mask gets an identity affine",
                         first.display_name)
            masks = {k or 0: m for k, m in masks.items()}
            ctx.put_source_file(first, images, item.key)
        else:
            shape, affine = (info.width, info.height), None
            ctx.put_image(first, info, images)
        volume = nifti_volume(masks, shape, fill)
        name = f"{item.key}.nii.gz"
        write_nifti(ctx.folder("masks", item.split) / name, volume, affine)
        return name

    def finish(self, ctx: ExportContext, results: list[tuple[Item, Any]]) -> None:
        _write_lists(ctx, ctx.root, results)


@register_writer("dicom-seg", label="DICOM-SEG", description="DICOM-SEG (medical)",
                 keeps_unlabeled=False)
class DicomSegWriter:
    """masks/<split>/<name>.seg.dcm: one BINARY DICOM-SEG per DICOM file; others are skipped."""

    def items(self, ctx: ExportContext, entries: list[ImageEntry], splits: dict[str, str]) -> list[Item]:
        from segstudio.io.formats.medical import require_highdicom

        require_highdicom()
        if not ctx.plan.foreground:
            raise ExportError("DICOM-SEG needs at least one class besides background")
        items, rest = _group_by_file(ctx, entries, splits, ("dicom",))
        ctx.notes += [f"{e.display_name}: not a DICOM image; DICOM-SEG needs a DICOM source"
                      for e in rest]
        return items

    def write_item(self, ctx: ExportContext, item: Item) -> str:
        from segstudio import __version__
        from segstudio.io.formats.medical import write_dicom_seg

        from segstudio.io.formats.series_export import series_record, write_series_seg_item

        segments = [(c.id, c.name, _rgb(c.color)) for c in ctx.plan.foreground]
        record = series_record(ctx, item)
        if record is not None and record.kind == "dicom":
            return write_series_seg_item(ctx, item, record, segments, __version__)
        first = item.entries[0]
        masks = _masks_of(ctx, item)
        name = f"{item.key}.seg.dcm"
        write_dicom_seg(ctx.folder("masks", item.split) / name, ctx.project.image_path(first),
                        masks, segments, __version__)
        ctx.put_source_file(first, ctx.image_folder("images", item.split), item.key)
        return name

    def finish(self, ctx: ExportContext, results: list[tuple[Item, Any]]) -> None:
        _write_lists(ctx, ctx.root, results)

