"""The model half of the loop in the real window: predict -> accept -> edit -> undo -> retrain,
measure and label-next, with the starter model and with a freshly trained run."""

import json

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from segstudio.io.project import Project
from segstudio.ml.events import StepDone
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
    # the curves come from the typed events: one loss point per step, one Dice point per epoch
    assert [x for x, _ in panel.loss_plot.series["loss"]] == [float(i) for i in range(
        1, card["steps"] + 1)]
    dice = [(float(h["epoch"]), h["mean_dice"]) for h in card["history"]
            if h["mean_dice"] is not None]
    assert panel.val_plot.series["mean Dice"] == dice and dice
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
    # nucleus is labelled in both val images: its IoU is a number, never "—"
    report = mp.report
    assert float(mp.classes.item(1, 1).text()) == pytest.approx(report.scores.iou[1], abs=5e-4)
    assert 0.0 <= report.scores.iou[1] <= 1.0
    # one path: the runs table's mean Dice is the Metrics panel's, on the same val images
    dice = report.means["dice"]
    assert panel.runs.item(0, 2).text() == (f"{dice:.3f}" if dice == dice else "—")
    # label this next: most uncertain first, and "Next" opens the first one still to label
    loop.rank()
    qtbot.waitUntil(lambda: loop.predict_panel.ranking.count() > 0, timeout=60_000)
    ranked = loop.predict_panel.ranked_ids()
    texts = [loop.predict_panel.ranking.item(i).text() for i in range(len(ranked))]
    scores = [float(t.rsplit("uncertainty", 1)[1]) for t in texts]
    assert len(ranked) >= 2 and scores == sorted(scores, reverse=True)
    current = w.current.id
    expected = next(i for i in ranked if i != current and w.project.entry(i).labelled < 1.0)
    loop.label_next()
    qtbot.waitUntil(lambda: w.current is not None and w.current.id == expected, timeout=10_000)
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
    job = loop.train_job
    steps_after_cancel = []

    def on_progress(p):             # runs on the worker, as the trainer reports each step
        if job.token.cancelled and isinstance(p, StepDone):
            steps_after_cancel.append(p.step)

    job.signals.progress.connect(on_progress, Qt.ConnectionType.DirectConnection)
    qtbot.waitUntil(lambda: len(panel.loss_plot.series["loss"]) > 0, timeout=60_000)
    doc = w.canvas.document
    doc.begin_stroke(); doc.dab(30, 30, 5, 1); doc.end_stroke()     # painting goes on meanwhile
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: loop.train_job is None, timeout=30_000)
    # the step under way when Cancel was pressed may finish; no step starts after it
    assert len(steps_after_cancel) <= 1, steps_after_cancel
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


def test_settings_that_cannot_train_are_refused_in_the_panel(qtbot, win):
    """Train checks the settings first: the reason in the panel, no job, no run folder."""
    w = win
    loop, panel = w.model_loop, w.model_loop.train_panel
    panel.device.addItem("tpu")              # e.g. restored from a newer version's settings
    panel.device.setCurrentText("tpu")
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert loop.train_job is None and panel.start_button.isEnabled()
    assert panel.status.text() == ("Cannot train with these settings: unknown device 'tpu'; "
                                   "use auto, cpu, cuda, cuda:N or mps")
    assert not w.project.runs_dir.exists() or not any(w.project.runs_dir.iterdir())
    assert w.errors == [], w.errors


def test_model_loop_works_without_a_window(qtbot, sample_copy):
    """The loop is built from its seams alone: a canvas, a job starter, the open image."""
    from PySide6.QtCore import QThreadPool

    from segstudio.ui.canvas import MaskCanvas
    from segstudio.ui.model_loop import ModelLoop, ModelSeams

    project = Project.open(sample_copy)
    canvas = MaskCanvas()
    qtbot.addWidget(canvas)
    started, messages, errors = [], [], []

    def start_job(job, visible=False):
        started.append(job.name)
        job.signals.failed.connect(errors.append)
        QThreadPool.globalInstance().start(job)
        return job

    loop = ModelLoop(canvas, ModelSeams(
        state=lambda: (project, None, None), start_job=start_job,
        show_message=lambda text, _ms=0: messages.append(text),
        report_error=lambda *a: errors.append(a)))
    qtbot.addWidget(loop.train_panel)
    loop.project_opened(project)
    assert loop.active_run is not None and loop.active_run.name == "starter-nuclei"
    panel = loop.train_panel
    panel.device.addItem("tpu")
    panel.device.setCurrentText("tpu")
    loop.start_training()
    assert "unknown device 'tpu'" in panel.status.text()
    assert [n for n in started if n != "warm-up"] == []             # no job for that
    panel.device.setCurrentText("cpu")
    panel.preset.setCurrentIndex(panel.preset.findData("tiny"))
    panel.epochs.setValue(1)
    panel.minutes.setValue(0.05)
    loop.start_training()
    assert [n for n in started if n != "warm-up"] == ["Training"] and loop.train_job is not None
    qtbot.waitUntil(lambda: loop.train_job is None, timeout=120_000)
    assert errors == [], errors
    assert loop.active_run is not None and loop.active_run.parent == project.runs_dir
    assert any(m.startswith("Training finished") for m in messages), messages
    assert panel.runs.rowCount() == 1 and panel.loss_plot.series["loss"]
    QThreadPool.globalInstance().waitForDone(30_000)
