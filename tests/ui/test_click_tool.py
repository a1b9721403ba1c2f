"""The Click tool (K) with real mouse and key events and a really trained small click model."""

import cv2
import numpy as np
import pytest
import torch
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from segstudio.io.project import Project
from segstudio.ml.click_backend import OursBackend
from segstudio.ml.click_model import ClickConfig, click_data, train_click_model
from segstudio.ui.app import build_main_window

DISK = ((100, 90), 30)        # centre (y, x), radius
SQUARE = (85, 121, 116, 150)  # y0, x0, y1, x1: touches the disk's right edge, same brightness


def _scene(rng, shape=(200, 220)):
    img = rng.normal(30, 4, shape).clip(0, 255).astype(np.uint8)
    mask = np.zeros(shape, np.uint8)
    objects = np.zeros(shape, np.uint32)
    for k in range(1, 4):
        r = int(rng.integers(15, 35))
        cy, cx = int(rng.integers(40, 160)), int(rng.integers(40, 180))
        disk = np.zeros(shape, np.uint8)
        cv2.circle(disk, (cx, cy), r, 1, -1)
        img[disk > 0] = 190
        mask[disk > 0] = 1
        objects[disk > 0] = k
    return img, mask, objects


@pytest.fixture(scope="module")
def click_run(tmp_path_factory):
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    items = [(f"s{i}", *_scene(rng)) for i in range(6)]
    res = train_click_model(click_data(items, frozenset({1})),
                            # windows never tighter than 1.4 x an object: a box over the disk
                            # and the square it touches answers both (the case to correct)
                            ClickConfig(steps=220, minutes=30, size=32, depth=2, width=8,
                                        batch_size=8, threads=1, margin_low=1.4),
                            runs_dir=tmp_path_factory.mktemp("clickruns"))
    return res.run_dir


@pytest.fixture
def win(qtbot, tmp_path, click_run):
    rng = np.random.default_rng(0)
    raw = tmp_path / "raw"
    raw.mkdir()
    img = rng.normal(30, 4, (200, 220)).clip(0, 255).astype(np.uint8)
    cv2.circle(img, (DISK[0][1], DISK[0][0]), DISK[1], 190, -1)
    y0, x0, y1, x1 = SQUARE
    img[y0:y1, x0:x1] = 190
    cv2.imwrite(str(raw / "a.png"), img)
    project = Project.from_folder(raw, tmp_path / "proj")
    w = build_main_window(project)
    qtbot.addWidget(w)
    w.resize(1000, 700)
    w.show()
    qtbot.waitExposed(w)
    qtbot.waitUntil(lambda: w.canvas.document is not None, timeout=10_000)
    w.class_panel.select_id(1)
    QTest.keyClick(w, Qt.Key.Key_K)
    assert w.canvas.tool == "click"
    w.canvas.tools["click"].backend = OursBackend(click_run)
    return w


def at(w, y, x) -> QPoint:
    p = w.canvas.image_to_widget(y + 0.5, x + 0.5)
    return QPoint(int(round(p.x())), int(round(p.y())))


def disk():
    t = np.zeros((200, 220), np.uint8)
    cv2.circle(t, (DISK[0][1], DISK[0][0]), DISK[1], 1, -1)
    return t.astype(bool)



def iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def test_click_proposes_enter_commits_one_undo_step_and_saves(qtbot, win):
    w = win
    doc = w.canvas.document
    tool = w.canvas.tools["click"]
    qtbot.mouseClick(w.canvas, Qt.MouseButton.LeftButton, pos=at(w, *DISK[0]))
    qtbot.waitUntil(lambda: w.canvas.proposal is not None, timeout=10_000)
    assert (doc.mask == 255).all()                     # nothing written before Enter
    QTest.keyClick(w.canvas, Qt.Key.Key_Return)
    assert w.canvas.proposal is None and tool.prompt.is_empty
    truth = disk()
    assert (doc.mask == 1)[truth].mean() > 0.8
    assert w.undo_action.isEnabled()
    w.undo_action.trigger()
    assert (doc.mask == 255).all()                     # one step took it all back
    w.redo_action.trigger()
    assert (doc.mask == 1)[truth].mean() > 0.8
    assert w.saver.flush()
    again = Project.open(w.project.root)
    assert np.array_equal(again.load_mask(again.entry("a"), doc.shape), doc.mask)


def test_escape_drops_the_proposal_and_leaves_the_mask(qtbot, win):
    w = win
    doc = w.canvas.document
    qtbot.mouseClick(w.canvas, Qt.MouseButton.LeftButton, pos=at(w, *DISK[0]))
    qtbot.waitUntil(lambda: w.canvas.proposal is not None, timeout=10_000)
    QTest.keyClick(w.canvas, Qt.Key.Key_Escape)
    assert w.canvas.proposal is None and (doc.mask == 255).all()
    assert not w.undo_action.isEnabled()


def test_right_click_removes_a_wrongly_included_part(qtbot, win):
    w = win
    tool = w.canvas.tools["click"]
    y0, x0, y1, x1 = SQUARE
    square = np.zeros((200, 220), bool)
    square[y0:y1, x0:x1] = True
    # a dragged box over the disk and the square: the proposal takes both in
    qtbot.mousePress(w.canvas, Qt.MouseButton.LeftButton, pos=at(w, 66, 58))
    for i in range(1, 9):
        QTest.mouseMove(w.canvas, at(w, 66 + 68 * i / 8, 58 + 95 * i / 8))
    qtbot.mouseRelease(w.canvas, Qt.MouseButton.LeftButton, pos=at(w, 134, 153))
    qtbot.waitUntil(lambda: tool._mask is not None, timeout=10_000)
    assert tool.prompt.box is not None and not tool.prompt.clicks
    first = tool._mask.copy()
    assert first[square].mean() > 0.5
    gen = tool.generation
    qtbot.mouseClick(w.canvas, Qt.MouseButton.RightButton,
                     pos=at(w, (y0 + y1) // 2, (x0 + x1) // 2 + 6))
    qtbot.waitUntil(lambda: tool.generation > gen and tool._mask is not None
                    and tool._answered == tool.generation, timeout=10_000)
    second = tool._mask
    assert len(tool.prompt.clicks) == 1 and not tool.prompt.clicks[0].positive
    assert tool.prompt.class_id == w.canvas.class_value     # the class a model may read
    assert second[square].mean() < first[square].mean() - 0.3
    assert second[disk()].mean() > 0.6


def test_train_click_model_from_the_menu_answers_the_next_click(qtbot, open_window, sample_copy):
    """Model > Train Click Model trains on the project's labels in the background; once done
    the Click tool drops its model and the next click is answered by the new run."""
    w = open_window(sample_copy)
    tool = w.canvas.tools["click"]
    w.click_training.options = dict(steps=25, minutes=2, size=32, depth=2, width=8,
                                    batch_size=4, threads=1)
    assert w.click_training.action.text() == "Train Click Model"
    menu_texts = [a.text() for m in w.menuBar().actions() if m.menu() is not None
                  and m.menu().title().replace("&", "") == "Model" for a in m.menu().actions()]
    assert "Train Click Model" in menu_texts
    tool.backend = "stale"            # whatever answered before is dropped when the run is done
    w.click_training.action.trigger()
    job = w.click_training.job
    assert job is not None
    done = []
    job.signals.succeeded.connect(done.append)
    qtbot.waitUntil(lambda: w.click_training.job is None, timeout=120_000)
    assert done, "the click training job did not succeed"
    run = done[0].run_dir
    assert run.parent == sample_copy / "runs" / "click" and (run / "best.pt").is_file()
    assert done[0].steps == 25 and tool.backend is None
    QTest.keyClick(w, Qt.Key.Key_K)
    shape = w.canvas.image_shape
    QTest.mouseClick(w.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     at(w, shape[0] // 2, shape[1] // 2))
    qtbot.waitUntil(lambda: tool.backend is not None, timeout=60_000)
    assert tool.backend.model.run_dir == run
