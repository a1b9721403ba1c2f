"""NIfTI masks with the source geometry, and DICOM-SEG objects (highdicom) for DICOM sources.

Masks are (rows, columns); NIfTI stores (i, j) with i along a row, so a slice is written
transposed, the inverse of how `io.images` reads NIfTI slices.

Per series (`io.series.Series`, label volumes uint8 (slices, rows, cols) in series order):
`write_series_nifti` (one label volume with the series' affine), `write_series_seg` (one
DICOM-SEG referencing every source instance) and `read_label_volume_nifti` (a label volume
back as the series' masks, reoriented where only its axis order or directions differ).
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

    ds = pydicom.dcmread(source)
    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    rows, cols = int(ds.Rows), int(ds.Columns)
    labels = np.zeros((n_frames, rows, cols), np.uint8)
    lut = np.zeros(256, np.uint8)
    for number, (cid, _name, _rgb) in enumerate(segments, 1):
        lut[cid] = number
    for frame, mask in frames.items():
        labels[frame or 0] = lut[mask]
    descriptions = _segment_descriptions(hd, segments)
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


# -- series (io.series): one NIfTI / one DICOM-SEG per volume ------------------------------------
class SeriesExportError(ValueError):
    """A label volume that does not fit its series, or a series a format cannot describe."""


def _check_labels(series, label_volume: np.ndarray) -> np.ndarray:
    labels = np.asarray(label_volume)
    if labels.shape != series.shape:
        raise SeriesExportError(f"the label volume is {_shape_words(labels.shape)} but the series "
                                f"is {_shape_words(series.shape)} (slices, rows, columns)")
    if labels.dtype != np.uint8:
        if labels.size and (labels.min() < 0 or labels.max() > 255
                            or not np.array_equal(labels, np.round(labels))):
            raise SeriesExportError("label values must be whole numbers from 0 to 255 (class ids)")
        labels = labels.astype(np.uint8)
    return labels


def _shape_words(shape) -> str:
    return " x ".join(str(int(n)) for n in shape)


def write_series_nifti(path: Path, series, label_volume: np.ndarray) -> None:
    """A uint8 NIfTI label volume on the series' grid: data (column, row, slice), affine
    `series.geometry.nifti_affine()`; `label_volume` is (slices, rows, cols) in series order."""
    labels = _check_labels(series, label_volume)
    write_nifti(Path(path), np.ascontiguousarray(labels.transpose(2, 1, 0)),
                series.geometry.nifti_affine())


def _segment_descriptions(hd, segments):
    from pydicom.sr.codedict import codes

    return [hd.seg.SegmentDescription(
        segment_number=number, segment_label=name[:64],
        segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Tissue,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        display_color=hd.color.CIELabColor.from_rgb(*rgb))
        for number, (_cid, name, rgb) in enumerate(segments, 1)]


def write_series_seg(path: Path, series, label_volume: np.ndarray,
                     segments: list[tuple[int, str, tuple[int, int, int]]],
                     software_version: str = "") -> int:
    """ONE binary DICOM-SEG for a whole DICOM series, referencing every source instance.

    `label_volume` is (slices, rows, cols) class ids in series order; `segments` lists
    (class id, name, rgb), numbered 1..n in that order; other values are left out. Returns
    the number of segments written.
    """
    hd = require_highdicom()
    import pydicom

    if series.kind != "dicom":
        raise SeriesExportError(f"DICOM-SEG needs a DICOM source series; {series.uid} comes "
                                f"from a {series.kind.upper()} file (export it as NIfTI)")
    if not segments:
        raise SeriesExportError("DICOM-SEG needs at least one segment (class) to write")
    labels = _check_labels(series, label_volume)
    lut = np.zeros(256, np.uint8)
    for number, (cid, _name, _rgb) in enumerate(segments, 1):
        lut[cid] = number
    numbers = lut[labels]
    if series.is_multiframe:
        paths = {s.path for s in series.slices}
        if len(paths) != 1:
            raise SeriesExportError("a series made of several multi-frame files cannot be one "
                                    "DICOM-SEG; export it as NIfTI")
        source = [pydicom.dcmread(series.slices[0].path)]
        frames = int(getattr(source[0], "NumberOfFrames", 1) or 1)
        pixels = np.zeros((frames, series.rows, series.cols), np.uint8)
        for k, ref in enumerate(series.slices):      # back to the file's frame order
            pixels[ref.frame] = numbers[k]
    else:
        # headers only: highdicom takes what it references from them, never the pixels
        source = [pydicom.dcmread(s.path, stop_before_pixels=True) for s in series.slices]
        pixels = numbers
    try:
        seg = hd.seg.Segmentation(
            source_images=source, pixel_array=pixels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=_segment_descriptions(hd, segments),
            series_instance_uid=hd.UID(), series_number=900, sop_instance_uid=hd.UID(),
            instance_number=1, manufacturer="SegStudio", manufacturer_model_name="SegStudio",
            software_versions=software_version or "0", device_serial_number="0",
            series_description=f"{series.description or series.modality or 'Series'} labels"[:64],
            omit_empty_frames=False)
    except (ValueError, AttributeError, TypeError, KeyError) as e:
        raise SeriesExportError(f"highdicom refused the series {series.uid} as a source: {e}") from None
    seg.save_as(path)
    return len(segments)


_AXIS_WORDS = ("columns", "rows", "slices")


def read_label_volume_nifti(path: Path, series) -> tuple[np.ndarray, list[str]]:
    """A NIfTI label volume as uint8 (slices, rows, cols) masks of `series`, and notes.

    Where its affine shows the same grid with axes flipped or swapped (another tool's
    orientation), the data is reoriented to the series (and a note says so); a grid that
    matches neither way but has the series' shape is taken voxel for voxel, with a note.
    Anything else raises SeriesExportError saying what does not fit.
    """
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
        affine = np.asarray(img.affine, np.float64)
    except Exception as e:
        raise SeriesExportError(f"{path}: not a readable NIfTI file ({e})") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise SeriesExportError(f"{path}: a label volume has 3 dimensions; this one is "
                                f"{_shape_words(data.shape)}")
    if data.dtype.kind == "b":
        data = data.astype(np.uint8)
    if data.dtype.kind not in "uif":
        raise SeriesExportError(f"{path}: holds {data.dtype} voxels, not class ids")
    want = (series.cols, series.rows, len(series.slices))       # as stored: (i, j, k)
    notes: list[str] = []
    oriented = _reorient(data, affine, series.geometry.nifti_affine(), want)
    if oriented is not None:
        data, words = oriented
        if words:
            notes.append(f"{path.name}: its {words} relative to the series; reoriented to match")
    elif data.shape == want:
        notes.append(f"{path.name}: its affine does not describe the series' grid (other "
                     f"position, spacing or orientation); labels are taken voxel for voxel")
    else:
        raise SeriesExportError(
            f"{path}: the label volume is {_shape_words(data.shape)} voxels but the series is "
            f"{_shape_words(want)} (columns x rows x slices); it does not fit")
    try:
        labels = _check_labels(series, data.transpose(2, 1, 0))
    except SeriesExportError as e:
        raise SeriesExportError(f"{path}: {e}") from None
    return np.ascontiguousarray(labels), notes


def _reorient(data: np.ndarray, label_affine: np.ndarray, series_affine: np.ndarray,
              want: tuple[int, int, int]) -> tuple[np.ndarray, str] | None:
    """Data on the series grid when the label grid is the same one with axes flipped or
    swapped, with words for what changed ('' if nothing); None when the grids differ."""
    try:
        m = np.linalg.solve(series_affine, label_affine)    # label index -> series index
    except np.linalg.LinAlgError:
        return None
    rot, shift = m[:3, :3], m[:3, 3]
    perm = np.round(rot)
    if not np.allclose(rot, perm, atol=1e-3) or not (
            np.all(np.abs(perm).sum(axis=0) == 1) and np.all(np.abs(perm).sum(axis=1) == 1)):
        return None
    source_axis = [int(np.argmax(np.abs(perm[b]))) for b in range(3)]   # series axis b <- label axis
    signs = [int(perm[b, source_axis[b]]) for b in range(3)]
    out = np.transpose(data, source_axis)
    if out.shape != want:
        return None
    for b in range(3):
        expected = 0.0 if signs[b] > 0 else want[b] - 1
        if abs(shift[b] - expected) > 1e-2:
            return None
        if signs[b] < 0:
            out = np.flip(out, axis=b)
    words = [f"{_AXIS_WORDS[b]} are flipped" for b in range(3) if signs[b] < 0]
    if source_axis != [0, 1, 2]:
        words.insert(0, "axes are in another order")
    return out, ", ".join(words)
