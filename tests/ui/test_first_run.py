"""First run, feedback and settings: welcome page, hint, jobs in the status bar, errors, layout."""

import logging
import time

from PySide6.QtCore import Qt

from segstudio.core.jobs import Progress
from segstudio.io.project import Project
from segstudio.io.userdirs import sample_project
from segstudio.ui.app import build_main_window, choose_project
from segstudio.workers.job import Job


def _show(qtbot, w):
    qtbot.addWidget(w)
    w.resize(1100, 750)
    w.show()
    qtbot.waitExposed(w)
    return w


def test_welcome_page_on_first_run_then_sample_with_hint(qtbot):
    project, problem = choose_project(None, sample=False)
    assert project is None and problem is None          # nothing recent: the welcome page
    w = _show(qtbot, build_main_window(project))
    assert w.pages.currentWidget() is w.welcome
    assert w.welcome.recent.item(0).text() == "(none yet)"
    qtbot.mouseClick(w.welcome.sample_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.canvas.document is not None, timeout=10_000)
    assert w.pages.currentIndex() == 1 and w.hint.isVisible()
    qtbot.mouseClick(w.hint.close_button, Qt.MouseButton.LeftButton)
    assert not w.hint.isVisible()
    w.close()
    # the next start opens the last project, and the hint stays dismissed
    again, _ = choose_project(None, sample=False)
    assert again is not None and again.root == sample_project().resolve()
    w2 = _show(qtbot, build_main_window(again))
    qtbot.waitUntil(lambda: w2.canvas.document is not None, timeout=10_000)
    assert not w2.hint.isVisible()


def test_settings_persist_and_layout_resets(qtbot, sample_copy):
    w = _show(qtbot, build_main_window(Project.open(sample_copy)))
    w.set_tool("polygon")
    w.set_brush_radius(17)
    w.display_panel.opacity.setValue(80)
    w.outline_action.trigger()
    w.model_loop.train_panel.device.setCurrentText("cpu")
    images_dock = w.images.parent()
    images_dock.hide()
    w.close()
    w2 = _show(qtbot, build_main_window(Project.open(sample_copy)))
    assert w2.canvas.tool == "polygon" and w2.canvas.brush_radius == 17
    assert abs(w2.canvas.opacity - 0.8) < 1e-6 and w2.canvas.outline
    assert w2.model_loop.train_panel.device.currentText() == "cpu"
    assert not w2.images.parent().isVisible()
    w2.reset_layout()
    assert w2.images.parent().isVisible()


def _work(steps, *, fail=False, on_progress=None, cancel=None):
    for i in range(steps):
        cancel.raise_if_cancelled()
        time.sleep(0.01)
        on_progress(Progress(i + 1, steps, "step"))
        if fail and i == 2:
            raise ValueError("the loss became NaN at step 3")
    return "ok"


def test_job_error_reaches_the_user_as_dialog_and_log_line(qtbot, sample_copy, caplog):
    from PySide6.QtWidgets import QMessageBox
    w = _show(qtbot, build_main_window(Project.open(sample_copy)))
    qtbot.waitUntil(lambda: w.canvas.document is not None, timeout=10_000)
    job = Job(_work, 10, fail=True, name="Training")
    with qtbot.waitSignal(job.signals.finished, timeout=10_000):
        w._start_job(job, visible=True)
    qtbot.waitUntil(lambda: any("NaN" in e for e in w.errors))
    boxes = [b for b in w.findChildren(QMessageBox) if b.isVisible()]
    assert any("NaN at step 3" in b.text() and "Traceback" in b.detailedText() for b in boxes)
    log_text = w.log_path.read_text()
    assert "Training failed" in log_text and "NaN at step 3" in log_text
    # the window still works: paint a stroke and undo it
    doc = w.canvas.document
    doc.begin_stroke(); doc.dab(20, 20, 4, 1); doc.end_stroke()
    w.undo_action.trigger()
    qtbot.waitUntil(lambda: not w.jobs_view.isVisible(), timeout=20_000)


def test_jobs_indicator_shows_progress_and_cancels(qtbot, sample_copy):
    w = _show(qtbot, build_main_window(Project.open(sample_copy)))
    # the window's own start-up jobs (the starter model's first prediction) end first, so the
    # indicator's Cancel belongs to this job and no other
    qtbot.waitUntil(lambda: w.canvas.document is not None and not w.jobs_view.isVisible(),
                    timeout=60_000)
    job = Job(_work, 500, name="Counting sheep")
    cancelled = []
    job.signals.cancelled.connect(lambda: cancelled.append(True))
    w._start_job(job, visible=True)
    qtbot.waitUntil(lambda: w.jobs_view.isVisible() and w.jobs_view.bar.value() > 0, timeout=5_000)
    assert "Counting sheep" in w.jobs_view.label.text()
    qtbot.mouseClick(w.jobs_view.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(cancelled), timeout=5_000)
    qtbot.waitUntil(lambda: not w.jobs_view.isVisible(), timeout=5_000)
    assert logging.getLogger("segstudio").level <= logging.INFO


def test_plain_error_sentences():
    from segstudio.ui.main_window import plain_error
    tb = "Traceback (most recent call last):\n  File x\nsegstudio.ml.train.TrainingError: the loss became nan"
    assert plain_error(tb) == "the loss became nan"
    assert plain_error("Traceback\nValueError: bad size") == "bad size"
    assert plain_error("Traceback\nMemoryError: out of memory") == "MemoryError: out of memory"
    assert plain_error("") == "unknown error"


def test_broken_manifest_and_bad_files_reported_in_the_window(qtbot, sample_copy, tmp_path, open_window):
    w = open_window(sample_copy)
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "project.json").write_text("{ not json")
    assert not w.open_project_path(bad)
    assert any("not valid JSON (line 1" in e for e in w.errors)
    assert w.project is not None and w.project.root == sample_copy.resolve()   # still open
    (tmp_path / "notes.tif").write_text("not an image")
    with qtbot.waitSignal(w.images_added, timeout=10_000) as added:
        w.add_images([tmp_path / "notes.tif"])
    assert added.args[0] == [] and any("notes.tif: not a readable TIFF" in e for e in w.errors)
