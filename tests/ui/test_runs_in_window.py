"""Broken, deleted and unreadable runs in the real window: listed truthfully, never a crash,
every refusal in one plain sentence."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.ml.test_broken_runs import BROKEN, STARTER, _runs_with_broken_ones

pytest.importorskip("torch")


def _row(panel, name: str) -> int:
    return next(r for r in range(panel.runs.rowCount()) if panel.runs.item(r, 0).text() == name)


def test_project_with_broken_runs_opens_and_lists_them_as_broken(qtbot, open_window, sample_copy):
    runs = _runs_with_broken_ones(sample_copy)
    w = open_window(sample_copy)          # reopening such a project used to raise here
    loop, panel = w.model_loop, w.model_loop.train_panel
    assert loop.active_run == runs / "good"
    assert panel.runs.rowCount() == 1 + len(BROKEN)
    for name, (_kind, _make, why) in BROKEN.items():
        status = panel.runs.item(_row(panel, name), 1).text()
        assert status.startswith("broken: ") and why in status, status
    assert panel.runs.item(_row(panel, "good"), 1).text() == "time-budget"   # its card says so
    # choosing a broken run keeps the model we had and says why
    panel.runs.selectRow(_row(panel, "metrics-x"))
    assert loop.active_run == runs / "good"
    assert panel.status.text().startswith("run metrics-x cannot be used: model_card.json: "
                                          "'metrics' is a string")
    assert w.errors == [], w.errors


def test_text_file_named_best_pt_is_named_in_the_window(qtbot, open_window, sample_copy):
    run = sample_copy / "runs" / "textrun"
    run.mkdir(parents=True)
    shutil.copy(STARTER / "model_card.json", run / "model_card.json")
    (run / "best.pt").write_text("this is not a model\n", encoding="utf-8")
    w = open_window(sample_copy)
    loop = w.model_loop
    assert loop.active_run == run
    expected = f"{run / 'best.pt'} is not a SegStudio checkpoint (not a PyTorch file)"
    qtbot.waitUntil(lambda: expected in w.errors, timeout=30_000)        # the auto-prediction
    assert not any(e.strip() == "101" for e in w.errors)
    w.errors.clear()
    qtbot.mouseClick(loop.predict_panel.retrain_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: loop.train_job is None and bool(w.errors), timeout=60_000)
    assert set(w.errors) == {expected}                 # the Retrain path: the same sentence


def test_deleted_active_run_is_dropped_before_retrain_and_when_the_runs_show(qtbot, open_window,
                                                                            sample_copy):
    runs = sample_copy / "runs"
    shutil.copytree(STARTER, runs / "mine")
    w = open_window(sample_copy)
    loop, panel = w.model_loop, w.model_loop.train_panel
    assert loop.active_run == runs / "mine" and panel.runs.rowCount() == 1
    shutil.rmtree(runs / "mine")
    qtbot.mouseClick(loop.predict_panel.retrain_button, Qt.MouseButton.LeftButton)
    assert loop.train_job is None                      # nothing started from a missing run
    assert w.errors == ["run mine was deleted; using the starter model starter-nuclei"]
    assert loop.active_run.name == "starter-nuclei" and panel.runs.rowCount() == 0
    # the table is re-listed whenever the Training tab is shown
    shutil.copytree(STARTER, runs / "again")
    loop.docks[1].raise_()
    loop.docks[0].raise_()
    qtbot.waitUntil(lambda: panel.runs.rowCount() == 1, timeout=5_000)
    panel.runs.selectRow(0)
    assert loop.active_run == runs / "again"
    shutil.rmtree(runs / "again")
    loop.docks[1].raise_()
    loop.docks[0].raise_()
    qtbot.waitUntil(lambda: panel.runs.rowCount() == 0, timeout=5_000)
    assert loop.active_run.name == "starter-nuclei"
    assert panel.status.text() == "run again was deleted; using the starter model starter-nuclei"


def test_training_background_only_is_refused_saying_what_to_label(qtbot, open_window,
                                                                  sample_copy):
    from segstudio.io.project import Project

    project = Project.open(sample_copy)
    for e in project.images:
        if project.masks.has_mask(e.id):
            info = project.probe(e)
            project.masks.write(e.id, np.zeros((info.height, info.width), np.uint8))
    w = open_window(sample_copy)
    loop, panel = w.model_loop, w.model_loop.train_panel
    panel.preset.setCurrentIndex(panel.preset.findData("tiny"))
    panel.epochs.setValue(1)
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: loop.train_job is None, timeout=60_000)
    assert len(w.errors) == 1 and "label some pixels of 'nucleus'" in w.errors[0], w.errors
    assert "Dice" not in panel.status.text()
    assert not any(Path(d).is_dir() for d in (sample_copy / "runs").glob("*"))
