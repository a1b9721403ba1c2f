"""The main window on a real project: paint, undo, switch images, reopen, bad files."""

import json
import shutil

import cv2
import numpy as np
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest

from segstudio.io.project import Project


def _drag(qtbot, canvas, points):
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=points[0])
    for p in points[1:]:
        QTest.mouseMove(canvas, p)
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=points[-1])


def test_sample_opens_with_classes_thumbnails_and_status(qtbot, open_window, sample_copy):
    w = open_window(sample_copy, size=(1000, 700))
    assert w.images.list.count() == 14
    assert [w.class_panel.list.item(i).text().split()[0] for i in range(2)] == ["background", "nucleus"]
    assert "fully labelled" in w.images.list.item(0).text()
    qtbot.waitUntil(lambda: not w.images.list.item(13).icon().isNull(), timeout=10_000)
    assert w.errors == []


def test_the_window_hands_the_gil_back_quickly(qtbot, open_window, sample_copy):
    """Workers busy in Python would make each of the GUI thread's GIL hand-backs wait 5 ms."""
    import sys

    from segstudio.ui.app import GUI_SWITCH_INTERVAL_S

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    try:
        open_window(sample_copy)
        assert sys.getswitchinterval() <= GUI_SWITCH_INTERVAL_S + 1e-9 < 0.005
    finally:
        sys.setswitchinterval(old)


def test_drag_paints_one_undoable_stroke_that_is_saved(qtbot, open_window, sample_copy):
    w = open_window(sample_copy, size=(1000, 700))
    w.show_image("nuclei_07")   # unlabeled
    qtbot.waitUntil(lambda: w.current is not None and w.current.id == "nuclei_07" and w.canvas.document is not None)
    canvas, doc = w.canvas, w.canvas.document
    w.class_panel.select_id(1)
    w.set_brush_radius(4)
    a = canvas.image_to_widget(100, 40)
    b = canvas.image_to_widget(100, 200)
    pts = [QPoint(int(a.x() + (b.x() - a.x()) * t / 10), int(a.y())) for t in range(11)]
    _drag(qtbot, canvas, pts)
    assert (doc.mask[100, 45:195] == 1).all()
    assert len(doc.history) == 1 and w.undo_action.isEnabled()
    w.saver.flush()
    saved = Project.open(sample_copy).masks.load("nuclei_07", doc.shape)
    assert np.array_equal(saved, doc.mask)
    w.undo_action.trigger()
    assert (doc.mask == 255).all() and w.redo_action.isEnabled()
    w.saver.flush()
    assert (Project.open(sample_copy).masks.load("nuclei_07", doc.shape) == 255).all()
    w.redo_action.trigger()
    assert (doc.mask[100, 45:195] == 1).all()


def test_eraser_and_number_keys(qtbot, open_window, sample_copy):
    w = open_window(sample_copy, size=(1000, 700))
    doc = w.canvas.document
    QTest.keyClick(w, Qt.Key.Key_0)
    assert w.canvas.class_value == 0
    QTest.keyClick(w, Qt.Key.Key_E)
    assert w.canvas.tool == "eraser"
    p = w.canvas.image_to_widget(128, 128)
    _drag(qtbot, w.canvas, [QPoint(int(p.x()), int(p.y())), QPoint(int(p.x()) + 5, int(p.y()))])
    assert doc.mask[128, 128] == 255


def test_zoom_pan_and_view_state_restored(qtbot, open_window, sample_copy):
    w = open_window(sample_copy, size=(1000, 700))
    w.show_image("nuclei_12")
    qtbot.waitUntil(lambda: w.current.id == "nuclei_12" and w.canvas.image_shape == (360, 360))
    w.canvas.zoom_to(3.0, QPointF(100, 100))
    w.canvas.center_on(50, 70)
    w.close()
    w2 = open_window(sample_copy, size=(1000, 700))
    qtbot.waitUntil(lambda: w2.current is not None and w2.current.id == "nuclei_12")
    assert abs(w2.canvas.zoom - 3.0) < 1e-6
    cy, cx = w2.canvas.view_center()
    assert abs(cy - 50) < 1 and abs(cx - 70) < 1


def test_a_restored_view_is_drawn_once(qtbot, open_window, sample_copy, monkeypatch):
    """Opening a project at the view it was left in draws the image once, not fitted, then
    zoomed, then centred (three full redraws while the first jobs start)."""
    from segstudio.ui.canvas_view import CanvasView

    w = open_window(sample_copy, size=(1000, 700))
    w.show_image("nuclei_12")
    qtbot.waitUntil(lambda: w.current.id == "nuclei_12" and w.canvas.image_shape == (360, 360))
    w.canvas.show_view(2.5, 40, 60)
    w.close()
    calls = []
    original = CanvasView._render_all
    monkeypatch.setattr(CanvasView, "_render_all",
                        lambda self: (calls.append(self.zoom), original(self))[1])
    w2 = open_window(sample_copy, size=(1000, 700))
    qtbot.waitUntil(lambda: w2.current is not None and w2.current.id == "nuclei_12")
    assert calls[-1] == 2.5 and calls.count(2.5) == 1
    assert len([z for z in calls if z != 2.5]) <= 1      # at most the empty canvas's first draw
    cy, cx = w2.canvas.view_center()
    assert abs(cy - 40) < 1 and abs(cx - 60) < 1


def test_status_bar_shows_position_value_and_class(qtbot, open_window, sample_copy):
    w = open_window(sample_copy, size=(1000, 700))
    doc = w.canvas.document
    inside = cv2.erode((doc.mask == 1).astype(np.uint8), np.ones((7, 7), np.uint8))
    ys, xs = np.nonzero(inside)
    p = w.canvas.image_to_widget(ys[0] + 0.5, xs[0] + 0.5)
    QTest.mouseMove(w.canvas, QPoint(int(p.x()), int(p.y())))
    qtbot.waitUntil(lambda: w.class_label.text() == "nucleus")
    assert w.position_label.text().startswith("y ")
    assert w.value_label.text().startswith("value ")


def test_class_panel_add_rename_recolour_reorder_delete(qtbot, open_window, sample_copy, monkeypatch):
    from PySide6.QtWidgets import QMessageBox
    w = open_window(sample_copy, size=(1000, 700))
    panel = w.class_panel
    cls = panel.add_class("debris")
    assert cls.id == 2 and [c.name for c in w.project.classes][-1] == "debris"
    panel.rename_current("dirt")
    panel.recolor_current("#123456")
    panel.move_current(-1)
    saved = json.loads((sample_copy / "project.json").read_text())["classes"]
    assert [c["name"] for c in saved] == ["background", "dirt", "nucleus"]
    assert saved[1]["color"] == "#123456"
    # paint with it, then delete it: its pixels become unlabeled, after a confirmation
    doc = w.canvas.document
    doc.begin_stroke(); doc.dab(10, 10, 3, 2); doc.end_stroke()
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    panel.select_id(2)
    panel.delete_current()
    assert 2 not in [c.id for c in w.project.classes]
    assert not (doc.mask == 2).any()


def test_corrupt_image_is_reported_and_app_keeps_running(qtbot, open_window, sample_copy):
    data = (sample_copy / "images" / "nuclei_08.png").read_bytes()
    (sample_copy / "images" / "nuclei_08.png").write_bytes(data[:200])
    w = open_window(sample_copy, size=(1000, 700))
    w.show_image("nuclei_08")
    qtbot.waitUntil(lambda: any("nuclei_08" in e for e in w.errors), timeout=10_000)
    assert any("truncated or corrupt" in e for e in w.errors)
    w.show_image("nuclei_09")
    qtbot.waitUntil(lambda: w.current is not None and w.current.id == "nuclei_09")


def test_mask_of_wrong_size_opens_read_only_and_is_not_touched(qtbot, open_window, sample_copy):
    ok, buf = cv2.imencode(".png", np.zeros((10, 10), np.uint8))
    bad = sample_copy / "masks" / "nuclei_02.png"
    bad.write_bytes(buf.tobytes())
    w = open_window(sample_copy, size=(1000, 700))
    w.show_image("nuclei_02")
    qtbot.waitUntil(lambda: w.current is not None and w.current.id == "nuclei_02" and w.canvas.document is not None)
    assert w.canvas.document.read_only
    assert any("mask is 10 x 10 but its image is 256 x 256" in e for e in w.errors)
    p = w.canvas.image_to_widget(50, 50)
    _drag(qtbot, w.canvas, [QPoint(int(p.x()), int(p.y())), QPoint(int(p.x()) + 9, int(p.y()))])
    w.close()
    assert bad.read_bytes() == buf.tobytes()


def test_add_images_including_a_bad_one(qtbot, open_window, sample_copy, tmp_path):
    w = open_window(sample_copy, size=(1000, 700))
    good = tmp_path / "extra.png"
    shutil.copy(sample_copy / "images" / "nuclei_01.png", good)
    (tmp_path / "zero.tif").write_bytes(b"")
    with qtbot.waitSignal(w.images_added, timeout=10_000) as added:
        assert w.add_images([good, tmp_path / "zero.tif"]) is not None   # a job: never blocks
    assert len(added.args[0]) == 1 and w.images.list.count() == 15
    assert any("zero.tif" in e and "empty" in e for e in w.errors)
    assert len(Project.open(sample_copy).images) == 15


def test_16bit_image_gets_auto_contrast_and_presets(qtbot, open_window, tmp_path):
    img = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 7 + 30000)
    ok, buf = cv2.imencode(".png", img)
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.png").write_bytes(buf.tobytes())
    Project.from_folder(tmp_path / "raw", tmp_path / "proj")
    w = open_window(tmp_path / "proj", size=(1000, 700))
    rng = w.canvas.display_range
    assert 30000 <= rng.low < rng.high <= 30000 + 7 * 4096
    w.apply_preset("CT lung")
    assert w.canvas.display_range.low == -1350.0
    assert w.display_panel.low.value() == -1350.0
    assert w.loaded.data.dtype == np.uint16    # display never changes the data


def test_shortcuts_dialog_lists_the_keys(qtbot, open_window, sample_copy):
    w = open_window(sample_copy, size=(1000, 700))
    dlg = w.show_shortcuts()
    qtbot.addWidget(dlg)
    text = dlg.text.toPlainText()
    for key in ("Ctrl+Z", "Ctrl+0", "Space+drag", "Ctrl+T"):   # all keys: tests/ui/test_actions.py
        assert key in text


def test_screenshot_of_the_main_window(qtbot, open_window, sample_copy, tmp_path):
    w = open_window(sample_copy, size=(1000, 700))
    qtbot.waitUntil(lambda: not w.images.list.item(13).icon().isNull(), timeout=10_000)
    path = tmp_path / "main.png"
    assert w.grab().save(str(path))
    shot = cv2.imread(str(path))
    assert shot.shape[0] > 500 and shot.std() > 10   # a real picture, not a blank window


def test_split_and_reviewed_are_saved(qtbot, open_window, sample_copy):
    w = open_window(sample_copy, size=(1000, 700))
    w.set_split(["nuclei_01", "nuclei_02"], "test")
    QTest.keyClick(w, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    assert "reviewed" in w.images.list.item(0).text() and "test" in w.images.list.item(1).text()
    w.images.filter.setCurrentText("reviewed")
    assert w.images.visible_ids() == ["nuclei_01"]
    p = Project.open(sample_copy)
    assert p.entry("nuclei_01").reviewed and p.entry("nuclei_02").split == "test"


def test_dropping_files_adds_them(qtbot, open_window, sample_copy, tmp_path):
    from PySide6.QtCore import QMimeData, QUrl
    from PySide6.QtGui import QDropEvent
    w = open_window(sample_copy, size=(1000, 700))
    shutil.copy(sample_copy / "images" / "nuclei_03.png", tmp_path / "dropped.png")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "dropped.png"))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(w.images_added, timeout=10_000):
        w.dropEvent(event)
    assert w.images.list.count() == 15 and "dropped.png" in w.images.list.item(14).text()
