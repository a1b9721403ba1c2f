"""`segstudio-cli import --format instances --object-class` and `--as-objects`."""

import json

import numpy as np

from segstudio.cli import main
from segstudio.core.classes import LabelClass
from segstudio.io.project import Project
from tests.io.test_instances_io import DSB, _dsb_project, _layers, _project, read_instance_image

CLASSES3 = [LabelClass(0, "background", "#000000"), LabelClass(1, "debris", "#777777"),
            LabelClass(2, "nucleus", "#009E73")]


def test_instances_go_to_the_named_class(tmp_path):
    truth = read_instance_image(DSB)
    project = _project(tmp_path / "a", {"cells": truth.shape}, CLASSES3)
    _, src = _dsb_project(tmp_path / "b")      # only for its instances/cells.png
    assert main(["import", str(project.root), str(src), "--format", "instances",
                 "--object-class", "nucleus"]) == 0
    project = Project.open(project.root)
    assert project.class_by_id(2).objects and not project.class_by_id(1).objects
    mask, objects = _layers(project)
    assert int(objects.max()) == len(np.unique(truth[truth > 0]))
    assert set(np.unique(mask[objects > 0]).tolist()) == {2}


def test_coco_as_objects_from_the_cli(tmp_path):
    project, src = _dsb_project(tmp_path)
    assert main(["import", str(project.root), str(src), "--format", "instances"]) == 0
    out = tmp_path / "coco"
    assert main(["export", str(project.root), "--format", "coco", "--out", str(out)]) == 0
    n = len(json.loads((out / "annotations" / "instances_train.json").read_text())["annotations"])
    fresh = _project(tmp_path / "c", {"cells": read_instance_image(DSB).shape},
                     [LabelClass(0, "background", "#000000"), LabelClass(1, "nucleus", "#009E73")])
    assert main(["import", str(fresh.root), str(out), "--format", "coco", "--as-objects"]) == 0
    _, objects = _layers(Project.open(fresh.root))
    assert int(objects.max()) == n == 66
