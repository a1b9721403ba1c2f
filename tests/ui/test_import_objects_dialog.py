"""The Import dialog's "classes hold objects" checkbox reaches the import (issue 16)."""

from __future__ import annotations

import json

import cv2
import numpy as np

from segstudio.core.classes import LabelClass
from segstudio.io.imports import import_annotations, preview_import
from segstudio.io.project import Project
from segstudio.ui.export_dialogs import ImportDialog


def test_objects_checkbox_makes_labelme_shapes_objects(qtbot, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    cv2.imwrite(str(src / "frame.png"), np.zeros((20, 30), np.uint8))
    project = Project.create(tmp_path / "p", classes=[LabelClass(0, "background", "#000000"),
                                                      LabelClass(1, "cell", "#E69F00")])
    project.add_images([src / "frame.png"])
    square = lambda x: [[x, 2], [x + 6, 2], [x + 6, 8], [x, 8]]   # noqa: E731
    (src / "frame.json").write_text(json.dumps({"shapes": [
        {"label": "cell", "points": square(2), "shape_type": "polygon"},
        {"label": "cell", "points": square(9), "shape_type": "polygon"}],     # touching
        "imagePath": "frame.png", "imageHeight": 20, "imageWidth": 30}))
    dlg = ImportDialog(["background", "cell"], lambda s, o: preview_import(project, s, o))
    qtbot.addWidget(dlg)
    dlg.format.setCurrentIndex(dlg.format.findData("folder"))
    assert not dlg.as_objects.isEnabled()               # class ids only: nothing to choose
    dlg.format.setCurrentIndex(dlg.format.findData("labelme"))
    assert dlg.as_objects.isEnabled()
    dlg.as_objects.setChecked(True)
    dlg.src.setText(str(src / "frame.json"))
    with qtbot.waitSignal(dlg.checked, timeout=30_000) as ok:
        dlg.check()
    assert ok.args == [True] and "objects of: cell" in dlg.summary.text()
    path, opts = dlg.options()
    assert opts.as_objects
    import_annotations(project, path, opts)
    objects = project.load_objects(project.images[0], (20, 30))
    assert project.classes[1].objects and objects[5, 5] != objects[5, 12] != 0
