"""A 4-D NIfTI file (x, y, z, t: fMRI, multi-echo) added to a project is one series per
volume: each named apart, its slices read from its own volume, the file's affine, and every
volume of the file in one split; kept in project.json; exported and imported per volume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segstudio.core.classes import LabelClass
from segstudio.io.export import ExportOptions, export_dataset, plan_classes
from segstudio.io.formats.base import ExportContext, Item
from segstudio.io.formats.series_export import write_series_nifti_item
from segstudio.io.project import Project

nib = pytest.importorskip("nibabel")

CLASSES = [LabelClass(0, "background", "#000000"), LabelClass(1, "lesion", "#aa3322")]
AFFINE = np.array([[0.0, -0.8, 0.1, 40.0], [0.9, 0.0, 0.0, -20.0],
                   [0.0, 0.05, 3.0, 7.5], [0.0, 0.0, 0.0, 1.0]])
SHAPE = (24, 20, 6, 3)                         # (i, j, k, t)


def _bold(folder, shape=SHAPE, name="bold.nii.gz"):
    """Volume t holds 1000 * (t + 1) plus a pattern that differs per voxel and per volume."""
    rng = np.random.default_rng(4)
    data = rng.integers(0, 500, shape).astype(np.int16)
    for t in range(shape[3]):
        data[..., t] += np.int16(1000 * (t + 1))
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, AFFINE), str(folder / name))
    return data


@pytest.fixture()
def bold(tmp_path):
    data = _bold(tmp_path / "scan")
    project = Project.from_folder(tmp_path / "scan", tmp_path / "proj", classes=list(CLASSES))
    return project, data


def _volumes(project):
    return sorted(project.series.values(), key=lambda r: r.volume)


def test_each_volume_is_a_series_of_its_own_slices(bold):
    project, data = bold
    records = _volumes(project)
    assert [r.volume for r in records] == [0, 1, 2]
    assert [r.id for r in records] == ["bold_vol1", "bold_vol2", "bold_vol3"]
    assert [r.description for r in records] == [f"bold.nii.gz · volume {t} of 3"
                                                for t in (1, 2, 3)]
    assert "volume 2 of 3" in records[1].summary
    assert all(e.series is not None for e in project.images) and len(project.images) == 18
    for t, record in enumerate(records):
        slices = project.slices_of(record.id)
        assert (record.slices, record.rows, record.cols) == (6, 20, 24)
        assert [e.slice for e in slices] == list(range(6))
        for e in slices:       # read as the window reads: the project's entry, its pixels
            got = np.asarray(project.read_image(e).data)
            assert np.array_equal(got, data[:, :, e.slice, t].T), (record.id, e.slice)
        assert np.allclose(record.affine, records[0].affine)
    # the file's affine (RAS) is each volume's geometry
    from segstudio.io.series_geometry import LPS_TO_RAS

    assert np.allclose(LPS_TO_RAS @ records[1].affine, AFFINE, atol=1e-5)
    # every volume of the one file in one split: time points must not straddle train / val
    assert len({e.split for e in project.images}) == 1
    assert not any("4-D" in p for p in project.problems + project.notes)


def test_the_volumes_of_one_file_share_a_split_even_where_their_ids_would_differ(tmp_path):
    from segstudio.io.adding import split_for

    _bold(tmp_path / "scan", (8, 6, 2, 12))
    project = Project.create(tmp_path / "proj", classes=list(CLASSES))
    project.settings["val_fraction"] = 0.5
    project.add_images([tmp_path / "scan" / "bold.nii.gz"])
    assert len(project.series) == 12
    # hashed per volume, these ids would land in both splits
    assert len({split_for(sid, 0.5) for sid in project.series}) == 2
    assert len({e.split for e in project.images}) == 1


def test_the_volumes_survive_reopening_and_adding_again(bold, tmp_path):
    project, data = bold
    raw = json.loads((project.root / "project.json").read_text())
    assert sorted(r["volume"] for r in raw["series"]) == [0, 1, 2]
    again = Project.open(project.root)
    assert again.series == project.series
    assert [(e.id, e.frame, e.series, e.slice, e.split) for e in again.images] == \
        [(e.id, e.frame, e.series, e.slice, e.split) for e in project.images]
    e = again.slices_of("bold_vol3")[4]
    assert np.array_equal(np.asarray(again.read_image(e).data), data[:, :, 4, 2].T)
    assert again.add_images([tmp_path / "scan" / "bold.nii.gz"]) == []
    assert len(again.series) == 3


def test_a_project_json_without_the_volume_field_reads_unchanged(bold):
    project, _data = bold
    path = project.root / "project.json"
    raw = json.loads(path.read_text())
    for r in raw["series"]:
        del r["volume"]                       # as written before the field existed
    path.write_text(json.dumps(raw))
    again = Project.open(project.root)
    assert {r.id: r.volume for r in again.series.values()} == \
        {"bold_vol1": 0, "bold_vol2": 1, "bold_vol3": 2}


def _label_slice(project, sid, k):
    record = project.series[sid]
    e = project.slices_of(sid)[k]
    m = np.zeros((record.rows, record.cols), np.uint8)
    m[3:9, 5:15] = 1
    project.masks.write(e.id, m)
    return record, m


def test_the_nifti_export_of_a_volume_is_3d_with_the_files_affine(bold, tmp_path):
    project, data = bold
    record, m = _label_slice(project, "bold_vol2", 4)
    options = ExportOptions(format="nifti")
    root = tmp_path / "out"
    root.mkdir()
    ctx = ExportContext(project, options, plan_classes(project, options), root, root)
    slices = project.slices_of(record.id)
    name = write_series_nifti_item(ctx, Item(record.id, slices[0].split, slices), record)
    img = nib.load(str(root / "masks" / slices[0].split / name))
    assert img.shape == (24, 20, 6)
    assert np.allclose(img.affine, AFFINE, atol=1e-5)
    labels = np.asarray(img.dataobj)
    assert np.array_equal(labels[:, :, 4].T, m)
    assert not (labels[:, :, :4] == 1).any()
    image = nib.load(str(root / "images" / slices[0].split / name))
    assert image.shape == (24, 20, 6)
    assert np.allclose(np.asarray(image.dataobj), data[..., 1])


def test_the_dataset_export_writes_one_label_volume_per_volume(bold, tmp_path):
    project, _data = bold
    _label_slice(project, "bold_vol2", 4)
    out = tmp_path / "nifti"
    export_dataset(project, out, ExportOptions(format="nifti"))
    files = sorted(p.name for p in (out / "masks").rglob("*.nii.gz"))
    assert files == ["bold_vol2.nii.gz"]
    img = nib.load(str(next((out / "masks").rglob("*.nii.gz"))))
    assert img.shape == (24, 20, 6) and np.allclose(img.affine, AFFINE, atol=1e-5)


def test_a_3d_label_volume_imports_onto_the_volume_it_names(bold, tmp_path):
    from segstudio.io.imports import ImportOptions, import_annotations

    project, _data = bold
    labels = np.zeros((24, 20, 6), np.uint8)                  # (col, row, slice)
    labels[2:10, 4:12, 1:3] = 1
    nib.save(nib.Nifti1Image(labels, AFFINE), str(tmp_path / "bold_vol3.nii.gz"))
    result = import_annotations(project, tmp_path / "bold_vol3.nii.gz",
                                ImportOptions(format="nifti-volume"))
    assert len(result.imported) == 6
    shape = (20, 24)
    got = np.stack([project.load_mask(e, shape) for e in project.slices_of("bold_vol3")])
    assert np.array_equal(got, labels.transpose(2, 1, 0))
    for sid in ("bold_vol1", "bold_vol2"):                    # the other volumes untouched
        assert not any(project.masks.has_mask(e.id) for e in project.slices_of(sid))


def test_a_file_of_one_volume_is_a_plain_3d_volume(tmp_path):
    data = _bold(tmp_path / "scan", (24, 20, 6, 1), "single.nii.gz")
    project = Project.from_folder(tmp_path / "scan", tmp_path / "proj")
    assert list(project.series) == ["single"]
    record = project.series["single"]
    assert record.volume is None and "#" not in record.uid and record.slices == 6
    assert record.description == "single.nii.gz" and "volume" not in record.summary
    for e in project.slices_of("single"):
        assert np.array_equal(np.asarray(project.read_image(e).data), data[:, :, e.slice, 0].T)


def test_the_nnunet_export_makes_each_volume_a_case_of_one_channel(bold, tmp_path):
    project, data = bold
    _record, m = _label_slice(project, "bold_vol2", 4)
    out = tmp_path / "nnunet"
    export_dataset(project, out, ExportOptions(format="nnunet"))
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "image"}
    labels = sorted(out.rglob("labels*/*.nii.gz"))
    assert [p.name for p in labels] == ["bold_vol2.nii.gz"]
    label = nib.load(str(labels[0]))
    assert label.shape == (24, 20, 6) and np.allclose(label.affine, AFFINE, atol=1e-4)
    lab = np.asarray(label.dataobj)
    assert (lab[:, :, 4].T == m).all()                   # NIfTI (i, j) is (column, row)
    image = nib.load(str(next(out.rglob("images*/bold_vol2_0000.nii.gz"))))
    assert image.shape == (24, 20, 6)
    assert np.allclose(np.asarray(image.dataobj), data[..., 1])
    assert not list(out.rglob("images*/bold_vol2_0001.nii.gz"))


def test_check_says_how_many_volumes_a_4d_file_holds(tmp_path, capsys):
    from segstudio.cli import main

    _bold(tmp_path)
    assert main(["check", str(tmp_path / "bold.nii.gz")]) == 0
    out = capsys.readouterr().out
    assert "3 volumes of 6 slices" in out and "24 x 20" in out
