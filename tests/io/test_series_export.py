"""One export per series: a NIfTI label volume with the series' affine, ONE DICOM-SEG that
references every source instance (read back with nibabel / highdicom), and a NIfTI label
volume imported back as the series' masks (reoriented where only its axes differ)."""

from __future__ import annotations

import numpy as np
import pytest

from segstudio.io.formats.medical import (SeriesExportError, read_label_volume_nifti,
                                          write_series_nifti, write_series_seg)
from segstudio.io.series import scan_series

from .phantom_series import make_phantom, write_ct_series, write_enhanced_ct

nib = pytest.importorskip("nibabel")
SEGMENTS = [(1, "ellipsoid", (230, 159, 0)), (2, "left strip", (0, 158, 115))]


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ct")
    ph = write_ct_series(folder / "series")
    series, _ = scan_series(folder / "series")
    return series[0], ph


def _labels(ph) -> np.ndarray:
    """Class 1 inside the phantom, class 2 on a strip of columns, 255 (unlabeled) at the top."""
    labels = ph.inside.astype(np.uint8)
    labels[:, :, :9] = 2
    labels[:, :3, :] = 255
    return labels


def test_nifti_export_has_the_series_affine_and_the_labels(ct, tmp_path):
    series, ph = ct
    labels = _labels(ph)
    write_series_nifti(tmp_path / "labels.nii.gz", series, labels)
    img = nib.load(str(tmp_path / "labels.nii.gz"))
    assert img.shape == (128, 128, 40) and img.get_data_dtype() == np.uint8
    assert np.allclose(img.affine, series.geometry.nifti_affine(), atol=1e-5)
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    assert np.array_equal(np.asarray(img.dataobj).transpose(2, 1, 0), labels)
    # the ellipsoid's centre voxel is at the same patient position in both files
    centre = np.array([0.55 * 128, 64, 20, 1])
    ras = img.affine @ centre
    lps = series.geometry.position(*centre[:3])
    assert np.allclose(ras[:3], [-lps[0], -lps[1], lps[2]], atol=1e-4)


def test_dicom_seg_is_one_object_referencing_every_slice(ct, tmp_path):
    hd = pytest.importorskip("highdicom")
    series, ph = ct
    labels = _labels(ph)
    assert write_series_seg(tmp_path / "series.seg.dcm", series, labels, SEGMENTS, "1.0") == 2
    seg = hd.seg.segread(str(tmp_path / "series.seg.dcm"))
    refs = seg.get_source_image_uids()
    assert len(refs) == 40
    assert {r[2] for r in refs} == set(ph.sop_uids)
    assert {r[1] for r in refs} == {ph.series_uid}
    pixels = seg.get_pixels_by_source_instance([r.sop_instance_uid for r in series.slices],
                                               combine_segments=True)
    assert np.array_equal(pixels, np.where(labels == 255, 0, labels))
    assert [seg.get_segment_description(n).segment_label for n in (1, 2)] == \
           ["ellipsoid", "left strip"]
    assert seg.FrameOfReferenceUID == pydicom_frame_of_reference(ph)


def pydicom_frame_of_reference(ph) -> str:
    import pydicom

    return pydicom.dcmread(ph.files[0], stop_before_pixels=True).FrameOfReferenceUID


def test_dicom_seg_of_an_enhanced_file_keeps_its_frame_order(tmp_path):
    hd = pytest.importorskip("highdicom")
    ph = write_enhanced_ct(tmp_path / "enhanced.dcm", make_phantom(n=12))
    series = scan_series([tmp_path / "enhanced.dcm"])[0][0]
    labels = _labels(ph)
    write_series_seg(tmp_path / "enhanced.seg.dcm", series, labels, SEGMENTS)
    seg = hd.seg.segread(str(tmp_path / "enhanced.seg.dcm"))
    assert len(seg.get_source_image_uids()) == 1
    pixels = seg.get_pixels_by_source_frame(
        ph.sop_uids[0], source_frame_numbers=[r.frame + 1 for r in series.slices],
        combine_segments=True)
    assert np.array_equal(pixels, np.where(labels == 255, 0, labels))


def test_exports_refuse_labels_of_another_shape_in_words(ct, tmp_path):
    series, _ph = ct
    with pytest.raises(SeriesExportError, match=r"^the label volume is 39 x 128 x 128 but the "
                                                r"series is 40 x 128 x 128 \(slices, rows, columns\)$"):
        write_series_nifti(tmp_path / "x.nii.gz", series, np.zeros((39, 128, 128), np.uint8))
    with pytest.raises(SeriesExportError, match="whole numbers from 0 to 255"):
        write_series_nifti(tmp_path / "x.nii.gz", series, np.full((40, 128, 128), 300))
    assert not (tmp_path / "x.nii.gz").exists()


def test_dicom_seg_of_a_nifti_series_is_refused(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((8, 6, 4), np.int16), np.eye(4)), str(tmp_path / "v.nii"))
    series = scan_series([tmp_path / "v.nii"])[0][0]
    with pytest.raises(SeriesExportError, match="DICOM-SEG needs a DICOM source series"):
        write_series_seg(tmp_path / "v.seg.dcm", series, np.zeros(series.shape, np.uint8), SEGMENTS)


def test_label_volume_round_trips_through_nifti(ct, tmp_path):
    series, ph = ct
    labels = _labels(ph)
    write_series_nifti(tmp_path / "labels.nii.gz", series, labels)
    back, notes = read_label_volume_nifti(tmp_path / "labels.nii.gz", series)
    assert notes == [] and back.dtype == np.uint8 and np.array_equal(back, labels)


def test_a_flipped_and_transposed_label_volume_is_reoriented(ct, tmp_path):
    """Another tool wrote the same grid as (row, column, slice) with rows and slices flipped:
    the affine says so, and the masks land on the right voxels."""
    series, ph = ct
    labels = _labels(ph)
    data = labels.transpose(2, 1, 0)                       # (col, row, slice) as we store
    affine = series.geometry.nifti_affine()
    data = np.flip(np.flip(data, 1), 2)                    # rows and slices reversed
    affine = affine @ np.array([[1, 0, 0, 0], [0, -1, 0, 127], [0, 0, -1, 39], [0, 0, 0, 1.0]])
    data = data.transpose(1, 0, 2)                         # rows first
    affine = affine[:, [1, 0, 2, 3]]
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), str(tmp_path / "other.nii.gz"))
    back, notes = read_label_volume_nifti(tmp_path / "other.nii.gz", series)
    assert np.array_equal(back, labels)
    assert notes == ["other.nii.gz: its axes are in another order, rows are flipped, slices are "
                     "flipped relative to the series; reoriented to match"]


def test_label_volume_that_does_not_fit_is_refused_in_words(ct, tmp_path):
    series, _ph = ct
    nib.save(nib.Nifti1Image(np.zeros((64, 64, 20), np.uint8), np.eye(4)), str(tmp_path / "s.nii"))
    with pytest.raises(SeriesExportError, match=r"the label volume is 64 x 64 x 20 voxels but the "
                                                r"series is 128 x 128 x 40 \(columns x rows x "
                                                r"slices\); it does not fit"):
        read_label_volume_nifti(tmp_path / "s.nii", series)
    same_shape = np.zeros((128, 128, 40), np.uint8)
    same_shape[5, 6, 7] = 3
    nib.save(nib.Nifti1Image(same_shape, np.eye(4)), str(tmp_path / "id.nii"))
    back, notes = read_label_volume_nifti(tmp_path / "id.nii", series)
    assert back[7, 6, 5] == 3 and back.sum() == 3
    assert "labels are taken voxel for voxel" in notes[0]
