"""nnU-Net v2 raw datasets: the rules of nnU-Net's dataset_format.md and ignore_label.md,
checked the way its verify_dataset_integrity checks them (re-implemented: nnU-Net is not a
dependency), on 2-D PNG and on NIfTI/DICOM volume projects."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from segstudio.io.export import ExportError, ExportOptions, export_dataset
from segstudio.io.project import Project

from .conftest import CLASSES, blob_mask, make_project, mask_of
from .test_export_medical import write_ct


def _read(path: Path) -> np.ndarray:
    """An image or label file as nnU-Net's readers see it: (channels, *spatial)."""
    if path.name.endswith(".nii.gz"):
        import nibabel as nib

        return np.asarray(nib.load(str(path)).dataobj)[None]
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return np.moveaxis(arr, -1, 0) if arr.ndim == 3 else arr[None]


def verify_nnunet(folder: Path) -> dict:
    """nnU-Net's integrity rules; returns dataset.json. Fails with nnU-Net's reason."""
    ds = json.loads((folder / "dataset.json").read_text())
    assert {"labels", "channel_names", "numTraining", "file_ending"} <= set(ds)
    ending, n_channels = ds["file_ending"], len(ds["channel_names"])
    assert ending in (".png", ".nii.gz")                           # lossless, one per dataset
    labels = ds["labels"]
    assert labels["background"] == 0
    values = sorted(v for k, v in labels.items() if k != "ignore")
    if "ignore" in labels:                                          # ignore_label.md
        assert labels["ignore"] == max(labels.values())
        values.append(labels["ignore"])
    assert values == list(range(len(values))), f"labels not consecutive: {labels}"
    for images, segs in (("imagesTr", "labelsTr"), ("imagesTs", "labelsTs")):
        if not (folder / images).is_dir():
            continue
        cases: dict[str, list[Path]] = {}
        for f in sorted((folder / images).iterdir()):
            m = re.fullmatch(rf"(.+)_(\d{{4}}){re.escape(ending)}", f.name)
            assert m, f"{f.name}: not <case>_XXXX{ending}"
            cases.setdefault(m.group(1), []).append(f)
        label_files = sorted(p.name for p in (folder / segs).iterdir())
        assert label_files == sorted(f"{c}{ending}" for c in cases)
        if images == "imagesTr":
            assert ds["numTraining"] == len(cases)
        for case, files in cases.items():
            assert [f.name[-len(ending) - 4:-len(ending)] for f in files] == \
                [f"{k:04d}" for k in range(len(files))]
            channels = np.concatenate([_read(f) for f in files])
            seg = _read(folder / segs / f"{case}{ending}")
            assert len(channels) == n_channels, case            # check_cases: modalities
            assert channels.shape[1:] == seg.shape[1:], case     # and shapes
            assert set(np.unique(seg).tolist()) <= set(values), case   # verify_labels
            if ending == ".nii.gz":
                import nibabel as nib

                a = [nib.load(str(p)) for p in (*files, folder / segs / f"{case}{ending}")]
                assert all(np.allclose(x.affine, a[0].affine) for x in a), case
    return ds


def test_png_project_is_an_nnunet_dataset_with_its_ignore_label(tmp_path):
    project = make_project(tmp_path / "p", n=6)                 # grey and colour, 255 bands
    out = tmp_path / "Dataset501_Cells"
    result = export_dataset(project, out, ExportOptions(format="nnunet"))
    ds = verify_nnunet(out)
    assert ds["file_ending"] == ".png" and ds["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    assert ds["labels"] == {"background": 0, "cell": 1, "nucleus": 2, "ignore": 3}
    tests = [e for e in project.images if e.split == "test"]
    assert ds["numTraining"] == len(project.images) - len(tests) and result.counts["test"] == 1
    for e in project.images:
        tr = "Ts" if e.split == "test" else "Tr"
        seg = cv2.imread(str(out / f"labels{tr}" / f"{e.id}.png"), cv2.IMREAD_UNCHANGED)
        want = mask_of(project, e.id).copy()
        want[want == 255] = 3                                     # unlabeled -> ignore
        assert np.array_equal(seg, want), e.id
        img = cv2.imread(str(out / f"images{tr}" / f"{e.id}_0000.png"), cv2.IMREAD_UNCHANGED)
        src = cv2.imread(str(project.image_path(e)), cv2.IMREAD_UNCHANGED)
        assert img.shape == (*src.shape[:2], 3)
        assert np.array_equal(img, src if src.ndim == 3 else cv2.merge([src] * 3)), e.id
    split = json.loads((out / "splits_segstudio.json").read_text())
    assert sorted(split[0]["val"]) == sorted(e.id for e in project.images if e.split == "val")
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["warnings"] == [] and "ignore" in manifest["unlabeled"]["value"]


def test_fully_labelled_grey_project_declares_no_ignore_label(tmp_path):
    project = make_project(tmp_path / "p", n=4, unlabeled=False)
    for e in project.images:                                     # grey images only
        p = project.image_path(e)
        cv2.imwrite(str(p), cv2.imread(str(p), cv2.IMREAD_GRAYSCALE))
    out = tmp_path / "ds"
    export_dataset(project, out, ExportOptions(format="nnunet"))
    ds = verify_nnunet(out)
    assert ds["channel_names"] == {"0": "grey"} and "ignore" not in ds["labels"]


def test_unlabeled_as_background_and_kept_ids_still_give_consecutive_labels(tmp_path):
    project = make_project(tmp_path / "p", n=4)
    out = tmp_path / "ds"
    export_dataset(project, out, ExportOptions(format="nnunet", unlabeled="background",
                                               classes=("nucleus",), renumber=False))
    ds = verify_nnunet(out)
    assert ds["labels"] == {"background": 0, "nucleus": 1}


def test_a_class_named_ignore_is_refused(tmp_path):
    project = make_project(tmp_path / "p", n=2)
    from dataclasses import replace

    project.set_classes([replace(c, name="Ignore") if c.id == 1 else c for c in project.classes])
    with pytest.raises(ExportError, match="nnU-Net reserves the label name 'ignore'"):
        export_dataset(project, tmp_path / "ds", ExportOptions(format="nnunet"))


def test_volumes_become_a_nifti_dataset_with_matching_geometry(tmp_path, rng):
    import nibabel as nib

    affine = np.array([[0.8, 0, 0, -50.0], [0, 0.6, 0, 20.0], [0, 0, 3.0, -7.5], [0, 0, 0, 1]])
    vol = rng.integers(0, 1000, (56, 40, 5)).astype(np.int16)
    src = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(vol, affine), str(src))
    dcm = write_ct(tmp_path / "slice.dcm")
    png = make_project(tmp_path / "other", n=1)
    project = Project.create(tmp_path / "p", classes=list(CLASSES))
    project.add_images([src, dcm, png.image_path(png.images[0])])
    masks = {}
    for e in project.images:
        project.update_entry(e.id, split="train")
        if e.frame in (1, 3) or e.frame is None:
            info = project.probe(e)
            masks[e.id] = blob_mask(rng, info.height, info.width, unlabeled=False)
            project.masks.write(e.id, masks[e.id])
    out = tmp_path / "ds"
    result = export_dataset(project, out, ExportOptions(format="nnunet"))
    assert any("a 2-D image; nnU-Net takes one file type" in s for s in result.skipped)
    ds = verify_nnunet(out)
    assert ds["file_ending"] == ".nii.gz" and ds["numTraining"] == 2
    assert ds["labels"]["ignore"] == 3                     # slices 0, 2, 4 are not labelled
    image = nib.load(str(out / "imagesTr" / "ct_0000.nii.gz"))
    assert np.array_equal(np.asarray(image.dataobj), vol) and np.allclose(image.affine, affine)
    seg = np.asarray(nib.load(str(out / "labelsTr" / "ct.nii.gz")).dataobj)
    for e in project.images[:5]:
        want = masks.get(e.id, np.full((40, 56), 3, np.uint8))
        assert np.array_equal(seg[:, :, e.frame].T, want), e.id
    ct = np.asarray(nib.load(str(out / "imagesTr" / "slice_0000.nii.gz")).dataobj)
    assert ct.shape == (56, 40, 1) and ct[1, 0, 0] == 1           # pixel (row 0, col 1)
