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
