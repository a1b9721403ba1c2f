"""The model half of the loop in the real window: predict -> accept -> edit -> undo -> retrain,
measure and label-next, with the starter model and with a freshly trained run."""

import json

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from segstudio.io.project import Project
from segstudio.ui.app import build_main_window

pytest.importorskip("torch")


@pytest.fixture
def win(qtbot, sample_copy):
    w = build_main_window(Project.open(sample_copy))
    qtbot.addWidget(w)
    w.resize(1300, 850)
    w.show()
    qtbot.waitExposed(w)
    qtbot.waitUntil(lambda: w.canvas.document is not None, timeout=10_000)
    return w


def _show(qtbot, w, image_id):
    w.show_image(image_id)
    qtbot.waitUntil(lambda: w.current is not None and w.current.id == image_id
                    and w.canvas.document is not None, timeout=10_000)


def test_starter_model_predicts_and_accept_is_one_undo_step(qtbot, win):
    w = win
    loop = w.model_loop
    assert loop.active_run is not None and loop.active_run.name == "starter-nuclei"
    _show(qtbot, w, "nuclei_07")                          # unlabeled
    qtbot.waitUntil(lambda: loop.prediction is not None and loop.prediction.image_id == "nuclei_07",
                    timeout=60_000)
    labels = loop.prediction.labels
    assert labels.shape == w.canvas.image_shape and 0.02 < (labels == 1).mean() < 0.5
    assert w.canvas.prediction.active
    for mode in ("prediction", "uncertainty", "disagreement", "mask", "both"):
        w.model_loop.predict_panel.view.setCurrentIndex(
            w.model_loop.predict_panel.view.findData(mode))
        assert w.canvas.prediction.mode == mode
    doc = w.canvas.document
    assert (doc.mask == 255).all()
    QTest.keyClick(w, Qt.Key.Key_A)                       # accept (only unlabeled pixels)
    assert np.array_equal(doc.mask, labels) and len(doc.history) == 1
    # correct it: erase a patch, then undo the correction and the accept
    doc.begin_stroke(); doc.dab(50, 50, 10, 255); doc.end_stroke()
    w.undo_action.trigger()
    assert np.array_equal(doc.mask, labels)
    w.undo_action.trigger()
    assert (doc.mask == 255).all()
    w.redo_action.trigger()
    w.saver.flush()
    assert np.array_equal(Project.open(w.project.root).masks.load("nuclei_07", doc.shape), labels)
    assert w.project.entry("nuclei_07").predicted
    # predicting a selection from the image list marks those images as predicted
    w.images.predict_requested.emit(["nuclei_12", "nuclei_14"])
    qtbot.waitUntil(lambda: w.project.entry("nuclei_12").predicted and w.project.entry("nuclei_14").predicted,
                    timeout=60_000)
    assert "predicted" in w.images.list.item(13).text()


def test_train_then_measure_rank_and_retrain(qtbot, win):
    w = win
    loop, panel = w.model_loop, w.model_loop.train_panel
    panel.preset.setCurrentIndex(panel.preset.findData("tiny"))
    panel.epochs.setValue(1)
    panel.minutes.setValue(0.5)
    assert not panel.balance.isChecked()             # two classes: plain cross-entropy
    panel.balance.setChecked(True)
    assert panel.config_values()["class_weights"] == "balanced"
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert not panel.start_button.isEnabled() and panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: loop.train_job is None, timeout=120_000)
    assert w.errors == [], w.errors
    first = loop.active_run
    assert first is not None and first.parent == w.project.runs_dir
    card = json.loads((first / "model_card.json").read_text())
    assert card["status"] in ("finished", "time-budget", "early-stopped")
    assert panel.runs.rowCount() == 1 and panel.loss_plot.series["loss"]
    # the new run predicts the current image
    qtbot.waitUntil(lambda: loop.prediction is not None and loop.prediction.run_id == first.name,
                    timeout=60_000)
    # measure: the metrics panel shows per-class rows and a confusion matrix
    loop.measure("val")
    mp = loop.metrics_panel
    qtbot.waitUntil(lambda: mp.report is not None, timeout=60_000)
    assert mp.classes.rowCount() == 3 and mp.classes.item(1, 0).text() == "nucleus"
    assert mp.confusion.rowCount() == 2 and mp.images.rowCount() == 2
    ious = [mp.images.item(r, 1).value for r in range(2)]
    assert ious == sorted(ious, key=lambda v: (v != v, v))          # worst first
    iou_text = mp.classes.item(1, 1).text()
    assert iou_text == "—" or 0.0 <= float(iou_text) <= 1.0
    # label this next
    loop.rank()
    qtbot.waitUntil(lambda: loop.predict_panel.ranking.count() > 0, timeout=60_000)
    ranked = loop.predict_panel.ranked_ids()
    loop.label_next()
    qtbot.waitUntil(lambda: w.current is not None and w.current.id == ranked[0] or
                    (w.current is not None and w.current.id in ranked), timeout=10_000)
    # retrain in one click: a fine-tuned run from the active one
    qtbot.mouseClick(loop.predict_panel.retrain_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: loop.train_job is None and loop.active_run != first, timeout=120_000)
    tuned = json.loads((loop.active_run / "model_card.json").read_text())
    assert tuned["fine_tuned_from"] and first.name in tuned["fine_tuned_from"]


def test_cancel_training_keeps_the_window_responsive(qtbot, win):
    w = win
    loop, panel = w.model_loop, w.model_loop.train_panel
    panel.preset.setCurrentIndex(panel.preset.findData("tiny"))
    panel.epochs.setValue(1000)
    panel.minutes.setValue(0)
    loop.start_training()
    qtbot.waitUntil(lambda: len(panel.loss_plot.series["loss"]) > 0, timeout=60_000)
    doc = w.canvas.document
    doc.begin_stroke(); doc.dab(30, 30, 5, 1); doc.end_stroke()     # painting goes on meanwhile
    import time
    t = time.monotonic()
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: loop.train_job is None, timeout=10_000)
    assert time.monotonic() - t < 2.0
    assert "Cancelled" in panel.status.text()
    run = next(d for d in w.project.runs_dir.iterdir() if d.is_dir())
    kept = [c for c in ("best.pt", "last.pt") if (run / c).is_file()]
    assert kept and panel.status.text() == f"Cancelled; run {run.name} keeps {' and '.join(kept)}."


def test_cancel_right_after_train_says_nothing_was_saved(qtbot, win):
    w = win
    loop, panel = w.model_loop, w.model_loop.train_panel
    panel.preset.setCurrentIndex(panel.preset.findData("tiny"))
    loop.start_training()
    loop.cancel_training()              # before the job has even read the images
    qtbot.waitUntil(lambda: loop.train_job is None, timeout=30_000)
    assert panel.status.text() == "Cancelled before the first checkpoint; nothing saved."
    runs = w.project.runs_dir
    assert not runs.exists() or not list(runs.rglob("*.pt"))
    assert w.errors == [], w.errors
