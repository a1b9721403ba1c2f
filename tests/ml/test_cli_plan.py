"""`segstudio-cli plan`: the plan without training, in words and as JSON; CT gets CT's rule."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segstudio.cli import main
from segstudio.core.classes import LabelClass
from segstudio.io.project import Project
from tests.ml.conftest import make_blob_project


def test_plan_prints_every_item_with_its_reason(tmp_path, capsys):
    root = make_blob_project(tmp_path, np.random.default_rng(0))
    assert main(["plan", str(root)]) == 0
    out = capsys.readouterr().out
    assert "6 labelled image(s), 300-300 x 280-280 px, grey" in out
    for item in ("working scale:", "patch ", "U-Net depth", "augmentation:", "normalisation:"):
        assert item in out
    assert main(["plan", str(root), "--json", "--no-flip-h", "--working-size", "128"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["working"] == {"mode": "long_side", "long_side": 128}
    assert plan["flip_h"] is False and "flip_h set by you" in plan["reasons"]["augment"]


def test_plan_of_a_project_without_labels_says_what_to_do(tmp_path, capsys):
    project = Project.create(tmp_path / "p", classes=[LabelClass(0, "background", "#000000"),
                                                      LabelClass(1, "cell", "#ff0000")])
    assert main(["plan", str(project.root)]) == 1
    assert "no labelled images" in capsys.readouterr().err


def test_a_ct_image_gets_the_ct_normalisation(tmp_path, capsys):
    pydicom_data = pytest.importorskip("pydicom.data")
    ct = pydicom_data.get_testdata_file("CT_small.dcm")
    project = Project.create(tmp_path / "ct", classes=[LabelClass(0, "background", "#000000"),
                                                       LabelClass(1, "tissue", "#ff0000")])
    (entry,) = project.add_images([ct])
    hu = project.read_image(entry).data
    mask = np.zeros(hu.shape, np.uint8)
    mask[hu > -200] = 1                         # the body, in Hounsfield units
    project.masks.write(entry.id, mask)
    project.save()
    assert main(["plan", str(project.root), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["fingerprint"]["modality"] == "ct"
    norm = plan["normalisation"]
    assert norm["mode"] == "clip" and "CT" in plan["reasons"]["normalisation"]
    body = hu[mask == 1].astype(np.float64)
    lo, hi = np.percentile(body, [0.5, 99.5])
    assert norm["clip"] == pytest.approx([lo, hi], rel=0.02, abs=2)
