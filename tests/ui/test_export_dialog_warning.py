"""The Export dialog warns before a format that cannot say "unlabeled" turns the unlabeled
pixels of partly labelled images into background (counts from the manifest: no mask read)."""

import os
from pathlib import Path

from segstudio.ui.export_dialogs import ExportDialog


def test_export_dialog_warns_for_formats_without_unlabeled(qtbot, tmp_path):
    dlg = ExportDialog(["background", "cell"], tmp_path / "ds", label_status=(3, 10))
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.waitExposed(dlg)
    dlg.format.setCurrentIndex(dlg.format.findData("coco"))
    assert dlg.warning.isVisible()
    assert dlg.warning.text().startswith("3 of 10 image(s) are only partly labelled; COCO cannot "
                                         "mark pixels as unlabeled")
    shot = Path(os.environ.get("SEGSTUDIO_SHOTS", tmp_path)) / "export_warning.png"
    assert dlg.grab().save(str(shot))
    dlg.only_full.setChecked(True)                 # the way out it names
    assert not dlg.warning.isVisible()
    dlg.only_full.setChecked(False)
    dlg.format.setCurrentIndex(dlg.format.findData("yolo"))
    assert dlg.warning.isVisible() and "YOLO" in dlg.warning.text()
    for fmt in ("png", "nifti", "nnunet"):         # 255 or a declared ignore label
        dlg.format.setCurrentIndex(dlg.format.findData(fmt))
        assert not dlg.warning.isVisible(), fmt


def test_export_dialog_without_partly_labelled_images_shows_no_warning(qtbot, tmp_path):
    dlg = ExportDialog(["background", "cell"], tmp_path / "ds", label_status=(0, 10))
    qtbot.addWidget(dlg)
    dlg.show()
    dlg.format.setCurrentIndex(dlg.format.findData("coco"))
    assert not dlg.warning.isVisible()


def test_import_dialog_maps_labelme_ignore_to_unlabeled(qtbot, tmp_path):
    """labelme's __ignore__ is offered as "unlabeled" (255), _background_ as background."""
    import json

    import cv2
    import numpy as np

    from segstudio.core.classes import UNLABELED, LabelClass
    from segstudio.io.imports import import_annotations, preview_import
    from segstudio.io.project import Project
    from segstudio.ui.export_dialogs import ImportDialog

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((20, 30), np.uint8))
    project = Project.create(tmp_path / "p", classes=[LabelClass(0, "background", "#000000"),
                                                      LabelClass(1, "cell", "#E69F00")])
    project.add_images([tmp_path / "a.png"])
    project.save()
    src = tmp_path / "lm"
    src.mkdir()
    square = [[2, 2], [12, 2], [12, 12], [2, 12]]
    (src / "a.json").write_text(json.dumps({"imagePath": "a.png", "imageHeight": 20,
                                            "imageWidth": 30, "shapes": [
        {"label": "_background_", "points": [[0, 0], [29, 0], [29, 19], [0, 19]]},
        {"label": "cell", "points": square},
        {"label": "__ignore__", "points": [[15, 2], [25, 2], [25, 12]]}]}))
    dlg = ImportDialog(["background", "cell"],
                       lambda s, o: preview_import(Project.open(project.root), s, o))
    qtbot.addWidget(dlg)
    dlg.format.setCurrentIndex(dlg.format.findData("labelme"))
    dlg.src.setText(str(src))
    with qtbot.waitSignal(dlg.checked, timeout=30_000) as ok:
        dlg.check()
    assert ok.args == [True]
    assert dlg.current_mapping() == {"__ignore__": "unlabeled", "_background_": "background",
                                     "cell": "cell"}
    result = import_annotations(project, *dlg.options())
    assert result.added_classes == []
    mask = project.load_mask(project.images[0], (20, 30))
    assert mask[5, 5] == 1 and mask[4, 22] == UNLABELED and mask[18, 28] == 0
