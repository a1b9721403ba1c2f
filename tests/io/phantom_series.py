"""Generated CT series with a known ellipsoid phantom, written with pydicom as scanners do.

The HU value of slice k is known exactly (`Phantom.hu`), every slice has its own rescale
slope/intercept, the orientation is oblique and the spacing anisotropic, and the files are
written in shuffled order under shuffled names, so a reader that trusts file order, file
names or one slice's rescale fails the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2.1"


def _rotation(ax: float, ay: float) -> np.ndarray:
    """About x by ax, then about y by ay (degrees)."""
    a, b = math.radians(ax), math.radians(ay)
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    return ry @ rx


@dataclass
class Phantom:
    """What was written: the truth the tests compare against."""

    hu: np.ndarray                   # float32 (slices, rows, cols), in true slice order
    inside: np.ndarray               # bool, the ellipsoid
    row_direction: np.ndarray
    column_direction: np.ndarray
    normal: np.ndarray
    origin: np.ndarray               # position of slice 0, voxel (0, 0)
    spacing: tuple[float, float, float]   # (row mm, col mm, slice mm)
    series_uid: str
    files: list[Path] = field(default_factory=list)      # files[k]: slice k (None if left out)
    sop_uids: list[str] = field(default_factory=list)

    def affine_lps(self) -> np.ndarray:
        a = np.eye(4)
        a[:3, 0] = self.row_direction * self.spacing[1]
        a[:3, 1] = self.column_direction * self.spacing[0]
        a[:3, 2] = self.normal * self.spacing[2]
        a[:3, 3] = self.origin
        return a


def make_phantom(n: int = 40, rows: int = 128, cols: int = 128,
                 spacing: tuple[float, float, float] = (0.7, 0.9, 2.5),
                 angles: tuple[float, float] = (20.0, -12.0),
                 origin=(-60.0, -85.5, 130.25)) -> Phantom:
    """HU: air -1000 + k outside, an ellipsoid of 40 + 5 k inside (k = slice), so every slice
    differs from its neighbours and the order can be checked from the values alone."""
    k, r, c = np.meshgrid(np.arange(n), np.arange(rows), np.arange(cols), indexing="ij")
    inside = (((k - n * 0.5) / (n * 0.3)) ** 2 + ((r - rows * 0.5) / (rows * 0.3)) ** 2
              + ((c - cols * 0.55) / (cols * 0.2)) ** 2) <= 1
    hu = np.where(inside, 40.0 + 5 * k, -1000.0 + k).astype(np.float32)
    rot = _rotation(*angles)
    row_dir, col_dir = rot @ [1.0, 0, 0], rot @ [0, 1.0, 0]
    return Phantom(hu, inside, row_dir, col_dir, np.cross(row_dir, col_dir),
                   np.asarray(origin, np.float64), spacing, generate_uid())


def _rescale(k: int) -> tuple[float, float]:
    """Each slice its own (slope, intercept): a reader using one slice's for all is wrong."""
    return (1.0, 0.5, 2.0)[k % 3], (-1024.0, -1000.0, -1200.0, -1010.0)[k % 4]


def _ds(text: float) -> str:
    return f"{text:.10g}"


def _base(ph: Phantom, sop_class: str, study: str, frame_of_reference: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, ph.series_uid
    ds.FrameOfReferenceUID = frame_of_reference
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Ellipsoid", "P1", "", "O"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", ""
    ds.ReferringPhysicianName = ""
    ds.Modality, ds.SeriesNumber, ds.SeriesDescription = "CT", 3, "Phantom 2.5 mm"
    ds.Manufacturer = "SegStudio tests"
    ds.Rows, ds.Columns = ph.hu.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    return ds


def _stored(ph: Phantom, k: int) -> np.ndarray:
    slope, intercept = _rescale(k)
    return np.round((ph.hu[k] - intercept) / slope).astype(np.int16)


def write_ct_series(folder: Path, ph: Phantom | None = None, *, seed: int = 0,
                    skip: tuple[int, ...] = (), positions: bool = True) -> Phantom:
    """One CT file per slice in `folder`, written in shuffled order under random names."""
    ph = ph or make_phantom()
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = ph.hu.shape[0]
    order = rng.permutation(n)
    study, frame_of_reference = generate_uid(), generate_uid()
    orientation = [_ds(v) for v in (*ph.row_direction, *ph.column_direction)]
    ph.files, ph.sop_uids = [None] * n, [None] * n
    for k in order:
        if k in skip:
            continue
        ds = _base(ph, CT_IMAGE, study, frame_of_reference)
        ds.InstanceNumber = int(k) + 1
        if positions:
            ds.ImagePositionPatient = [_ds(v) for v in ph.origin + k * ph.spacing[2] * ph.normal]
        ds.ImageOrientationPatient = orientation
        ds.PixelSpacing = [_ds(ph.spacing[0]), _ds(ph.spacing[1])]
        ds.SliceThickness = _ds(ph.spacing[2])
        ds.RescaleSlope, ds.RescaleIntercept = (_ds(v) for v in _rescale(int(k)))
        ds.RescaleType = "HU"
        ds.PixelData = _stored(ph, int(k)).tobytes()
        path = folder / f"IM{rng.integers(0, 10**8):08d}"     # no suffix, as scanners write
        ds.save_as(path, enforce_file_format=True)
        ph.files[k], ph.sop_uids[k] = path, ds.SOPInstanceUID
    return ph


def write_enhanced_ct(path: Path, ph: Phantom | None = None, *, seed: int = 0) -> Phantom:
    """All slices as frames of one Enhanced CT file, frames stored in shuffled order; geometry
    in the functional groups: shared PixelMeasures/PlaneOrientation, per-frame PlanePosition
    and PixelValueTransformation."""
    ph = ph or make_phantom()
    rng = np.random.default_rng(seed)
    n = ph.hu.shape[0]
    order = rng.permutation(n)
    ds = _base(ph, ENHANCED_CT_IMAGE, generate_uid(), generate_uid())
    ds.InstanceNumber = 1
    ds.NumberOfFrames = n
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.ContentDate, ds.ContentTime, ds.AcquisitionDateTime = "20260101", "120000", "20260101120000"
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [_ds(ph.spacing[0]), _ds(ph.spacing[1])]
    measures.SliceThickness = _ds(ph.spacing[2])
    measures.SpacingBetweenSlices = _ds(ph.spacing[2])
    shared.PixelMeasuresSequence = Sequence([measures])
    orient = Dataset()
    orient.ImageOrientationPatient = [_ds(v) for v in (*ph.row_direction, *ph.column_direction)]
    shared.PlaneOrientationSequence = Sequence([orient])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    pixels = []
    for k in order:
        item = Dataset()
        plane = Dataset()
        plane.ImagePositionPatient = [_ds(v) for v in ph.origin + k * ph.spacing[2] * ph.normal]
        item.PlanePositionSequence = Sequence([plane])
        value = Dataset()
        value.RescaleSlope, value.RescaleIntercept = (_ds(v) for v in _rescale(int(k)))
        value.RescaleType = "HU"
        item.PixelValueTransformationSequence = Sequence([value])
        content = Dataset()
        content.InStackPositionNumber = int(k) + 1
        content.StackID = "1"
        item.FrameContentSequence = Sequence([content])
        per_frame.append(item)
        pixels.append(_stored(ph, int(k)))
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.stack(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    ph.files = [path] * n
    ph.sop_uids = [ds.SOPInstanceUID] * n
    return ph
