"""The DICOM-SEG export checked by an outside validator: dciodvfy (Debian's `dicom3tools`),
when it is installed. It is a checker run as a program, never a dependency of the package."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from segstudio.core.classes import LabelClass
from segstudio.io.export import ExportOptions, export_dataset
from segstudio.io.project import Project

from .phantom_series import make_phantom, write_ct_series

DCIODVFY = shutil.which("dciodvfy")


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) is not installed")
def test_the_dicom_seg_of_a_series_has_no_errors_or_warnings_in_dciodvfy(tmp_path):
    write_ct_series(tmp_path / "scan", make_phantom(n=8, rows=32, cols=40))
    project = Project.from_folder(tmp_path / "scan", tmp_path / "proj", classes=[
        LabelClass(0, "background", "#000000"), LabelClass(1, "liver", "#aa3322"),
        LabelClass(2, "lesion", "#3355cc")])
    record = next(iter(project.series.values()))
    slices = project.slices_of(record.id)
    for k in (2, 5):
        m = np.zeros((record.rows, record.cols), np.uint8)
        m[5:20, 5:30] = 1
        m[8:12, 10:14] = 2
        project.masks.write(slices[k].id, m)
    export_dataset(project, tmp_path / "seg", ExportOptions(format="dicom-seg"))
    (seg,) = sorted((tmp_path / "seg").rglob("*.seg.dcm"))
    run = subprocess.run([DCIODVFY, str(seg)], capture_output=True, text=True, timeout=60)
    said = (run.stdout + run.stderr).splitlines()
    assert said and said[0].strip() == "Segmentation"     # it read the file as a SEG object
    problems = [line for line in said if line.startswith(("Error", "Warning"))]
    assert problems == []
