"""Formats that cannot say "unlabeled" (COCO, YOLO, DICOM-SEG) warn when partly labelled
images would silently turn their unlabeled pixels into background; those that can say what
value unlabeled pixels have, in export.json."""

from __future__ import annotations

import json

import pytest

from segstudio.io.export import ExportOptions, export_dataset, label_status, unlabeled_warning

from .conftest import make_project


@pytest.mark.parametrize("fmt, label", [("coco", "COCO"), ("yolo", "YOLO")])
def test_partly_labelled_images_warn_in_export_json_and_the_cli(tmp_path, capsys, fmt, label):
    from segstudio.cli import main

    project = make_project(tmp_path / "p", n=6)        # images 0 and 3 have a 255 band
    assert label_status(project) == (2, 6)
    assert main(["export", str(project.root), "--format", fmt, "--out", str(tmp_path / fmt)]) == 0
    err = capsys.readouterr().err
    expected = (f"2 of 6 image(s) are only partly labelled; {label} cannot mark pixels as "
                f"unlabeled, so theirs become background")
    assert f"warning: {expected}" in err and "--only-fully-labelled" in err
    manifest = json.loads((tmp_path / fmt / "export.json").read_text())
    assert len(manifest["warnings"]) == 1 and manifest["warnings"][0].startswith(expected)
    assert manifest["unlabeled"]["value"] is None

    # the way out the warning names: leave them out, and nothing is lost silently
    assert main(["export", str(project.root), "--format", fmt, "--out", str(tmp_path / "full"),
                 "--only-fully-labelled"]) == 0
    assert "warning:" not in capsys.readouterr().err
    manifest = json.loads((tmp_path / "full" / "export.json").read_text())
    assert manifest["warnings"] == [] and sum(manifest["counts"].values()) == 4


def test_formats_that_keep_unlabeled_say_which_value_it_has(tmp_path):
    project = make_project(tmp_path / "p", n=3)
    for fmt in ("png", "nifti"):
        result = export_dataset(project, tmp_path / fmt, ExportOptions(format=fmt))
        manifest = json.loads((tmp_path / fmt / "export.json").read_text())
        assert manifest["unlabeled"]["value"] == 255, fmt
        assert "are 255 in the masks" in manifest["unlabeled"]["note"], fmt
        assert "'nnunet'" in manifest["unlabeled"]["note"] and result.warnings == [], fmt
    # asked for: unlabeled -> background is no surprise, so no warning
    opts = ExportOptions(format="coco", unlabeled="background")
    assert unlabeled_warning(opts, 2, 3) is None
    assert unlabeled_warning(ExportOptions(format="png"), 2, 3) is None


def test_nifti_can_declare_unlabeled_as_the_value_after_the_last_class(tmp_path):
    import nibabel as nib
    import numpy as np

    from .conftest import mask_of

    project = make_project(tmp_path / "p", n=3)
    out = tmp_path / "nifti"
    export_dataset(project, out, ExportOptions(format="nifti", unlabeled="label"))
    classes = json.loads((out / "classes.json").read_text())
    assert classes["unlabeled"] == 3 and [c["id"] for c in classes["classes"]] == [0, 1, 2]
    assert json.loads((out / "export.json").read_text())["unlabeled"]["value"] == 3
    e = project.images[0]                                    # has a 255 band
    got = np.asarray(nib.load(str(out / "masks" / e.split / f"{e.id}.nii.gz")).dataobj).T
    want = mask_of(project, e.id).copy()
    want[want == 255] = 3
    assert (want == 3).any() and np.array_equal(got, want)
    # only the kept class: it is 1, unlabeled is 2
    export_dataset(project, tmp_path / "one", ExportOptions(format="png", unlabeled="label",
                                                            classes=("nucleus",)))
    assert json.loads((tmp_path / "one" / "classes.json").read_text())["unlabeled"] == 2
