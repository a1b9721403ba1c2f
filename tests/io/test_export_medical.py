"""NIfTI masks keep the source geometry; DICOM-SEG reads back with highdicom."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from segstudio.io.export import ExportError, ExportOptions, export_dataset
from segstudio.io.project import Project

from .conftest import CLASSES, blob_mask, make_project


def write_ct(path, rows=40, cols=56, position=(-120.0, -80.5, 33.0), spacing=(0.7, 0.9)):
    """A minimal single-frame CT slice with plane geometry, as a scanner would write it."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Phantom", "P1", "", "O"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", ""
    ds.ReferringPhysicianName = ""
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, 1
    ds.ImagePositionPatient = list(position)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = list(spacing)
    ds.SliceThickness = 2.5
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.arange(rows * cols, dtype=np.uint16).reshape(rows, cols).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_nifti_masks_have_the_source_volume_shape_and_affine(tmp_path, rng):
    import nibabel as nib

    affine = np.array([[0.8, 0, 0, -50.0], [0, 0.6, 0, 20.0], [0, 0, 3.0, -7.5], [0, 0, 0, 1]])
    vol = rng.integers(0, 1000, (56, 40, 5)).astype(np.int16)      # x, y, z
    src = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(vol, affine), str(src))
    dcm = write_ct(tmp_path / "slice.dcm")
    project = Project.create(tmp_path / "p", classes=list(CLASSES))
    project.add_images([src, dcm])
    masks = {}
    for e in project.images:
        project.update_entry(e.id, split="train" if e.frame is None else "val")
        if e.frame in (1, 3) or e.frame is None:          # two labelled slices + the DICOM
            info = project.probe(e)
            masks[e.id] = blob_mask(rng, info.height, info.width)
            project.masks.write(e.id, masks[e.id])
    out = tmp_path / "nifti"
    result = export_dataset(project, out, ExportOptions(format="nifti"))
    assert sum(result.counts.values()) == 2                # one volume per source file

    split = "val"
    img = nib.load(str(out / "masks" / split / "ct.nii.gz"))
    assert img.shape == vol.shape and img.get_data_dtype() == np.uint8
    assert np.allclose(img.affine, affine)
    data = np.asarray(img.dataobj)
    for e in project.images[:5]:
        want = masks.get(e.id, np.full((40, 56), 255, np.uint8))   # unlabelled slices: 255
        assert np.array_equal(data[:, :, e.frame].T, want), e.id
    assert (out / "images" / split / "ct.nii.gz").is_file()

    dcm_entry = project.images[-1]
    seg = nib.load(str(out / "masks" / dcm_entry.split / "slice.nii.gz"))
    assert seg.shape == (56, 40, 1)
    assert np.array_equal(np.asarray(seg.dataobj)[:, :, 0].T, masks[dcm_entry.id])
    # DICOM LPS -> NIfTI RAS: x and y flip sign; column step 0.9 mm, row step 0.7 mm
    assert np.allclose(seg.affine[:3, 3], [120.0, 80.5, 33.0])
    assert np.allclose(np.diag(seg.affine)[:3], [-0.9, -0.7, 2.5])


def test_dicom_seg_reads_back_with_highdicom(tmp_path, rng):
    from segstudio.io.formats.medical import read_dicom_seg

    dcm = write_ct(tmp_path / "ct.dcm")
    png_project = make_project(tmp_path / "other", n=1)
    project = Project.create(tmp_path / "p", classes=list(CLASSES))
    project.add_images([dcm, png_project.image_path(png_project.images[0])])
    dicom_entry, png_entry = project.images
    mask = blob_mask(rng, 40, 56)
    project.masks.write(dicom_entry.id, mask)
    project.masks.write(png_entry.id, blob_mask(rng))
    out = tmp_path / "seg"
    result = export_dataset(project, out, ExportOptions(format="dicom-seg"))
    assert any("not a DICOM image" in s for s in result.skipped)
    seg_path = out / "masks" / dicom_entry.split / "ct.seg.dcm"
    pixels, labels, source_uid = read_dicom_seg(seg_path)
    assert source_uid == pydicom.dcmread(dcm).SOPInstanceUID
    assert labels == {1: "cell", 2: "nucleus"}
    want = np.where(mask == 255, 0, mask)                 # only segments are stored
    assert pixels.shape == mask.shape and np.array_equal(pixels, want)
    assert json.loads((out / "classes.json").read_text())["classes"][2]["name"] == "nucleus"


def test_dicom_seg_without_dicom_images_is_refused(project, tmp_path):
    with pytest.raises(ExportError, match="nothing was exported"):
        export_dataset(project, tmp_path / "seg", ExportOptions(format="dicom-seg"))
    assert not (tmp_path / "seg").exists()
    assert not list(tmp_path.glob(".seg*"))


def test_slices_and_dicom_frames_export_as_image_files_in_2d_formats(tmp_path, rng):
    """NIfTI slices and DICOM images cannot be copied whole into PNG/VOC datasets: each slice
    is written as an image file of its own (PNG keeps 16 bits; VOC gets 8-bit JPEG)."""
    import cv2
    import nibabel as nib

    nib.save(nib.Nifti1Image(rng.integers(0, 3000, (30, 20, 3)).astype(np.uint16), np.eye(4)),
             str(tmp_path / "vol.nii.gz"))
    project = Project.create(tmp_path / "p", classes=list(CLASSES))
    project.add_images([tmp_path / "vol.nii.gz", write_ct(tmp_path / "ct.dcm")])
    for e in project.images:
        info = project.probe(e)
        project.masks.write(e.id, blob_mask(rng, info.height, info.width, unlabeled=False))
    export_dataset(project, tmp_path / "png", ExportOptions(format="png"))
    export_dataset(project, tmp_path / "voc", ExportOptions(format="voc"))
    for e in project.images:
        png = cv2.imread(str(tmp_path / "png" / "images" / e.split / f"{e.id}.png"),
                         cv2.IMREAD_UNCHANGED)
        assert np.array_equal(png, project.read_image(e).data)
        jpg = cv2.imread(str(tmp_path / "voc" / "VOCdevkit" / "VOC2012" / "JPEGImages" /
                             f"{e.id}.jpg"))
        assert jpg.shape[:2] == png.shape[:2]
