"""Import of NIfTI label volumes as the masks of a project's volumes (what 3D Slicer, ITK-SNAP,
nnU-Net and dcm2niix-based pipelines write: one .nii.gz of class ids per series).

A label file matches a series by the series' id or name, by the stem of the series' own NIfTI
file (not for the volumes of a 4-D file, which share it: "bold_vol2.nii.gz" names the second),
or, with a single volume in the project, that one. Its grid is checked against the
series (`io.formats.medical.read_label_volume_nifti`: flipped or swapped axes are turned back,
with a note). Values are class ids: named by classes.json / classes.txt beside the files, else
by the project's classes with those ids (unknown values become "class <v>", mapped or added as
in every import).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segstudio.core.classes import UNLABELED
from segstudio.core.jobs import CancelToken
from segstudio.io.adding import source_series
from segstudio.io.formats import FormatError
from segstudio.io.formats.base import register_reader
from segstudio.io.formats.import_base import Found, ImportOptions, Planned, unmatched
from segstudio.io.formats.readers import class_list

NIFTI = (".nii", ".nii.gz")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in NIFTI:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _label_files(src: Path) -> list[Path]:
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise FormatError(f"{src}: no such file or folder")
    folder = next((src / s for s in ("labelsTr", "masks", "labels") if (src / s).is_dir()), src)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(NIFTI))
    if not files:
        raise FormatError(f"{src}: holds no .nii or .nii.gz label volumes")
    return files


def _series_for(project, path: Path):
    stem = _stem(path).casefold()
    for sid, record in project.series.items():
        names = {sid.casefold(), record.description.casefold()}
        if record.uid.startswith("nifti:") and record.volume is None:
            # (a volume of a 4-D file goes by its own name: the file's stem names them all)
            names.add(_stem(Path(record.uid[len("nifti:"):].split("#")[0])).casefold())
        # nnU-Net names images <case>_0000.nii.gz and labels <case>.nii.gz
        if stem in names or f"{stem}_0000" in names:
            return record
    return next(iter(project.series.values())) if len(project.series) == 1 else None


@register_reader("nifti-volume", label="NIfTI label volume",
                 description="NIfTI label volumes (.nii.gz of class ids), one per series")
def plan_nifti_volumes(project, src: Path, fill: int, options: ImportOptions, found: Found,
                       cancel: CancelToken) -> tuple[list[Planned], set[str]]:
    from segstudio.io.formats.medical import SeriesExportError, read_label_volume_nifti

    if not project.series:
        raise FormatError("the project holds no volume (DICOM series or NIfTI volume) for "
                          "label volumes to go to; add the images as a folder first")
    listed = class_list(src if src.is_dir() else src.parent)
    if listed is not None:
        by_value, found.listing = dict(listed[0]), listed[1]
    else:
        by_value = {c.id: c.name for c in project.classes}
    names_of = dict(by_value)
    plans: list[Planned] = []
    used: set[int] = set()
    for path in _label_files(src):
        cancel.raise_if_cancelled()
        record = _series_for(project, path)
        if record is None:
            unmatched(str(path), options, found)
            continue
        try:
            series = source_series(project, record)
        except ValueError as e:
            raise FormatError(str(e)) from None
        try:
            labels, notes = read_label_volume_nifti(path, series)
        except SeriesExportError as e:
            raise FormatError(f"{path}: {e}") from None
        found.warnings += [f"{path.name}: {n}" for n in notes]
        values = set(np.unique(labels).tolist()) - {UNLABELED}
        for v in sorted(values - set(by_value)):
            names_of[v] = f"class {v}"
            found.unnamed_names.add(f"class {v}")
            found.unnamed.setdefault(str(path), []).append(v)
        used |= values
        by_file = {(str(Path(ref.path).resolve()), ref.frame): k
                   for k, ref in enumerate(series.slices)}
        for entry in project.slices_of(record.id):
            k = by_file.get((str(project.image_path(entry).resolve()), entry.frame))
            if k is None:
                continue

            def build(class_of: dict[str, int], k: int = k, labels=labels) -> np.ndarray:
                lut = np.full(256, UNLABELED, np.uint8)
                for v, name in names_of.items():
                    if name in class_of and 0 <= v < 256:
                        lut[v] = class_of[name]
                return lut[np.clip(labels[k], 0, 255)]
            plans.append(Planned(entry, f"{path} [slice {k + 1}]", build))
    found.raw_ids.update({str(v): names_of[v] for v in used})
    return plans, {names_of[v] for v in used}
