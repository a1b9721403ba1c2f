"""A DICOM series or a NIfTI volume added to a project is one series of slices: in order, one
split for all of them, kept in project.json, and exported as one NIfTI / one DICOM-SEG."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from segstudio.core.classes import LabelClass
from segstudio.io.export import ExportOptions, export_dataset
from segstudio.io.project import Project
from segstudio.io.series_geometry import LPS_TO_RAS

from .phantom_series import write_ct_series

CLASSES = [LabelClass(0, "background", "#000000"), LabelClass(1, "liver", "#aa3322")]


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    root = tmp_path_factory.mktemp("vol")
    ph = write_ct_series(root / "scan")
    cv2.imwrite(str(root / "scan" / "photo.png"), np.full((20, 30, 3), 90, np.uint8))
    (root / "scan" / "README.txt").write_text("not an image")
    return root, ph


@pytest.fixture()
def project(ct, tmp_path):
    root, _ph = ct
    return Project.from_folder(root / "scan", tmp_path / "proj", classes=list(CLASSES))


def test_a_shuffled_series_is_one_volume_of_40_slices_in_order(project, ct):
    _root, ph = ct
    assert len(project.series) == 1
    record = next(iter(project.series.values()))
    slices = project.slices_of(record.id)
    assert record.slices == 40 and len(slices) == 40
    assert [e.slice for e in slices] == list(range(40))
    # slice k is the file the phantom wrote as slice k, and reads in HU
    for e in slices[::7]:
        assert project.image_path(e).resolve() == ph.files[e.slice].resolve()
        assert np.allclose(project.read_image(e).data, ph.hu[e.slice], atol=1.0)
    assert np.allclose(np.asarray(record.affine_lps).reshape(4, 4), ph.affine_lps(), atol=1e-4)
    assert record.spacing == pytest.approx(ph.spacing, abs=1e-6)
    # one split for the whole volume: no slice of it on the other side of validation
    assert len({e.split for e in slices}) == 1
    # the photo beside it is an image of its own; the text file is no image at all
    plain = [e for e in project.images if e.series is None]
    assert [e.path.rsplit("/", 1)[-1] for e in plain] == ["photo.png"]


def test_the_volume_survives_reopening_and_adding_again(project, ct):
    root, _ph = ct
    raw = json.loads((project.root / "project.json").read_text())
    assert raw["version"] == 2 and len(raw["series"]) == 1
    again = Project.open(project.root)
    assert again.series == project.series
    assert [(e.id, e.series, e.slice) for e in again.images] == \
        [(e.id, e.series, e.slice) for e in project.images]
    # the same files again add nothing: no second series
    assert again.add_images(sorted((root / "scan").iterdir())) == []
    assert len(again.series) == 1


def test_a_project_without_volumes_is_still_written_as_version_1(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8), np.uint8))
    p = Project.create(tmp_path / "p")
    p.add_images([tmp_path / "a.png"])
    raw = json.loads((tmp_path / "p" / "project.json").read_text())
    assert raw["version"] == 1 and "series" not in raw


def test_a_slice_of_an_unknown_series_is_refused_with_its_name(project):
    raw = json.loads((project.root / "project.json").read_text())
    raw["series"] = []
    (project.root / "project.json").write_text(json.dumps(raw))
    with pytest.raises(Exception, match="which 'series' does not list"):
        Project.open(project.root)


def _label_two_slices(project):
    record = next(iter(project.series.values()))
    slices = project.slices_of(record.id)
    masks = {}
    for k in (10, 25):
        m = np.zeros((record.rows, record.cols), np.uint8)
        m[30:60, 40:90] = 1
        m[:5] = 255                                   # a strip left unlabelled
        project.masks.write(slices[k].id, m)
        masks[k] = m
    return record, slices, masks


def test_nifti_export_is_one_volume_with_the_series_geometry(project, ct, tmp_path):
    import nibabel as nib

    _root, ph = ct
    record, slices, masks = _label_two_slices(project)
    out = tmp_path / "nifti"
    export_dataset(project, out, ExportOptions(format="nifti"))
    split = slices[0].split
    img = nib.load(str(out / "masks" / split / f"{record.id}.nii.gz"))
    assert img.shape == (record.cols, record.rows, 40)
    assert np.allclose(img.affine, LPS_TO_RAS @ ph.affine_lps(), atol=1e-4)
    data = np.asarray(img.dataobj)
    for k, m in masks.items():
        assert np.array_equal(data[:, :, k].T, m)
    image = nib.load(str(out / "images" / split / f"{record.id}.nii.gz"))
    assert np.allclose(image.affine, img.affine)
    assert np.allclose(np.asarray(image.dataobj)[:, :, 25].T, ph.hu[25], atol=1.0)


def test_dicom_seg_export_is_one_object_referencing_all_40_instances(project, ct, tmp_path):
    hd = pytest.importorskip("highdicom")

    _root, ph = ct
    record, slices, masks = _label_two_slices(project)
    out = tmp_path / "seg"
    export_dataset(project, out, ExportOptions(format="dicom-seg"))
    files = sorted(out.rglob("*.seg.dcm"))
    assert [f.name for f in files] == [f"{record.id}.seg.dcm"]
    seg = hd.seg.segread(files[0])
    referenced = {r.ReferencedSOPInstanceUID
                  for s in seg.ReferencedSeriesSequence for r in s.ReferencedInstanceSequence}
    assert referenced == set(ph.sop_uids)
    volume = seg.get_volume(combine_segments=True) if hasattr(seg, "get_volume") else None
    if volume is None:
        pytest.skip("this highdicom cannot rebuild a volume")
    got = np.asarray(volume.array)
    assert got.shape[0] == 40
    # the labelled slices, where masks say liver; other slices empty
    assert int(got.sum()) == sum(int((m == 1).sum()) for m in masks.values())


def test_a_volume_is_scored_as_one_3d_mask_beside_its_slices():
    from segstudio.core.metrics import Evaluator

    ev = Evaluator(2, class_names=["background", "liver"], exclude_from_mean=(0,))
    truth = np.zeros((3, 10, 10), np.uint8)
    truth[:, 2:6, 2:6] = 1                       # 16 px of liver per slice
    pred = truth.copy()
    pred[0] = 0                                  # slice 0: liver missed entirely
    for k in range(3):
        ev.add(truth[k], pred[k], f"s{k}", volume="ct")
    ev.add(truth[0], truth[0], "photo")          # an image on its own: not part of the volume
    report = ev.report()
    # 3-D Dice over the volume: 2 * 32 / (48 + 32) = 0.8, not the mean of 0, 1, 1 per slice
    assert report.volumes["ct"].dice[1] == pytest.approx(0.8)
    assert list(report.volumes) == ["ct"]
    assert "volume ct: 3-D Dice liver 0.800" in report.format_table()
    assert report.as_dict()["volumes"]["ct"]["mean_dice"] == pytest.approx(0.8)


def test_a_nifti_label_volume_imports_as_the_masks_of_its_series(project, ct, tmp_path):
    import nibabel as nib

    from segstudio.io.imports import ImportOptions, import_annotations

    record = next(iter(project.series.values()))
    slices = project.slices_of(record.id)
    labels = np.zeros((record.cols, record.rows, 40), np.uint8)      # NIfTI: (col, row, slice)
    labels[40:90, 30:60, 10:20] = 1
    affine = LPS_TO_RAS @ np.asarray(record.affine_lps).reshape(4, 4)
    # another tool wrote it with the first axis flipped (and said so in its affine)
    flip = np.diag([-1.0, 1, 1, 1])
    flip[0, 3] = record.cols - 1
    nib.save(nib.Nifti1Image(labels[::-1].copy(), affine @ flip), str(tmp_path / "seg.nii.gz"))
    result = import_annotations(project, tmp_path / "seg.nii.gz",
                                ImportOptions(format="nifti-volume"))
    assert len(result.imported) == 40
    got = np.stack([project.load_mask(e, (record.rows, record.cols)) for e in slices])
    assert np.array_equal(got, labels.transpose(2, 1, 0))
    assert any("flip" in w or "reorient" in w for w in result.warnings), result.warnings


def test_a_label_volume_of_the_wrong_size_is_refused_with_both_sizes(project, tmp_path):
    import nibabel as nib

    from segstudio.io.imports import AnnotationImportError, ImportOptions, import_annotations

    nib.save(nib.Nifti1Image(np.zeros((10, 10, 4), np.uint8), np.eye(4)),
             str(tmp_path / "small.nii.gz"))
    with pytest.raises(AnnotationImportError, match="small.nii.gz"):
        import_annotations(project, tmp_path / "small.nii.gz", ImportOptions(format="nifti-volume"))


def test_an_enhanced_ct_file_is_one_volume_in_hu_frame_by_frame(tmp_path):
    from .phantom_series import make_phantom, write_enhanced_ct

    (tmp_path / "s").mkdir()
    ph = write_enhanced_ct(tmp_path / "s" / "enhanced.dcm", make_phantom(n=10, rows=32, cols=40))
    project = Project.from_folder(tmp_path / "s", tmp_path / "p")
    assert len(project.series) == 1
    slices = project.slices_of(next(iter(project.series)))
    assert len(slices) == 10
    again = Project.open(tmp_path / "p")               # the per-frame rescale is kept
    for e in again.slices_of(next(iter(again.series))):
        assert np.allclose(again.read_image(e).data, ph.hu[e.slice], atol=1.0), e.slice


def test_a_series_with_a_gap_is_added_with_a_note_not_as_skipped(tmp_path, capsys):
    from segstudio.cli import main

    write_ct_series(tmp_path / "scan", skip=(5,))
    assert main(["new", str(tmp_path / "scan"), "--out", str(tmp_path / "p")]) == 0
    err = capsys.readouterr().err
    assert "note: " in err and "skipped" not in err
    project = Project.open(tmp_path / "p")
    record = next(iter(project.series.values()))
    assert record.slices == 39 and record.problems            # the gap is kept with it
