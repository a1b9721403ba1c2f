"""NIfTI masks with the source geometry, and DICOM-SEG objects (highdicom) for DICOM sources.

Masks are (rows, columns); NIfTI stores (i, j) with i along a row, so a slice is written
transposed, the inverse of how `io.images` reads NIfTI slices.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def dicom_affine(ds) -> np.ndarray | None:
    """NIfTI (RAS) affine of a single-frame DICOM image plane, or None without geometry."""
    try:
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient], np.float64)
        ipp = np.asarray([float(v) for v in ds.ImagePositionPatient], np.float64)
        row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    except (AttributeError, TypeError, ValueError):
        return None
    row_dir, col_dir = iop[:3], iop[3:]     # along a row (x grows), down a column (y grows)
    normal = np.cross(row_dir, col_dir)
    thickness = float(getattr(ds, "SliceThickness", 1.0) or 1.0)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing       # i: column index
    lps[:3, 1] = col_dir * row_spacing       # j: row index
    lps[:3, 2] = normal * thickness
    lps[:3, 3] = ipp
    return _LPS_TO_RAS @ lps


def nifti_volume(slices: dict[int | None, np.ndarray], volume_shape: tuple[int, ...],
                 fill: int) -> np.ndarray:
    """A uint8 NIfTI array of `volume_shape` (x, y[, z]) from per-slice (rows, cols) masks."""
    vol = np.full(volume_shape, fill, np.uint8)
    for k, mask in slices.items():
        if len(volume_shape) == 2:
            vol[:, :] = mask.T
        else:
            vol[:, :, k or 0] = mask.T
    return vol


def write_nifti(path: Path, volume: np.ndarray, affine: np.ndarray | None) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(volume, np.eye(4) if affine is None else np.asarray(affine, np.float64))
    img.header.set_data_dtype(np.uint8)
    code = 1 if affine is not None else 0       # 1 = scanner coordinates, 0 = unknown
    img.set_qform(img.affine, code=code)
    img.set_sform(img.affine, code=code)
    nib.save(img, str(path))


# -- DICOM-SEG -------------------------------------------------------------------------------
def require_highdicom():
    try:
        import highdicom
    except ImportError:
        raise ImportError("DICOM-SEG export needs highdicom, which is not installed; install "
                          "it with `pip install highdicom` (or `pip install "
                          "segstudio[dicom-seg]`)") from None
    return highdicom


def write_dicom_seg(path: Path, source: Path, frames: dict[int | None, np.ndarray],
                    segments: list[tuple[int, str, tuple[int, int, int]]],
                    software_version: str) -> int:
    """Write a BINARY DICOM-SEG of one DICOM file; returns the number of segments.

    `frames` maps frame index (None for a single-frame file) to a mask of class ids;
    `segments` lists (class id, name, rgb) in the order they get segment numbers 1..n.
    Pixels of other values (background, unlabeled) are left out.
    """
    hd = require_highdicom()
    import pydicom
    from pydicom.sr.codedict import codes

    ds = pydicom.dcmread(source)
    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    rows, cols = int(ds.Rows), int(ds.Columns)
    labels = np.zeros((n_frames, rows, cols), np.uint8)
    lut = np.zeros(256, np.uint8)
    for number, (cid, _name, _rgb) in enumerate(segments, 1):
        lut[cid] = number
    for frame, mask in frames.items():
        labels[frame or 0] = lut[mask]
    descriptions = []
    for number, (_cid, name, rgb) in enumerate(segments, 1):
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=name[:64],
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            display_color=hd.color.CIELabColor.from_rgb(*rgb)))
    seg = hd.seg.Segmentation(
        source_images=[ds], pixel_array=labels if n_frames > 1 else labels[0],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(), series_number=900, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="SegStudio", manufacturer_model_name="SegStudio",
        software_versions=software_version, device_serial_number="0",
        omit_empty_frames=False)
    seg.save_as(path)
    return len(descriptions)


def read_dicom_seg(path: Path) -> tuple[np.ndarray, dict[int, str], str]:
    """A DICOM-SEG as (frames, rows, cols) segment numbers, {number: label}, source SOP UID."""
    hd = require_highdicom()
    seg = hd.seg.segread(str(path))
    uids = seg.get_source_image_uids()
    sop_uid = uids[0][2]
    numbers = list(seg.get_segment_numbers())
    pixels = seg.get_pixels_by_source_instance([sop_uid], segment_numbers=numbers,
                                               combine_segments=True)
    names = {n: seg.get_segment_description(n).segment_label for n in numbers}
    return pixels[0] if pixels.ndim == 3 else pixels, names, sop_uid
