"""Export and import from the window: dialogs, jobs with progress, results on disk."""

import json
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt

from segstudio.io.project import Project
from segstudio.ui.app import build_main_window
from segstudio.ui.export_dialogs import NEW_CLASS, ExportDialog, ImportDialog


def _window(qtbot, root):
    w = build_main_window(Project.open(root))
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.canvas.document is not None, timeout=10_000)
    return w


def test_export_dialog_builds_the_options(qtbot, tmp_path):
    dlg = ExportDialog(["background", "cell", "debris"], tmp_path / "ds")
    qtbot.addWidget(dlg)
    dlg.format.setCurrentIndex(dlg.format.findData("coco"))
    dlg.split.setCurrentIndex(dlg.split.findData("ratios"))
    dlg.coco_rle.setChecked(True)
    dlg.classes.item(1).setCheckState(Qt.CheckState.Unchecked)
    out, opts = dlg.options()
    assert out == tmp_path / "ds" and opts.format == "coco" and opts.split == "ratios"
    assert opts.coco_mode == "rle" and opts.classes == ("cell",)


def test_export_png_and_coco_from_the_window_then_import_back(qtbot, sample_copy, tmp_path,
                                                             export_in_window):
    w = _window(qtbot, sample_copy)
    doc = w.canvas.document
    painted = doc.mask.copy()
    for fmt in ("png", "coco"):
        export_in_window(w, tmp_path / fmt, fmt)
    assert (tmp_path / "png" / "classes.json").is_file()
    coco = json.loads(next((tmp_path / "coco" / "annotations").glob("instances_train.json")).read_text())
    assert [c["name"] for c in coco["categories"]] == ["nucleus"]
    # import the PNG export into a fresh copy of the project through the dialog's options
    dlg = ImportDialog([c.name for c in w.project.classes],
                       lambda src, opts: __import__("segstudio.io.imports", fromlist=["x"]).preview_import(
                           Project.open(sample_copy), src, opts))
    qtbot.addWidget(dlg)
    dlg.src.setText(str(tmp_path / "png" / "masks" / "train"))
    with qtbot.waitSignal(dlg.checked, timeout=30_000) as ok:
        dlg.check()                                   # on a worker: the dialog stays live
    assert ok.args == [True]
    assert dlg.current_mapping().get("nucleus") == "nucleus"
    src, opts = dlg.options()
    job = w.run_import(src, opts)
    with qtbot.waitSignal(job.signals.finished, timeout=60_000):
        pass
    assert not any("Import" in e for e in w.errors), w.errors
    qtbot.waitUntil(lambda: w.canvas.document is not None and w.current is not None, timeout=10_000)
    assert np.array_equal(w.canvas.document.mask, painted)


def test_import_dialog_reports_bad_input_and_offers_new_classes(qtbot, sample_copy, tmp_path):
    from segstudio.io.imports import preview_import
    bad = tmp_path / "labels"
    bad.mkdir()
    (bad / "classes.txt").write_text("nucleus\n")
    (bad / "nuclei_01.txt").write_text("0 0.1 0.1 0.2\n")          # odd number of coordinates
    dlg = ImportDialog(["background", "nucleus"],
                       lambda src, opts: preview_import(Project.open(sample_copy), src, opts))
    qtbot.addWidget(dlg)
    dlg.format.setCurrentIndex(dlg.format.findData("yolo"))
    dlg.src.setText(str(bad))
    with qtbot.waitSignal(dlg.checked, timeout=30_000) as ok:
        dlg.check()
    assert ok.args == [False]
    assert "nuclei_01.txt" in dlg.summary.text() and "line 1" in dlg.summary.text()
    assert not dlg.buttons.button(dlg.buttons.StandardButton.Ok).isEnabled()
    # a good file with a class the project lacks: offered as a new class
    (bad / "classes.txt").write_text("mitosis\n")
    (bad / "nuclei_01.txt").write_text("0 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5\n")
    with qtbot.waitSignal(dlg.checked, timeout=30_000) as ok:
        dlg.check()
    assert ok.args == [True]
    assert dlg.current_mapping() == {"mitosis": NEW_CLASS}
    _src, opts = dlg.options()
    assert opts.new_classes and opts.mapping == {"mitosis": "mitosis"}


def test_dialogs_list_the_registered_formats_and_their_options(qtbot):
    from segstudio.io.export import WRITERS
    from segstudio.io.imports import READERS

    dlg = ExportDialog(["background", "cell"], Path("/tmp/ds"))
    qtbot.addWidget(dlg)
    assert [dlg.format.itemData(i) for i in range(dlg.format.count())] == list(WRITERS)
    assert dlg.format.itemText(dlg.format.findData("voc")) == "Pascal VOC layout"
    for fmt, rle_applies in (("png", False), ("coco", True), ("yolo", False)):
        dlg.format.setCurrentIndex(dlg.format.findData(fmt))
        assert dlg.coco_rle.isEnabled() == rle_applies, fmt
    imp = ImportDialog(["background", "cell"], lambda src, opts: None)
    qtbot.addWidget(imp)
    assert [imp.format.itemData(i) for i in range(imp.format.count())] == list(READERS)
    for fmt, fill_applies in (("folder", False), ("coco", True), ("labelme", True)):
        imp.format.setCurrentIndex(imp.format.findData(fmt))
        assert imp.unannotated.isEnabled() == fill_applies, fmt


def test_add_images_dialog_offers_every_suffix_the_readers_take(qtbot, sample_copy, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from segstudio.io.images import IMAGE_READERS

    w = _window(qtbot, sample_copy)
    asked = []
    monkeypatch.setattr(QFileDialog, "getOpenFileNames",
                        staticmethod(lambda *args, **kw: (asked.append(args[3]), ([], ""))[1]))
    w.add_images_dialog()
    images, everything = asked[0].split(";;")
    offered = images.removeprefix("Images (").removesuffix(")").split()
    assert offered == [f"*{s}" for r in IMAGE_READERS.values() for s in r.suffixes]
    assert "*.dicom" in offered and "*.nii.gz" in offered and everything == "All files (*)"
