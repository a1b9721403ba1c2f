"""Exports of a volume (a project series): one NIfTI label volume with the series' affine and
one DICOM-SEG referencing every source instance, whatever the number of slice files.

The label volume is (slices, rows, cols) in the series' slice order; slices not in the
project or not labelled hold the export's unlabeled value (NIfTI) or no segment (DICOM-SEG).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from segstudio.io.adding import source_series
from segstudio.io.formats.base import ExportContext, Item, Skip, place_file
from segstudio.io.series_geometry import LPS_TO_RAS

log = logging.getLogger(__name__)


def series_record(ctx: ExportContext, item: Item):
    """The SeriesRecord of an item made of one series' slices, or None."""
    sid = item.entries[0].series
    return ctx.project.series.get(sid) if sid is not None else None


def label_volume(ctx: ExportContext, item: Item, record, fill: int) -> np.ndarray:
    """(slices, rows, cols) uint8 masks in slice order; Skip when no slice has one."""
    volume = np.full((record.slices, record.rows, record.cols), fill, np.uint8)
    why, any_mask = [], False
    for e in item.entries:
        if e.slice is None or not 0 <= e.slice < record.slices:
            continue
        try:
            mask = ctx.mask(e, ctx.info(e))
        except Skip as s:
            why.append(str(s))
            continue
        if mask.shape != volume.shape[1:]:
            why.append(f"{e.display_name}: mask {mask.shape} does not fit the series' "
                       f"{record.rows} x {record.cols} slices")
            continue
        volume[e.slice] = mask
        any_mask = True
    if not any_mask:
        raise Skip("; ".join(why) or f"series {record.id}: no slice has a mask")
    return volume


def nifti_affine(record) -> np.ndarray:
    return LPS_TO_RAS @ record.affine


def write_series_nifti_item(ctx: ExportContext, item: Item, record) -> str:
    """masks/<split>/<series>.nii.gz and, unless images are left out, the image volume
    (the slices' values, HU for CT, as float32) beside it with the same affine."""
    from segstudio.io.formats.medical import write_nifti

    labels = label_volume(ctx, item, record, ctx.plan.unlabeled_value)
    affine = nifti_affine(record)
    name = f"{item.key}.nii.gz"
    # NIfTI data is (column, row, slice): the slices read back transposed, as io.images reads
    write_nifti(ctx.folder("masks", item.split) / name,
                np.ascontiguousarray(labels.transpose(2, 1, 0)), affine)
    if ctx.options.images != "none":
        _write_image_volume(ctx, item, record, affine,
                            ctx.image_folder("images", item.split) / name)
    return name


def _write_image_volume(ctx: ExportContext, item: Item, record, affine: np.ndarray,
                        path: Path) -> None:
    import nibabel as nib

    volume = np.zeros((record.slices, record.rows, record.cols), np.float32)
    for e in ctx.project.slices_of(record.id):
        if e.slice is not None and 0 <= e.slice < record.slices:
            data = np.asarray(ctx.project.read_image(e).data, np.float32)
            if data.ndim == 3:
                data = data.mean(axis=2)
            volume[e.slice] = data
    img = nib.Nifti1Image(np.ascontiguousarray(volume.transpose(2, 1, 0)), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))


def write_series_seg_item(ctx: ExportContext, item: Item, record, segments: list,
                          software_version: str) -> str:
    """masks/<split>/<series>.seg.dcm: one DICOM-SEG for the whole series, and the source
    files under images/<split>/<series>/ unless images are left out."""
    from segstudio.io.formats.medical import SeriesExportError, write_series_seg

    try:
        series = source_series(ctx.project, record)
    except ValueError as e:
        raise Skip(str(e)) from None
    by_file = {(str(ctx.project.image_path(e).resolve()), e.frame): e
               for e in ctx.project.slices_of(record.id)}
    labels = label_volume(ctx, item, record, 0)
    # the project's slice order and the re-read series' order agree; map by file to be sure
    ordered = np.zeros((len(series.slices), series.rows, series.cols), np.uint8)
    for k, ref in enumerate(series.slices):
        e = by_file.get((str(Path(ref.path).resolve()), ref.frame))
        if e is not None and e.slice is not None and e.slice < labels.shape[0]:
            ordered[k] = labels[e.slice]
    ordered[ordered == ctx.plan.unlabeled_value] = 0
    name = f"{item.key}.seg.dcm"
    try:
        write_series_seg(ctx.folder("masks", item.split) / name, series, ordered, segments,
                         software_version)
    except SeriesExportError as e:
        raise Skip(str(e)) from None
    if ctx.options.images != "none":
        folder = ctx.image_folder("images", item.split, item.key)
        for ref in series.slices:
            place_file(Path(ref.path), folder / Path(ref.path).name, ctx.options.images)
    return name
