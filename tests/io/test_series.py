"""A folder of DICOM files, an Enhanced DICOM file or a NIfTI volume is ONE series: slices in
order along the normal, real geometry, HU with each slice's own rescale, problems in words."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from segstudio.core.jobs import CancelToken, Cancelled
from segstudio.io.image_base import ImageReadError
from segstudio.io.series import Series, scan_series
from segstudio.io.series_geometry import LPS_TO_RAS, Geometry

from .phantom_series import make_phantom, write_ct_series, write_enhanced_ct


@pytest.fixture(scope="module")
def ct_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ct")
    ph = write_ct_series(folder / "series")
    (folder / "series" / "notes.txt").write_text("scanned on tuesday")
    (folder / "series" / "thumbs").mkdir()
    (folder / "series" / "thumbs" / "preview.png").write_bytes(b"\x89PNG not really")
    return folder / "series", ph


def _one(found) -> Series:
    series, _problems = found
    assert len(series) == 1, [s.summary() for s in series]
    return series[0]


def _assert_phantom_order(series: Series, ph, slices=None) -> None:
    """Every slice's values are those of the phantom slice it claims to be (HU, atol 1:
    the stored values were rounded to each slice's own slope)."""
    want = ph.hu if slices is None else ph.hu[list(slices)]
    got = series.read_volume()
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.allclose(got, want, atol=1.0), np.abs(got - want).max()


def test_shuffled_folder_is_one_series_of_40_in_order(ct_folder):
    folder, ph = ct_folder
    series, problems = scan_series(folder)
    assert len(series) == 1
    s = series[0]
    assert s.uid == ph.series_uid and s.modality == "CT" and s.kind == "dicom"
    assert s.description == "Phantom 2.5 mm"
    assert s.shape == (40, 128, 128)
    assert [ref.path for ref in s.slices] == ph.files      # shuffled names: order from positions
    assert [ref.sop_instance_uid for ref in s.slices] == ph.sop_uids
    assert s.problems == []
    assert problems == ["2 file(s) are neither DICOM nor NIfTI and were ignored"]
    _assert_phantom_order(s, ph)
    assert "CT, 40 slices of 128 x 128, 0.9 x 0.7 x 2.5 mm" in s.summary()


def test_hu_uses_each_slices_own_rescale(ct_folder):
    folder, ph = ct_folder
    s = _one(scan_series(folder))
    assert len({tuple(r) for r in s.rescale}) > 3                 # slopes/intercepts vary
    for k in (0, 1, 2, 17):
        raw = pydicom.dcmread(ph.files[k]).pixel_array.astype(np.float64)
        slope, intercept = s.rescale[k]
        assert np.allclose(s.read_slice(k), raw * slope + intercept)
        assert np.allclose(s.read_slice(k), ph.hu[k], atol=1.0)
        assert s.read_slice(k)[0, 0] == pytest.approx(-1000 + k, abs=1.0)   # air, per slice


def test_geometry_is_the_scanners(ct_folder):
    folder, ph = ct_folder
    g = _one(scan_series(folder)).geometry
    assert g.spacing == pytest.approx((0.7, 0.9, 2.5))
    assert np.allclose(g.row_direction, ph.row_direction, atol=1e-8)
    assert np.allclose(g.column_direction, ph.column_direction, atol=1e-8)
    assert np.allclose(g.normal, ph.normal, atol=1e-8)
    assert np.allclose(g.affine_lps(), ph.affine_lps(), atol=1e-6)
    assert np.allclose(g.nifti_affine(), LPS_TO_RAS @ ph.affine_lps(), atol=1e-6)
    # voxel (0, 0, k) is where slice k's header says its first pixel is
    for k in (0, 13, 39):
        ipp = [float(v) for v in pydicom.dcmread(ph.files[k]).ImagePositionPatient]
        assert np.allclose(g.position(0, 0, k), ipp, atol=1e-5)
    # one step along a row moves 0.9 mm (column spacing), one row down 0.7 mm
    assert np.linalg.norm(g.position(1, 0, 0) - g.position(0, 0, 0)) == pytest.approx(0.9)
    assert np.linalg.norm(g.position(0, 1, 0) - g.position(0, 0, 0)) == pytest.approx(0.7)


@pytest.mark.filterwarnings("ignore:The DICOM readers are highly experimental")
def test_geometry_matches_nibabels_dicom_affine(ct_folder):
    """nibabel's own reading of one slice: the same in-plane axes (it indexes rows first,
    we columns first, as dcm2niix and io.images do) and origin."""
    from nibabel.nicom import dicomwrappers

    folder, ph = ct_folder
    g = _one(scan_series(folder)).geometry
    for k in (0, 21):
        theirs = dicomwrappers.wrapper_from_file(str(ph.files[k])).affine   # LPS, (row, col)
        ours = g.affine_lps()                                                # LPS, (col, row)
        assert np.allclose(theirs[:3, [1, 0]], ours[:3, :2], atol=1e-5)
        assert np.allclose(theirs[:3, 3], g.position(0, 0, k), atol=1e-5)


def test_missing_slice_is_reported_and_the_rest_opens(tmp_path):
    ph = write_ct_series(tmp_path / "gap", make_phantom(), skip=(17,))
    s = _one(scan_series(tmp_path / "gap"))
    assert s.shape == (39, 128, 128)
    assert len(s.problems) == 1
    assert s.problems[0].startswith("about 1 slice(s) missing between slices 17 and 18 "
                                    "(5 mm apart where slices are 2.5 mm apart)")
    assert s.geometry.spacing[2] == pytest.approx(2.5)
    _assert_phantom_order(s, ph, [k for k in range(40) if k != 17])


def test_without_positions_instance_number_orders_and_says_so(tmp_path):
    ph = write_ct_series(tmp_path / "nopos", make_phantom(n=12), positions=False)
    s = _one(scan_series(tmp_path / "nopos"))
    assert [ref.path for ref in s.slices] == ph.files
    assert s.problems[0] == ("ImagePositionPatient is missing from any slice: slices are ordered "
                             "by InstanceNumber and their positions in the patient are unknown")
    assert "slice spacing taken from the header (2.5 mm)" in s.problems
    assert s.geometry.spacing == pytest.approx((0.7, 0.9, 2.5))
    _assert_phantom_order(s, ph)


def test_two_series_in_one_folder_are_two_items(tmp_path):
    a = write_ct_series(tmp_path / "mixed", make_phantom(n=10), seed=1)
    b = write_ct_series(tmp_path / "mixed", make_phantom(n=6, rows=64, cols=48,
                                                         spacing=(1.0, 1.0, 5.0), angles=(0, 0)),
                        seed=2)
    series, problems = scan_series(tmp_path / "mixed")
    assert problems == []
    by_uid = {s.uid: s for s in series}
    assert set(by_uid) == {a.series_uid, b.series_uid}
    assert by_uid[b.series_uid].shape == (6, 64, 48)
    assert by_uid[b.series_uid].geometry.spacing == pytest.approx((1.0, 1.0, 5.0))
    for ph in (a, b):
        assert by_uid[ph.series_uid].problems == []
        _assert_phantom_order(by_uid[ph.series_uid], ph)


def test_one_uid_with_two_image_sizes_is_split_and_says_so(tmp_path):
    big = write_ct_series(tmp_path / "uid", make_phantom(n=8), seed=3)
    small = make_phantom(n=3, rows=32, cols=32)
    small.series_uid = big.series_uid
    write_ct_series(tmp_path / "uid", small, seed=4)
    series, _ = scan_series(tmp_path / "uid")
    assert [s.shape for s in series] == [(8, 128, 128), (3, 32, 32)]
    assert [s.uid for s in series] == [f"{big.series_uid}#1", f"{big.series_uid}#2"]
    for s in series:
        assert any("mixes image sizes or orientations (8 of 128 x 128 oblique, 3 of 32 x 32 "
                   "oblique): split into 2 series" in p for p in s.problems), s.problems
    _assert_phantom_order(series[0], big)


def test_a_repeated_position_is_used_once_and_reported(tmp_path):
    ph = write_ct_series(tmp_path / "dup", make_phantom(n=10), seed=5)
    ds = pydicom.dcmread(ph.files[4])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.InstanceNumber = 99
    ds.save_as(tmp_path / "dup" / "copy_of_5")
    s = _one(scan_series(tmp_path / "dup"))
    assert s.shape[0] == 10
    assert s.problems == ["1 position(s) hold more than one slice: the first of each (by "
                          "InstanceNumber) is used, 1 slice(s) left out"]
    _assert_phantom_order(s, ph)


def test_uneven_spacing_is_reported(tmp_path):
    ph = write_ct_series(tmp_path / "uneven", make_phantom(n=10), seed=6)
    ds = pydicom.dcmread(ph.files[6])
    ds.ImagePositionPatient = [f"{v:.10g}" for v in ph.origin + 6.3 * 2.5 * ph.normal]
    ds.save_as(ph.files[6])
    s = _one(scan_series(tmp_path / "uneven"))
    assert s.problems == ["slice spacing is uneven (1.75 mm to 3.25 mm); the volume assumes 2.5 mm"]
    _assert_phantom_order(s, ph)


def test_enhanced_multiframe_file_is_one_series(tmp_path):
    ph = write_enhanced_ct(tmp_path / "enhanced.dcm")
    s = _one(scan_series([tmp_path / "enhanced.dcm"]))
    assert s.shape == (40, 128, 128) and s.is_multiframe and s.problems == []
    assert {ref.path for ref in s.slices} == {tmp_path / "enhanced.dcm"}
    assert sorted(ref.frame for ref in s.slices) == list(range(40))
    assert [ref.frame for ref in s.slices] != list(range(40))        # frames were shuffled
    assert s.geometry.spacing == pytest.approx((0.7, 0.9, 2.5))
    assert np.allclose(s.geometry.affine_lps(), ph.affine_lps(), atol=1e-6)
    _assert_phantom_order(s, ph)                              # one pass over the frames
    for k in (0, 5, 39):                                      # one frame at a time
        assert np.allclose(s.read_slice(k), ph.hu[k], atol=1.0)


def test_nifti_volumes_are_series(tmp_path):
    import nibabel as nib

    rng = np.random.default_rng(0)
    affine = np.array([[0.0, -0.8, 0.1, 40.0], [0.9, 0.0, 0.0, -20.0],
                       [0.0, 0.05, 3.0, 7.5], [0, 0, 0, 1]])
    vol = rng.integers(-500, 1500, (30, 20, 7)).astype(np.int16)       # (i, j, k)
    nib.save(nib.Nifti1Image(vol, affine), str(tmp_path / "ct.nii.gz"))
    s = _one(scan_series([tmp_path / "ct.nii.gz"]))
    assert s.kind == "nifti" and s.shape == (7, 20, 30) and s.problems == []
    assert np.allclose(s.geometry.nifti_affine(), affine)
    for k in (0, 6):
        assert np.array_equal(s.read_slice(k), vol[:, :, k].T.astype(np.float32))
    vol4 = rng.integers(0, 100, (8, 6, 5, 3)).astype(np.uint8)
    nib.save(nib.Nifti1Image(vol4, affine), str(tmp_path / "t.nii"))
    first = _one(scan_series([tmp_path / "t.nii"]))
    assert first.problems == ["a 4-D file of 3 volumes: the first is opened"]
    assert np.array_equal(first.read_volume(), vol4[..., 0].transpose(2, 1, 0))
    every, _ = scan_series([tmp_path / "t.nii"], all_volumes=True)
    assert [s.volume for s in every] == [0, 1, 2]
    assert np.array_equal(every[2].read_volume(), vol4[..., 2].transpose(2, 1, 0))


def test_geometry_from_a_nifti_affine_round_trips():
    affine = np.array([[-0.7, 0.0, 0.0, 90.0], [0.0, 0.0, 2.5, -120.0],
                       [0.0, -0.9, 0.0, 33.0], [0, 0, 0, 1]])
    g = Geometry.from_nifti_affine(affine)
    assert g.spacing == pytest.approx((0.9, 0.7, 2.5))
    assert np.allclose(g.nifti_affine(), affine)


def test_bad_files_are_problems_and_the_series_still_opens(tmp_path):
    ph = write_ct_series(tmp_path / "bad", make_phantom(n=6), seed=7)
    shutil.copy(ph.files[0], tmp_path / "bad" / "broken.dcm")
    (tmp_path / "bad" / "broken.dcm").write_bytes((tmp_path / "bad" / "broken.dcm").read_bytes()[:700])
    (tmp_path / "bad" / "fake.dcm").write_bytes(b"hello")
    series, problems = scan_series(tmp_path / "bad")
    assert [s.shape[0] for s in series] == [6]
    assert len(problems) == 2 and all("\n" not in p for p in problems)
    assert f"{tmp_path / 'bad' / 'broken.dcm'}: a CT Image without Rows and Columns: its " \
           f"header is cut short or stripped" in problems
    assert f"{tmp_path / 'bad' / 'fake.dcm'}: not a DICOM file with a file header (no 'DICM' " \
           f"marker at byte 128)" in problems


def test_a_slice_whose_pixels_are_cut_short_fails_in_one_line(tmp_path):
    ph = write_ct_series(tmp_path / "cut", make_phantom(n=4), seed=8)
    ph.files[2].write_bytes(ph.files[2].read_bytes()[:-1000])
    s = _one(scan_series(tmp_path / "cut"))                  # headers are whole: it scans
    with pytest.raises(ImageReadError, match=r"could not decode its uncompressed") as e:
        s.read_slice(2)
    assert str(e.value).startswith(f"{ph.files[2]}: ") and "\n" not in str(e.value)


def test_scan_and_read_report_progress_and_stop_when_cancelled(ct_folder):
    folder, _ph = ct_folder
    seen = []
    series, _ = scan_series(folder, progress=seen.append)
    assert seen[-1].done == seen[-1].total == 42 and len(seen) == 42   # 40 slices + 2 others
    token = CancelToken()

    def cancel_after_three(p):
        if p.done == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        series[0].read_volume(cancel=token, progress=cancel_after_three)
    with pytest.raises(Cancelled):
        scan_series(folder, cancel=token)


def test_empty_folder_says_so(tmp_path):
    assert scan_series(tmp_path) == ([], ["no DICOM or NIfTI files found"])


def _raw(path, keyword: str, value: bytes) -> None:
    """Store `value` in the file's header exactly as written, however invalid."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    ds = pydicom.dcmread(path)
    value += b" " * (len(value) % 2)
    tag = Tag(tag_for_keyword(keyword))
    ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(value), value, 0, False, True)
    ds.save_as(path)


def test_a_slice_with_a_broken_header_field_is_left_out_in_words(tmp_path):
    ph = write_ct_series(tmp_path / "hostile", make_phantom(n=8), seed=9)
    _raw(ph.files[3], "RescaleSlope", b"abc")
    series, problems = scan_series(tmp_path / "hostile")
    assert problems == [f"{ph.files[3]}: RescaleSlope is 'abc', not a number"]
    s = _one((series, problems))
    assert s.shape[0] == 7
    assert s.problems[0].startswith("about 1 slice(s) missing between slices 3 and 4")
    _assert_phantom_order(s, ph, [0, 1, 2, 4, 5, 6, 7])


def test_unusable_orientation_and_spacing_are_assumed_and_said(tmp_path):
    ph = write_ct_series(tmp_path / "odd", make_phantom(n=3, angles=(0, 0)), seed=10)
    for f in ph.files:
        _raw(f, "ImageOrientationPatient", b"0\\0\\0\\0\\0\\0")
        _raw(f, "PixelSpacing", b"0\\-1")
    s = _one(scan_series(tmp_path / "odd"))
    assert s.problems[:2] == ["ImageOrientationPatient is missing or unusable: axial slices are "
                              "assumed", "PixelSpacing is missing or unusable: 1 mm pixels are "
                              "assumed"]
    assert s.geometry.spacing == pytest.approx((1.0, 1.0, 2.5))
    assert abs(np.linalg.det(s.geometry.affine_lps())) == pytest.approx(2.5)
    _assert_phantom_order(s, ph)


def test_a_tilted_stack_is_reported(tmp_path):
    ph = write_ct_series(tmp_path / "tilt", make_phantom(n=6), seed=11)
    for k, f in enumerate(ph.files):                  # each slice 0.5 mm further along a row
        ds = pydicom.dcmread(f)
        shifted = ph.origin + k * 2.5 * ph.normal + k * 0.5 * ph.row_direction
        ds.ImagePositionPatient = [f"{v:.10g}" for v in shifted]
        ds.save_as(f)
    s = _one(scan_series(tmp_path / "tilt"))
    assert s.problems == ["slices are shifted sideways along the stack (11.3 degrees from their "
                          "normal: a tilted gantry?); the volume assumes a straight stack"]
    assert s.geometry.spacing[2] == pytest.approx(2.5)
    _assert_phantom_order(s, ph)


def test_repeated_positions_in_equal_numbers_are_volumes_of_their_own(tmp_path):
    """Two time points of the same 5 positions in one series: two volumes, #t1 and #t2."""
    first = write_ct_series(tmp_path / "4d", make_phantom(n=5), seed=12)
    second = make_phantom(n=5)
    second.series_uid = first.series_uid
    second.hu += 7
    second = write_ct_series(tmp_path / "4d" / "later", second, seed=13)
    for k, f in enumerate(second.files):                      # numbered after the first ones
        ds = pydicom.dcmread(f)
        ds.InstanceNumber = 100 + k
        ds.save_as(f)
    series, _ = scan_series(tmp_path / "4d")
    assert [s.uid for s in series] == [f"{first.series_uid}#t1", f"{first.series_uid}#t2"]
    assert all("every one of its 5 positions holds 2 slices" in s.problems[0] for s in series)
    _assert_phantom_order(series[0], first)
    _assert_phantom_order(series[1], second)
