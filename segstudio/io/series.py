"""Medical volumes as series: a folder of DICOM files or a NIfTI file becomes `Series` objects.

    series, problems = scan_series(folder, cancel=token, progress=on_progress)
    s = series[0]
    s.shape                  # (slices, rows, cols)
    s.geometry.affine_lps()  # voxel (col, row, slice) -> patient mm (LPS); nifti_affine(): RAS
    s.read_slice(k)          # float32 (rows, cols); CT in HU (each slice's own rescale)
    s.read_volume(cancel=token, progress=on_progress)   # float32 (slices, rows, cols)
    s.problems               # plain words: gaps, uneven spacing, repeated positions, ...

`scan_series` reads headers only (pixels are decoded by `read_slice`). DICOM files are grouped
by SeriesInstanceUID; a group whose images differ in size or orientation is split (and says
so); slices are sorted by ImagePositionPatient along the slice normal, by InstanceNumber where
positions are missing. An Enhanced (multi-frame) DICOM file is one series, its frames placed by
their per-frame functional groups. A 3-D NIfTI file is one series; of a 4-D one, the first
volume (with a problem saying how many it holds), or every volume as its own series with
`all_volumes=True` (what adding to a project does: each volume its own item, described as
"bold.nii.gz · volume 2 of 5"). Files that are neither DICOM nor NIfTI are counted, not errors.

Keys: `Series.uid` is the SeriesInstanceUID (a split group's parts get `#1`, `#2`, ...; a
multi-frame file sharing its UID with others gets `#<file name>`; where every position holds
the same number of slices, time points or echoes, each volume gets `#t1`, `#t2`, ...); a NIfTI
series is `nifti:<path>` (4-D: `#<volume>`, its `SliceRef.frame`s numbered through the file as
`io.images.probe` numbers them: slice k of volume t is t * depth + k). Scanning the same files
again gives the same series and keys, so a project can store the slice paths and rescan them
when it reopens.
Reading: `read_slice` decodes one file (or frame) per call, a few ms for 512 x 512;
`read_volume` reads a multi-frame file in one pass. Label volumes are uint8 (slices, rows, cols), the order of
`Series.slices`; the exports (`io.formats.medical.write_series_nifti / write_series_seg`) and
the import (`read_label_volume_nifti`) take them in that order.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segstudio.core.jobs import Cancelled, CancelToken, Progress, ProgressFn
from segstudio.io.dicom import looks_like_dicom, read_dicom
from segstudio.io.image_base import ImageInfo, ImageReadError, fail, suffix_of
from segstudio.io.images import nifti_index, open_nifti
from segstudio.io.series_geometry import (DicomHeader, Geometry, orientation_geometry,
                                          orientation_words, read_dicom_header, stack_slices)

log = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass(frozen=True)
class SliceRef:
    """Where one slice's pixels are and how to turn them into values (HU for CT)."""

    path: Path
    frame: int | None            # frame of a multi-frame DICOM / slice of a NIfTI; None: the file
    slope: float = 1.0
    intercept: float = 0.0
    sop_instance_uid: str | None = None
    instance_number: int | None = None


@dataclass
class Series:
    """One volume: slices in order along the slice normal, their grid, and what is odd."""

    uid: str
    kind: str                                 # "dicom" or "nifti"
    modality: str | None
    description: str
    slices: list[SliceRef]
    rows: int
    cols: int
    geometry: Geometry
    problems: list[str] = field(default_factory=list)
    study_uid: str | None = None
    frame_of_reference_uid: str | None = None
    volume: int | None = None                 # index in a 4-D NIfTI
    transfer_syntax: str | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.slices), self.rows, self.cols

    @property
    def rescale(self) -> np.ndarray:
        """(slices, 2): each slice's (slope, intercept)."""
        return np.array([(s.slope, s.intercept) for s in self.slices], np.float64).reshape(-1, 2)

    @property
    def is_multiframe(self) -> bool:
        return self.kind == "dicom" and any(s.frame is not None for s in self.slices)

    def summary(self) -> str:
        """One line for a list: 'CT, 40 slices of 128 x 128, 0.7 x 0.9 x 2.5 mm, "Chest"'."""
        r, c, s = self.geometry.spacing
        parts = [self.modality or self.kind.upper(),
                 f"{len(self.slices)} slices of {self.cols} x {self.rows}",
                 f"{c:.3g} x {r:.3g} x {s:.3g} mm"]
        if self.description:
            parts.append(repr(self.description))
        return ", ".join(parts)

    def read_slice(self, k: int) -> np.ndarray:
        """Slice k as float32 (rows, cols), rescaled with that slice's own slope/intercept."""
        if not 0 <= k < len(self.slices):
            raise IndexError(f"slice {k} of a series of {len(self.slices)}")
        ref = self.slices[k]
        if self.kind == "nifti":
            return self._read_nifti_slice(ref)
        info = ImageInfo(ref.path, ref.frame, self.rows, self.cols, 1, "float32", "dicom",
                         extra={"frames": 1 if ref.frame is None else self._frames(ref.path),
                                "transfer_syntax": self.transfer_syntax, "rescale": None})
        data = read_dicom(ref.path, info)
        if data.shape != (self.rows, self.cols):
            raise fail(ref.path, f"decoded pixels have shape {data.shape}; the series' slices are "
                                 f"{self.rows} x {self.cols}")
        return data.astype(np.float32) * np.float32(ref.slope) + np.float32(ref.intercept)

    def read_volume(self, cancel: CancelToken | None = None,
                    progress: ProgressFn | None = None) -> np.ndarray:
        """Every slice, float32 (slices, rows, cols); progress per slice, cancel between them."""
        out = np.empty(self.shape, np.float32)
        if self.is_multiframe and len({s.path for s in self.slices}) == 1:
            return self._read_frames(out, cancel, progress)
        return self._read_each(out, cancel, progress)

    def _read_frames(self, out: np.ndarray, cancel: CancelToken | None,
                     progress: ProgressFn | None) -> np.ndarray:
        """One pass over a multi-frame file: read_slice would parse its (long) header per frame."""
        from segstudio.io.dicom import decode_failure

        path = self.slices[0].path
        where = {ref.frame: k for k, ref in enumerate(self.slices)}
        try:
            from pydicom.pixels import iter_pixels
        except ImportError:                                   # pydicom 2
            return self._read_each(out, cancel, progress)
        done = 0
        try:
            for frame, data in enumerate(iter_pixels(str(path))):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                k = where.get(frame)
                if k is None:
                    continue
                ref = self.slices[k]
                out[k] = data.astype(np.float32) * np.float32(ref.slope) + np.float32(ref.intercept)
                done += 1
                if progress is not None:
                    progress(Progress(done, len(self.slices), "reading slices"))
        except (ImageReadError, Cancelled):
            raise
        except MemoryError:
            raise fail(path, "not enough memory to decode its pixel data") from None
        except Exception as e:
            raise decode_failure(path, self.transfer_syntax, e) from None
        if done < len(self.slices):
            raise fail(path, f"its pixel data holds {done} of the {len(self.slices)} frames its "
                             f"header lists; the file is truncated")
        return out

    def _read_each(self, out, cancel, progress) -> np.ndarray:
        for k in range(len(self.slices)):
            if cancel is not None:
                cancel.raise_if_cancelled()
            out[k] = self.read_slice(k)
            if progress is not None:
                progress(Progress(k + 1, len(self.slices), "reading slices"))
        return out

    def _frames(self, path: Path) -> int:
        return self._cache.get(("frames", path), max(s.frame or 0 for s in self.slices) + 1)

    def _read_nifti_slice(self, ref: SliceRef) -> np.ndarray:
        import nibabel as nib

        try:
            if "img" not in self._cache:
                self._cache["img"] = nib.load(str(ref.path))
            img = self._cache["img"]
            # ref.frame numbers the file's slices as io.images does: of a 4-D file, volume by
            # volume, so slice k of volume t is frame t * depth + k
            index = nifti_index(img.shape, ref.frame or 0)
            if len(img.shape) == 2:
                data = np.asarray(img.dataobj)
            elif suffix_of(ref.path) == ".nii.gz":   # slicing a gzip file inflates all of it
                if "data" not in self._cache:        # this series' volume, read once
                    self._cache["data"] = np.asanyarray(img.dataobj[index[:2] + (slice(None),)
                                                                    + index[3:]])
                data = self._cache["data"][:, :, index[2]]
            else:
                data = np.asanyarray(img.dataobj[index])
        except MemoryError:
            raise fail(ref.path, "not enough memory to read it") from None
        except Exception as e:
            raise fail(ref.path, f"could not read NIfTI slice {ref.frame} ({e})") from None
        data = np.asarray(data).reshape(self.cols, self.rows)
        return np.ascontiguousarray(data.T, dtype=np.float32)


# -- scanning --------------------------------------------------------------------------------------
def _files(paths_or_folder) -> list[Path]:
    items = [paths_or_folder] if isinstance(paths_or_folder, (str, os.PathLike)) else paths_or_folder
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files += [Path(root) / n for n in sorted(names) if not n.startswith(".")]
        else:
            files.append(p)
    return list(dict.fromkeys(files))


def scan_series(paths_or_folder, cancel: CancelToken | None = None,
                progress: ProgressFn | None = None, *, all_volumes: bool = False
                ) -> tuple[list[Series], list[str]]:
    """The series in files or folders (searched recursively), from headers only.

    Returns (series, problems): problems are one line each about files that are not part
    of any series (unreadable, not images, ignored); each series has its own `problems`.
    """
    files = _files(paths_or_folder)
    problems: list[str] = []
    headers: list[DicomHeader] = []
    series: list[Series] = []
    ignored = 0
    not_images = 0
    for done, path in enumerate(files, 1):
        if cancel is not None:
            cancel.raise_if_cancelled()
        try:
            if not path.is_file():
                problems.append(f"{path}: file not found")
            elif suffix_of(path) in NIFTI_SUFFIXES:
                series += _nifti_series(path, all_volumes)
            elif looks_like_dicom(path) or suffix_of(path) in (".dcm", ".dicom"):
                header = read_dicom_header(path)
                if header is None:
                    not_images += 1
                else:
                    headers.append(header)
            else:
                ignored += 1
        except ImageReadError as e:
            problems.append(str(e))
        except Exception as e:           # a reader library's bug: one line, the traceback logged
            log.debug("scanning %s", path, exc_info=e)
            problems.append(f"{path}: could not read it ({type(e).__name__}: {e})")
        if progress is not None:
            progress(Progress(done, len(files), "reading headers"))
    series = _dicom_series(headers) + series
    if not_images:
        problems.append(f"{not_images} DICOM file(s) are not image slices (reports, structure "
                        f"sets, segmentations, ...) and were left out")
    if ignored:
        problems.append(f"{ignored} file(s) are neither DICOM nor NIfTI and were ignored")
    if not series and not problems:
        problems.append("no DICOM or NIfTI files found")
    return series, problems


# -- NIfTI -----------------------------------------------------------------------------------------
def _nifti_series(path: Path, all_volumes: bool) -> list[Series]:
    _img, shape, _dtype, affine = open_nifti(path)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) < 2 or any(n <= 0 for n in shape):
        raise fail(path, f"NIfTI data of shape {shape} is not an image or a volume")
    if len(shape) > 4:
        raise fail(path, f"NIfTI data of shape {shape} has {len(shape)} dimensions; only 3-D "
                         f"volumes and 4-D series of volumes are supported")
    problems = []
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        problems.append("its affine is degenerate; the grid is assumed to be 1 mm voxels")
        affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    geometry = Geometry.from_nifti_affine(affine)
    depth = shape[2] if len(shape) > 2 else 1
    volumes = shape[3] if len(shape) == 4 else 1
    chosen = range(volumes) if all_volumes else range(1)
    if volumes > 1 and not all_volumes:
        problems.append(f"a 4-D file of {volumes} volumes: the first is opened")
    out = []
    for t in chosen:
        if volumes == 1:
            out.append(Series(f"nifti:{path}", "nifti", None, path.name,
                              [SliceRef(path, k) for k in range(depth)], shape[1], shape[0],
                              geometry, list(problems)))
            continue
        # the slices of volume t are the file's items t * depth ... (io.images numbering)
        out.append(Series(f"nifti:{path}#{t}", "nifti", None,
                          f"{path.name} · volume {t + 1} of {volumes}",
                          [SliceRef(path, t * depth + k) for k in range(depth)],
                          shape[1], shape[0], geometry, list(problems), volume=t))
    return out


# -- DICOM series ----------------------------------------------------------------------------------
def _dicom_series(headers: list[DicomHeader]) -> list[Series]:
    by_uid: dict[str, list[DicomHeader]] = defaultdict(list)
    for h in headers:
        by_uid[h.uid].append(h)
    out: list[Series] = []
    for uid, group in by_uid.items():
        notes = [] if uid else [f"{len(group)} file(s) have no SeriesInstanceUID: grouped together"]
        singles = [h for h in group if not h.multiframe]
        multis = [h for h in group if h.multiframe]
        for h in multis:
            key = uid if len(multis) == 1 and not singles else f"{uid}#{h.path.name}"
            out += _build(key, [(h, k) for k in range(len(h.frames))], notes)
        parts: dict[tuple, list[DicomHeader]] = defaultdict(list)
        for h in singles:
            o = h.frames[0].orientation
            parts[(h.rows, h.cols, tuple(round(v, 3) for v in o) if o else None)].append(h)
        ordered = sorted(parts.items(), key=lambda kv: -len(kv[1]))
        for n, (key, hs) in enumerate(ordered, 1):
            more = list(notes)
            if len(ordered) > 1:
                sizes = ", ".join(f"{len(v)} of {k[1]} x {k[0]}"
                                  + (f" {orientation_words(k[2])}" if k[2] else "")
                                  for k, v in ordered)
                more.append(f"series {uid or '(no UID)'} mixes image sizes or orientations "
                            f"({sizes}): split into {len(ordered)} series; this is part {n}")
            out += _build(f"{uid}#{n}" if len(ordered) > 1 else uid, [(h, 0) for h in hs], more)
    return out


def _build(uid: str, members: list[tuple[DicomHeader, int]], notes: list[str]) -> list[Series]:
    """Series from (header, frame) members of one size and orientation."""
    first = members[0][0]
    frames = [h.frames[k] for h, k in members]
    orientation = next((f.orientation for f in frames if f.orientation), None)
    problems = list(notes)
    if orientation is None:
        problems.append("ImageOrientationPatient is missing or unusable: axial slices are assumed")
        orientation = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    elif first.multiframe and len({tuple(np.round(f.orientation, 3)) for f in frames if f.orientation}) > 1:
        problems.append("its frames have different orientations; the first frame's is used")
    pixel_spacing = first.pixel_spacing
    if pixel_spacing is None:
        problems.append("PixelSpacing is missing or unusable: 1 mm pixels are assumed")
        pixel_spacing = (1.0, 1.0)
    probe = orientation_geometry(orientation, pixel_spacing, (0, 0, 0), 1.0)
    stacks = stack_slices([f.position for f in frames], [f.number for f in frames], probe.normal,
                          tie_break=[(str(h.path), k) for h, k in members])
    out = []
    for t, stack in enumerate(stacks):
        spacing = stack.spacing
        more = list(problems) + stack.problems
        if spacing is None:
            spacing = first.slice_mm or 1.0
            if len(stack.order) > 1:
                more.append(f"slice spacing taken from the header ({spacing:.3g} mm)"
                            if first.slice_mm else "slice spacing unknown: 1 mm is assumed")
        start = frames[stack.order[0]].position
        geometry = orientation_geometry(orientation, pixel_spacing,
                                        start if start is not None else (0.0, 0.0, 0.0), spacing)
        slices = [SliceRef(members[i][0].path, members[i][1] if first.multiframe else None,
                           frames[i].slope, frames[i].intercept,
                           members[i][0].sop_uid, frames[i].number) for i in stack.order]
        key = uid if len(stacks) == 1 else f"{uid}#t{t + 1}"
        s = Series(key, "dicom", first.modality, first.description, slices, first.rows,
                   first.cols, geometry, more, first.study_uid, first.frame_of_reference,
                   transfer_syntax=first.syntax)
        if first.multiframe:
            s._cache[("frames", first.path)] = len(first.frames)
        out.append(s)
    return out
