"""Where a volume's voxels lie in the patient, and how the slices of a series stack up.

`Geometry` is the grid of one series in DICOM patient coordinates (LPS, millimetres): voxel
index (column, row, slice) -> position. `read_dicom_header` reads where one DICOM file's slice
(or each of its frames, from the functional groups) lies and how its values rescale, from the
header alone. `stack_slices` orders slice positions along the slice normal and says in plain
words what is wrong with them (gaps, uneven or repeated positions, tilt). `io.series` uses all
three; the exports in `io.formats.medical` use `Geometry`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segstudio.io.dicom import _number, _text, _whole
from segstudio.io.image_base import fail

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])   # its own inverse
GAP_FACTOR = 1.5            # a step this many times the usual spacing means missing slices
UNEVEN_FRACTION = 0.01      # steps differing by more than 1 % (and 0.01 mm) are "uneven"
TILT_DEGREES = 1.0          # slices shifted sideways by more than this angle: tilted stack
# DICOM objects with Rows/Columns that are not slices of a volume
_NOT_SLICES = {"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "SR", "PR", "KO", "REG", "DOC"}


def _unit(v) -> tuple[float, float, float]:
    a = np.asarray(v, np.float64)
    n = float(np.linalg.norm(a))
    return tuple(float(x) for x in (a / n if n > 0 else a))


@dataclass(frozen=True)
class Geometry:
    """A regular voxel grid in DICOM patient coordinates (LPS, mm).

    `row_direction` points along a row (the column index grows), `column_direction` down a
    column (the row index grows): DICOM's ImageOrientationPatient, in that order. `normal`
    points from slice k to slice k + 1. `spacing` is (row mm, column mm, slice mm): the
    distance between rows (PixelSpacing[0]), between columns (PixelSpacing[1]) and between
    slices. `origin` is the centre of voxel (0, 0, 0).
    """

    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    row_direction: tuple[float, float, float] = (1.0, 0.0, 0.0)
    column_direction: tuple[float, float, float] = (0.0, 1.0, 0.0)
    normal: tuple[float, float, float] = (0.0, 0.0, 1.0)
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def affine_lps(self) -> np.ndarray:
        """4 x 4: voxel index (column, row, slice, 1) -> patient LPS mm."""
        row_mm, col_mm, slice_mm = self.spacing
        a = np.eye(4)
        a[:3, 0] = np.asarray(self.row_direction) * col_mm
        a[:3, 1] = np.asarray(self.column_direction) * row_mm
        a[:3, 2] = np.asarray(self.normal) * slice_mm
        a[:3, 3] = self.origin
        return a

    def nifti_affine(self) -> np.ndarray:
        """The NIfTI (RAS) affine of the volume stored as (column, row, slice): LPS with x and
        y negated, as nibabel and dcm2niix convert DICOM. NIfTI's i runs along a row, as in
        dcm2niix and `io.images` (which shows slice [..., k].T); unlike dcm2niix no axis of
        the data is flipped, and unlike nibabel.nicom (rows first) columns come first."""
        return LPS_TO_RAS @ self.affine_lps()

    def position(self, col: float, row: float, slice_: float) -> np.ndarray:
        """Patient LPS mm of a voxel index (fractions allowed)."""
        return (self.affine_lps() @ np.array([col, row, slice_, 1.0]))[:3]

    @classmethod
    def from_nifti_affine(cls, affine) -> Geometry:
        """The grid of a NIfTI volume read as slices [..., k].T (rows = j, columns = i)."""
        lps = LPS_TO_RAS @ np.asarray(affine, np.float64)
        cols = [lps[:3, i] for i in range(3)]
        norms = [float(np.linalg.norm(c)) for c in cols]
        defaults = np.eye(3)
        dirs = [_unit(c) if n > 0 else tuple(defaults[i]) for i, (c, n) in enumerate(zip(cols, norms))]
        spacing = tuple(n if n > 0 else 1.0 for n in norms)
        return cls(tuple(float(x) for x in lps[:3, 3]), dirs[0], dirs[1], dirs[2],
                   (spacing[1], spacing[0], spacing[2]))


def orientation_geometry(orientation, pixel_spacing, origin, slice_mm: float) -> Geometry:
    """Geometry from ImageOrientationPatient (6 values), PixelSpacing (row, col), a position."""
    row_dir, col_dir = _unit(orientation[:3]), _unit(orientation[3:])
    normal = _unit(np.cross(row_dir, col_dir))
    return Geometry(tuple(float(x) for x in origin), row_dir, col_dir, normal,
                    (float(pixel_spacing[0]), float(pixel_spacing[1]), float(slice_mm)))


def orientation_words(orientation) -> str:
    """'axial', 'coronal', 'sagittal' or 'oblique' for a slice orientation (6 values)."""
    normal = np.abs(np.cross(orientation[:3], orientation[3:]))
    axis = int(np.argmax(normal))
    if normal[axis] < math.cos(math.radians(10)):
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


# -- stacking slices ------------------------------------------------------------------------------
@dataclass
class Stack:
    """Slices in order (indices into the caller's list), with the spacing found between them."""

    order: list[int]
    spacing: float | None                  # None: positions unknown
    problems: list[str] = field(default_factory=list)
    left_out: list[int] = field(default_factory=list)   # repeated positions not used


def _mm(x: float) -> str:
    return f"{x:.3g} mm" if abs(x) < 100 else f"{x:.1f} mm"


def stack_slices(positions: list, numbers: list, normal, tie_break: list | None = None
                 ) -> list[Stack]:
    """Order slices along `normal`; usually one stack, several when every position repeats
    the same number of times (time points or echoes of one volume).

    `positions` are LPS (3,) arrays or None; `numbers` InstanceNumbers (or frame numbers)
    or None. Positions missing from any slice: InstanceNumber order (then `tie_break`, e.g.
    file names), and a problem saying so.
    """
    n = len(positions)
    tie = tie_break if tie_break is not None else list(range(n))

    def by_number(i: int):
        return (numbers[i] is None, numbers[i] if numbers[i] is not None else 0, tie[i])

    if n == 0:
        return [Stack([], None)]
    if n == 1 and positions[0] is None:
        return [Stack([0], None, ["ImagePositionPatient is missing: its position in the patient "
                                  "is unknown"])]
    if any(p is None for p in positions):
        missing = sum(p is None for p in positions)
        what = "any slice" if missing == n else f"{missing} of {n} slices"
        basis = ("InstanceNumber" if all(x is not None for x in numbers)
                 else "InstanceNumber where given, then file name")
        return [Stack(sorted(range(n), key=by_number), None,
                      [f"ImagePositionPatient is missing from {what}: slices are ordered by "
                       f"{basis} and their positions in the patient are unknown"])]
    normal = np.asarray(normal, np.float64)
    pos = np.asarray([np.asarray(p, np.float64) for p in positions])
    depth = pos @ normal
    order = sorted(range(n), key=lambda i: (round(float(depth[i]), 4), by_number(i)))
    if n == 1:
        return [Stack(order, None)]
    # group slices at the same depth (within 1 µm... or a 1000th of the typical step)
    steps = np.diff(depth[order])
    typical = float(np.median(steps[steps > 1e-3])) if np.any(steps > 1e-3) else 0.0
    tol = max(1e-3, typical * 1e-3)
    groups: list[list[int]] = [[order[0]]]
    for i in order[1:]:
        if depth[i] - depth[groups[-1][0]] <= tol:
            groups[-1].append(i)
        else:
            groups.append([i])
    sizes = {len(g) for g in groups}
    problems: list[str] = []
    left_out: list[int] = []
    if sizes == {1}:
        stacks_orders = [[g[0] for g in groups]]
    elif len(sizes) == 1 and len(groups) > 1:
        k = sizes.pop()
        stacks_orders = [[g[t] for g in groups] for t in range(k)]
        problems.append(f"every one of its {len(groups)} positions holds {k} slices (time points "
                        f"or echoes?): split into {k} volumes by InstanceNumber")
    else:
        stacks_orders = [[g[0] for g in groups]]
        left_out = [i for g in groups for i in g[1:]]
        repeated = sum(len(g) > 1 for g in groups)
        problems.append(f"{repeated} position(s) hold more than one slice: the first of each "
                        f"(by InstanceNumber) is used, {len(left_out)} slice(s) left out")
    if len(groups) == 1:
        return [Stack(o, None, problems + ["all its slices lie at the same position"], left_out)
                for o in stacks_orders]
    spacing, more = _spacing_problems(pos, stacks_orders[0], normal)
    return [Stack(o, spacing, problems + more, left_out) for o in stacks_orders]


def _spacing_problems(pos: np.ndarray, order: list[int], normal: np.ndarray
                      ) -> tuple[float, list[str]]:
    """The usual slice spacing (median step) and what is irregular about the steps."""
    depth = pos[order] @ normal
    steps = np.diff(depth)
    median = float(np.median(steps))
    gaps = np.nonzero(steps > GAP_FACTOR * median)[0]
    regular = np.delete(steps, gaps)
    spacing = float(np.median(regular)) if regular.size else median
    problems: list[str] = []
    for g in gaps[:5]:
        missing = max(1, int(round(steps[g] / spacing)) - 1)
        problems.append(f"about {missing} slice(s) missing between slices {g + 1} and {g + 2} "
                        f"({_mm(steps[g])} apart where slices are {_mm(spacing)} apart); "
                        f"the volume closes the gap, so positions after it are off by "
                        f"{_mm(steps[g] - spacing)}")
    if len(gaps) > 5:
        problems.append(f"{len(gaps) - 5} more gap(s) in the slice positions")
    if regular.size and float(regular.max() - regular.min()) > max(0.01, UNEVEN_FRACTION * spacing):
        problems.append(f"slice spacing is uneven ({_mm(float(regular.min()))} to "
                        f"{_mm(float(regular.max()))}); the volume assumes {_mm(spacing)}")
    travel = pos[order[-1]] - pos[order[0]]
    length = float(np.linalg.norm(travel))
    if length > 0:
        angle = math.degrees(math.acos(min(1.0, abs(float(travel @ normal)) / length)))
        if angle > TILT_DEGREES:
            problems.append(f"slices are shifted sideways along the stack ({angle:.1f} degrees "
                            f"from their normal: a tilted gantry?); the volume assumes a "
                            f"straight stack")
    return spacing, problems


# -- DICOM headers: where each slice (or frame) lies ---------------------------------------------------------------------------------
@dataclass
class _Frame:
    position: np.ndarray | None
    orientation: tuple | None
    slope: float
    intercept: float
    number: int | None


@dataclass
class DicomHeader:
    path: Path
    uid: str
    rows: int
    cols: int
    modality: str | None
    description: str
    sop_uid: str | None
    study_uid: str | None
    frame_of_reference: str | None
    syntax: str | None
    pixel_spacing: tuple | None
    slice_mm: float | None          # SpacingBetweenSlices, else SliceThickness
    frames: list[_Frame]            # one for a single-frame file
    multiframe: bool


def _floats(ds, keyword: str, n: int) -> tuple | None:
    text = _text(ds, keyword) if ds is not None else None
    if not text:
        return None
    try:
        values = tuple(float(v) for v in text.split("\\"))
    except ValueError:
        return None
    values = values[:n] if len(values) >= n and all(np.isfinite(values[:n])) else None
    if values is None:
        return None
    if keyword == "ImageOrientationPatient":
        row, col = np.asarray(values[:3]), np.asarray(values[3:])
        unit = all(abs(float(np.linalg.norm(v)) - 1) < 0.05 for v in (row, col))
        if not unit or abs(float(row @ col)) > 0.05:      # not two perpendicular unit vectors
            return None
    if keyword in ("PixelSpacing", "SpacingBetweenSlices", "SliceThickness") and min(values) <= 0:
        return None
    return values


def _item(ds, keyword: str):
    """The first item of a sequence, or None."""
    seq = getattr(ds, keyword, None) if ds is not None and keyword in ds else None
    return seq[0] if seq else None


def _group(per_frame, shared, keyword: str):
    """A functional group macro: the frame's own, else the shared one."""
    return _item(per_frame, keyword) or _item(shared, keyword)


def read_dicom_header(path: Path) -> DicomHeader | None:
    """What scan_series needs from one file (no pixel data read); None for non-image objects."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        raise fail(path, "not a DICOM file with a file header (no 'DICM' marker at byte 128)") from None
    except Exception as e:
        raise fail(path, f"not a readable DICOM file ({e})") from None
    modality = (_text(ds, "Modality") or "").upper() or None
    if len(ds) == 0:
        raise fail(path, "holds nothing after its file meta header (the file may be truncated)")
    if modality in _NOT_SLICES:
        return None
    if "Rows" not in ds or "Columns" not in ds:
        sop = str(pydicom.uid.UID(_text(ds, "SOPClassUID") or "").name)
        if sop.endswith("Image Storage"):
            raise fail(path, f"a {sop.replace(' Storage', '')} without Rows and Columns: its "
                             f"header is cut short or stripped")
        return None
    rows, cols = _whole(path, ds, "Rows", None), _whole(path, ds, "Columns", None)
    if rows <= 0 or cols <= 0:
        raise fail(path, f"declares an empty image ({cols} x {rows})")
    samples = _whole(path, ds, "SamplesPerPixel", 1)
    if samples != 1:
        raise fail(path, f"holds colour images (SamplesPerPixel {samples}), which are not slices "
                         f"of a volume; open it as an image")
    declared = _whole(path, ds, "NumberOfFrames", 1)
    if declared < 1:
        raise fail(path, f"NumberOfFrames is {declared}; an image holds at least 1 frame")
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None) if \
        "PerFrameFunctionalGroupsSequence" in ds else None
    measures = _group(None, shared, "PixelMeasuresSequence")
    pixel_spacing = _floats(measures, "PixelSpacing", 2) or _floats(ds, "PixelSpacing", 2)
    between = _floats(measures, "SpacingBetweenSlices", 1) or _floats(ds, "SpacingBetweenSlices", 1)
    thick = _floats(measures, "SliceThickness", 1) or _floats(ds, "SliceThickness", 1)
    slice_mm = (between or thick or (None,))[0]
    frames = []
    if per_frame is not None and len(per_frame) >= declared and declared > 1:
        for k in range(declared):
            item = per_frame[k]
            frame_measures = _item(item, "PixelMeasuresSequence")
            if k == 0 and frame_measures is not None and pixel_spacing is None:
                pixel_spacing = _floats(frame_measures, "PixelSpacing", 2)
            plane = _group(item, shared, "PlanePositionSequence")
            orient = _group(item, shared, "PlaneOrientationSequence")
            value = _group(item, shared, "PixelValueTransformationSequence") or ds
            content = _item(item, "FrameContentSequence")
            number = _text(content, "InStackPositionNumber") if content is not None else None
            frames.append(_Frame(
                np.asarray(p) if (p := _floats(plane, "ImagePositionPatient", 3)) else None,
                _floats(orient, "ImageOrientationPatient", 6) or _floats(ds, "ImageOrientationPatient", 6),
                _slope(path, value), _number(path, value, "RescaleIntercept", 0.0),
                int(number) if number and number.isdigit() else k + 1))
    else:
        position = _floats(ds, "ImagePositionPatient", 3)
        orient = _floats(ds, "ImageOrientationPatient", 6)
        number = _text(ds, "InstanceNumber")
        try:
            number = int(float(number)) if number else None
        except ValueError:
            number = None
        base = _Frame(np.asarray(position) if position else None, orient, _slope(path, ds),
                      _number(path, ds, "RescaleIntercept", 0.0), number)
        frames = [base] if declared == 1 else [
            _Frame(None, orient, base.slope, base.intercept, k + 1) for k in range(declared)]
    return DicomHeader(path, _text(ds, "SeriesInstanceUID") or "", rows, cols, modality,
                   _text(ds, "SeriesDescription") or "", _text(ds, "SOPInstanceUID"),
                   _text(ds, "StudyInstanceUID"), _text(ds, "FrameOfReferenceUID"), syntax or None,
                   pixel_spacing, slice_mm, frames, declared > 1)


def _slope(path: Path, ds) -> float:
    slope = _number(path, ds, "RescaleSlope", 1.0)
    return 1.0 if slope == 0 else slope
