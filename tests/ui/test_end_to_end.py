"""The whole loop as a user lives it, in the real window, on a copy of the sample project:
open, paint, undo/redo, train, predict, accept, measure, export PNG and COCO, reopen."""

import json

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest


pytest.importorskip("torch")


def _go(qtbot, w, image_id):
    w.show_image(image_id)
    qtbot.waitUntil(lambda: w.current is not None and w.current.id == image_id
                    and w.canvas.document is not None, timeout=10_000)


def test_the_whole_loop(qtbot, sample_copy, tmp_path, open_window, export_in_window):
    w = open_window(sample_copy, size=(1400, 900))
    assert w.images.list.count() == 14 and w.errors == []

    # paint a stroke on an unlabeled image, undo and redo it
    _go(qtbot, w, "nuclei_08")
    QTest.keyClick(w, Qt.Key.Key_1)
    QTest.keyClick(w, Qt.Key.Key_B)
    w.set_brush_radius(6)
    a, b = w.canvas.image_to_widget(40, 40), w.canvas.image_to_widget(40, 120)
    qtbot.mousePress(w.canvas, Qt.MouseButton.LeftButton, pos=QPoint(int(a.x()), int(a.y())))
    for k in range(1, 11):
        QTest.mouseMove(w.canvas, QPoint(int(a.x() + (b.x() - a.x()) * k / 10), int(a.y())))
    qtbot.mouseRelease(w.canvas, Qt.MouseButton.LeftButton, pos=QPoint(int(b.x()), int(b.y())))
    doc = w.canvas.document
    stroke = doc.mask.copy()
    assert (stroke[40, 45:115] == 1).all()
    QTest.keySequence(w, "Ctrl+Z")
    assert (doc.mask == 255).all()
    QTest.keySequence(w, "Ctrl+Shift+Z")
    assert np.array_equal(doc.mask, stroke)
    qtbot.waitUntil(lambda: "partly" in w.images.list.item(7).text(), timeout=5_000)

    # train a tiny model for a few seconds from the Training panel
    loop, tp = w.model_loop, w.model_loop.train_panel
    tp.preset.setCurrentIndex(tp.preset.findData("tiny"))
    tp.epochs.setValue(2)
    tp.minutes.setValue(0.3)
    qtbot.mouseClick(tp.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: loop.train_job is None, timeout=120_000)
    assert w.errors == [], w.errors
    run = loop.active_run
    assert run.parent == w.project.runs_dir and tp.runs.rowCount() == 1
    assert tp.progress.value() == 1000 and len(tp.loss_plot.series["loss"]) > 0

    # predict an unlabeled image and accept the prediction on it
    _go(qtbot, w, "nuclei_12")
    qtbot.waitUntil(lambda: loop.prediction is not None and loop.prediction.image_id == "nuclei_12"
                    and loop.prediction.run_id == run.name, timeout=60_000)
    qtbot.mouseClick(loop.predict_panel.accept_button, Qt.MouseButton.LeftButton)
    accepted = w.canvas.document.mask.copy()
    assert np.array_equal(accepted, loop.prediction.labels)
    assert w.undo_action.isEnabled()

    # read the per-class metrics from the panel
    mp = loop.metrics_panel
    qtbot.mouseClick(mp.evaluate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: mp.report is not None, timeout=60_000)
    names = [mp.classes.item(r, 0).text() for r in range(mp.classes.rowCount())]
    assert names[:2] == ["background", "nucleus"] and names[2].startswith("mean")
    # the sample's validation images hold nuclei: a real score, the one the report computed
    dice = mp.classes.item(1, 2).text()
    assert dice != "—", "nucleus is labelled in the validation images: it must get a score"
    assert 0.0 < float(dice) <= 1
    assert abs(float(dice) - float(mp.report.scores.dice[1])) < 1e-3
    assert "mean IoU" in mp.summary.text()

    # export to indexed PNG and to COCO
    for fmt in ("png", "coco"):
        export_in_window(w, tmp_path / fmt, fmt)
    from PIL import Image
    with Image.open(tmp_path / "png" / "masks" / "train" / "nuclei_12.png") as im:
        assert im.mode == "P"                       # indexed, with the class palette
        exported = np.array(im)
    assert np.array_equal(exported, accepted)
    coco = json.loads((tmp_path / "coco" / "annotations" / "instances_train.json").read_text())
    assert any(img["file_name"].endswith("nuclei_12.png") for img in coco["images"])
    w.close()

    # reopen: everything is there
    w2 = open_window(sample_copy, size=(1400, 900))
    qtbot.waitUntil(lambda: w2.current is not None and w2.current.id == "nuclei_12", timeout=10_000)
    assert np.array_equal(w2.canvas.document.mask, accepted)
    _go(qtbot, w2, "nuclei_08")
    assert np.array_equal(w2.canvas.document.mask, stroke)
    assert w2.model_loop.train_panel.runs.rowCount() == 1
    assert w2.model_loop.active_run == run
    assert "partly" in w2.images.list.item(7).text()
