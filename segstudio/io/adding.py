"""Adding image files to a project: the slow scan (probing, grouping volumes, copying) that a
worker runs, and the cheap add on the owning thread.

Files that form a volume become one series (`SeriesRecord`) of slices: DICOM files are grouped
by series and ordered along the slice normal (`segstudio.io.series.scan_series`), a 3-D NIfTI
file is one series, a 4-D one (time points, echoes) one series per volume ("bold.nii.gz ·
volume 2 of 5"). Every slice of a series gets the series' split, so a volume never has slices
on both sides of a train/validation split; the volumes of one 4-D file, near-duplicates, all
get one split. A DICOM series of one image (a radiograph) and 2-D files stay plain images.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segstudio.core.jobs import CancelToken, Progress, ProgressFn
from segstudio.core.names import slug
from segstudio.io.atomic import same_file
from segstudio.io.dicom import looks_like_dicom
from segstudio.io.entries import ImageEntry, ImageScan, SeriesRecord
from segstudio.io.image_base import suffix_of
from segstudio.io.images import ImageReadError, is_supported, probe

log = logging.getLogger(__name__)

_VOLUME_SUFFIXES = (".nii", ".nii.gz")


def split_for(key: str, val_fraction: float) -> str:
    """Deterministic split from an id, so adding images never reshuffles the old ones."""
    h = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if h < val_fraction else "train"


def _volume_candidate(path: Path) -> bool:
    return suffix_of(path) in _VOLUME_SUFFIXES or suffix_of(path) in (".dcm", ".dicom") \
        or (not is_supported(path) and looks_like_dicom(path))


@dataclass
class _Adder:
    project: Any
    copy: bool
    known: set[tuple[str, int | None]]
    scan: ImageScan
    unsupported: list[Path] = field(default_factory=list)

    def stored(self, src: Path, subfolder: str | None = None) -> tuple[str, str]:
        dest = self.copy_in(src, subfolder) if self.copy else src
        return self.project.stored_path(dest), str(dest.resolve())

    def copy_in(self, src: Path, subfolder: str | None) -> Path:
        dest_dir = self.project.root / "images"
        if subfolder:
            dest_dir = dest_dir / subfolder
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest, n = dest_dir / src.name, 2
        while dest.exists() and not same_file(dest, src):
            dest = dest_dir / f"{src.stem}-{n}{''.join(src.suffixes)}"
            n += 1
        if not dest.exists():
            shutil.copy2(src, dest)
        return dest

    def add_file(self, src: Path) -> None:
        if not is_supported(src) and not looks_like_dicom(src):
            if src.suffix:          # a file without a suffix that is no DICOM: not an image
                self.unsupported.append(src)
            return
        try:
            infos = probe(src, self.project.max_pixels)
        except ImageReadError as e:
            self.scan.problems.append(f"{e}; skipped")
            return
        except Exception as e:      # a reader bug must not leave a half-added folder
            log.exception("probing %s failed", src)
            self.scan.problems.append(f"{src}: cannot be read ({e}); skipped")
            return
        stored, resolved = self.stored(src)
        frames = [i.frame for i in infos if (resolved, i.frame) not in self.known]
        if frames:
            self.scan.found.append((stored, resolved, frames))

    def add_volumes(self, files: list[Path], cancel: CancelToken | None,
                    on_progress: ProgressFn | None) -> set[Path]:
        """Scan DICOM/NIfTI files for series; returns the files that went into one. The rest
        (one-image series, reports, colour photos, unreadable headers) go on to the file
        reader, which adds them as images or says why not."""
        from segstudio.io.series import scan_series

        if not files:
            return set()
        found, _problems = scan_series(files, cancel=cancel, progress=on_progress,
                                       all_volumes=True)
        used: set[Path] = set()
        probed: dict[Path, str | None] = {}     # the volumes of a 4-D file: one probe, one copy
        kept: dict[Path, tuple[str, str]] = {}
        for s in found:
            if len(s.slices) < 2:
                continue                     # one image: added as a file
            first = s.slices[0].path
            if first not in probed:
                try:
                    probe(first, self.project.max_pixels)
                    probed[first] = None
                except ImageReadError as e:
                    probed[first] = f"{e}; series skipped"
                    self.scan.problems.append(probed[first])
            if probed[first] is not None:
                used.update(ref.path for ref in s.slices)
                continue
            record = record_of(s)
            slices = []
            for k, ref in enumerate(s.slices):
                if s.kind == "dicom":
                    stored, resolved = self.stored(ref.path, record.id)
                else:
                    if ref.path not in kept:
                        kept[ref.path] = self.stored(ref.path)
                    stored, resolved = kept[ref.path]
                if (resolved, ref.frame) not in self.known:
                    slices.append((stored, resolved, ref.frame, k))
            used.update(ref.path for ref in s.slices)
            if slices:
                self.scan.series.append((record, slices))
            for problem in s.problems:
                self.scan.notes.append(f"{record.id}: {problem}")
        return used


def record_of(series) -> SeriesRecord:
    """The manifest record of an `io.series.Series` (its id proposed from its description)."""
    name = series.description or series.modality or "series"
    if series.kind == "nifti":
        name = _nifti_stem(series.slices[0].path.name)
        if series.volume is not None:
            name = f"{name}_vol{series.volume + 1}"
    return SeriesRecord(slug(name, "series"), series.uid, series.kind, series.modality,
                        series.description, len(series.slices), series.rows, series.cols,
                        tuple(float(x) for x in series.geometry.spacing),
                        tuple(float(x) for x in series.geometry.affine_lps().ravel()),
                        tuple(series.problems),
                        tuple((float(r.slope), float(r.intercept)) for r in series.slices)
                        if series.is_multiframe else None, series.volume)


def _nifti_stem(name: str) -> str:
    for suffix in _VOLUME_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def source_series(project: Any, record: SeriesRecord):
    """A project series as an `io.series.Series`, read again from the headers of all its
    slice files (labelled or not); ValueError when they no longer form that series."""
    from segstudio.io.series import scan_series

    paths = sorted({project.image_path(e) for e in project.slices_of(record.id)})
    found, problems = scan_series(paths, all_volumes=True)
    match = [s for s in found if s.uid == record.uid]
    if not match and record.kind == "nifti":
        # the file moved (its path is in the uid): the volume of the file the slices name
        match = [s for s in found if s.kind == "nifti" and s.volume == record.volume]
    if not match:
        match = [s for s in found if s.uid.split("#")[0] == record.uid.split("#")[0]
                 and s.volume == record.volume]
    if not match:
        raise ValueError(f"series {record.id}: its files no longer form the series "
                         f"({'; '.join(problems) or 'other series found'})")
    return max(match, key=lambda s: len(s.slices))


def scan_images(project: Any, paths: list[Path], *, copy: bool = False,
                known: set[tuple[str, int | None]] | None = None,
                on_progress: ProgressFn | None = None,
                cancel: CancelToken | None = None) -> ImageScan:
    """The slow half of adding images (probing, grouping, copying), safe on a worker: the
    project itself is not changed; `add_scanned` then adds the result on the owning thread."""
    adder = _Adder(project, copy, project.known_files() if known is None else known, ImageScan())
    paths = [Path(p) for p in paths]
    volumes = [p for p in paths if p.is_file() and _volume_candidate(p)]
    in_series = {q.resolve() for q in adder.add_volumes(volumes, cancel, on_progress)}
    rest = [p for p in paths if p.resolve() not in in_series]
    for k, src in enumerate(rest):
        if cancel is not None:
            cancel.raise_if_cancelled()
        if on_progress is not None:
            on_progress(Progress(k, len(rest), src.name))
        adder.add_file(src)
    skipped = adder.unsupported
    if len(skipped) == 1:
        adder.scan.problems.append(f"{skipped[0]}: not a supported image type; skipped")
    elif skipped:
        kinds = sorted({suffix_of(p) or "(no suffix)" for p in skipped})
        adder.scan.problems.append(f"{len(skipped)} files are not images SegStudio reads "
                                   f"({', '.join(kinds[:6])}{', ...' if len(kinds) > 6 else ''}); "
                                   f"skipped")
    return adder.scan


def _unique(base: str, used: set[str]) -> str:
    candidate, n = base, 2
    while candidate in used:
        candidate, n = f"{base}-{n}", n + 1
    return candidate


def _file_key(record: SeriesRecord) -> str:
    """The 4-D NIfTI file a volume's record comes from ("nifti:<file>#<volume>")."""
    return record.uid[len("nifti:"):].rpartition("#")[0]


def _file_splits(project: Any) -> dict[str, str]:
    """The split of the volumes of each 4-D file already in the project."""
    out: dict[str, str] = {}
    for e in project.images:
        record = project.series.get(e.series) if e.series is not None else None
        if record is not None and record.volume is not None:
            out.setdefault(_file_key(record), e.split)
    return out


def add_scanned(project: Any, scan: ImageScan) -> list[ImageEntry]:
    """Add what `scan_images` found (ids, splits, one manifest write); cheap."""
    project.problems += scan.problems
    project.notes += scan.notes
    added: list[ImageEntry] = []
    known = project.known_files()
    used = {e.id for e in project.images}
    val_fraction = float(project.settings["val_fraction"])
    file_splits = _file_splits(project)

    def add(entry: ImageEntry, stored: str, resolved: str) -> None:
        project.images.append(entry)
        project.register_resolved(stored, resolved)
        known.add((resolved, entry.frame))
        used.add(entry.id)
        added.append(entry)

    for record, slices in scan.series:
        existing = project.series_by_uid(record.uid)
        if existing is None:
            taken = set(project.series) | used
            record = SeriesRecord(**{**record.__dict__, "id": _unique(record.id, taken)})
            project.series[record.id] = record
        else:
            record = existing
        if record.volume is None:
            split = split_for(record.id, val_fraction)
        else:
            # every volume of one 4-D file in one split: time points of a scan are
            # near-duplicates and must not straddle train and validation
            key = _file_key(record)
            split = file_splits.setdefault(key, split_for(slug(_nifti_stem(Path(key).name)),
                                                          val_fraction))
        width = max(3, len(str(record.slices)))
        for stored, resolved, frame, k in slices:
            if (resolved, frame) in known:
                continue
            image_id = _unique(f"{record.id}_{k + 1:0{width}d}", used)
            add(ImageEntry(image_id, stored, frame, split, series=record.id, slice=k),
                stored, resolved)
    for stored, resolved, frames in scan.found:
        dest = Path(stored)
        for frame in frames:
            if (resolved, frame) in known:
                continue
            stem = slug(dest.name[: -len(".nii.gz")] if dest.name.lower().endswith(".nii.gz")
                        else dest.stem)
            image_id = _unique(stem if frame is None else f"{stem}_{frame:03d}", used)
            add(ImageEntry(image_id, stored, frame, split_for(image_id, val_fraction)),
                stored, resolved)
    if added:
        project.save()
    return added
