"""Every tool driven by real mouse events through qtbot, each with an undo/redo round trip."""

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtCore import QPointF
from PySide6.QtTest import QTest

from segstudio.io.project import Project
from segstudio.ui.app import build_main_window

DISK = ((100, 110), 40)  # centre (y, x), radius


@pytest.fixture
def win(qtbot, tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, shift in (("a.png", 0), ("b.png", 5)):
        img = rng.normal(30, 4, (200, 220)).clip(0, 255).astype(np.uint8)
        cv2.circle(img, (DISK[0][1] + shift, DISK[0][0]), DISK[1], 190, -1)
        cv2.imwrite(str(raw / name), img)
    project = Project.from_folder(raw, tmp_path / "proj")
    w = build_main_window(project)
    qtbot.addWidget(w)
    w.resize(1000, 700)
    w.show()
    qtbot.waitExposed(w)
    qtbot.waitUntil(lambda: w.canvas.document is not None, timeout=10_000)
    w.class_panel.select_id(1)
    return w


def truth_disk(shape=(200, 220)):
    t = np.zeros(shape, np.uint8)
    cv2.circle(t, (DISK[0][1], DISK[0][0]), DISK[1], 1, -1)
    return t.astype(bool)


def at(w, y, x) -> QPoint:
    p = w.canvas.image_to_widget(y + 0.5, x + 0.5)
    return QPoint(int(round(p.x())), int(round(p.y())))


def click(qtbot, w, y, x, button=Qt.MouseButton.LeftButton, mods=Qt.KeyboardModifier.NoModifier):
    qtbot.mouseClick(w.canvas, button, mods, at(w, y, x))


def drag(qtbot, w, a, b, steps=12, mods=Qt.KeyboardModifier.NoModifier):
    qtbot.mousePress(w.canvas, Qt.MouseButton.LeftButton, mods, at(w, *a))
    for i in range(1, steps + 1):
        QTest.mouseMove(w.canvas, at(w, a[0] + (b[0] - a[0]) * i / steps, a[1] + (b[1] - a[1]) * i / steps))
    qtbot.mouseRelease(w.canvas, Qt.MouseButton.LeftButton, mods, at(w, *b))


def key(w, k):
    QTest.keyClick(w.canvas, k)


def iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def round_trip(w, changed_mask):
    """Undo restores the mask before the tool, redo brings the change back."""
    doc = w.canvas.document
    after = doc.mask.copy()
    assert np.array_equal(after, changed_mask)
    w.undo_action.trigger()
    before = doc.mask.copy()
    assert not np.array_equal(before, after)
    w.redo_action.trigger()
    assert np.array_equal(doc.mask, after)
    return before


def test_rectangle_then_fill_with_connectivity(qtbot, win):
    w = win
    QTest.keyClick(w, Qt.Key.Key_R)
    assert w.canvas.tool == "rectangle"
    drag(qtbot, w, (20, 30), (60, 90))
    doc = w.canvas.document
    assert (doc.mask[20:61, 30:91] == 1).all() and doc.mask[19, 30] == 255
    round_trip(w, doc.mask.copy())
    QTest.keyClick(w, Qt.Key.Key_G)
    QTest.keyClick(w, Qt.Key.Key_0)        # background class
    click(qtbot, w, 150, 150)
    assert (doc.mask[20:61, 30:91] == 1).all() and (doc.mask == 255).sum() == 0
    before = round_trip(w, doc.mask.copy())
    assert (before == 255).sum() > 0


def test_polygon_by_clicks_and_lasso_by_drag(qtbot, win):
    w = win
    QTest.keyClick(w, Qt.Key.Key_L)
    for y, x in ((20, 20), (20, 80), (80, 20)):
        click(qtbot, w, y, x)
    qtbot.mouseDClick(w.canvas, Qt.MouseButton.LeftButton, pos=at(w, 80, 20))
    doc = w.canvas.document
    tri = doc.mask == 1
    assert 1500 < tri.sum() < 2000 and tri[30, 30] and not tri[75, 75]
    round_trip(w, doc.mask.copy())
    # Enter closes too; Esc drops a half-drawn polygon
    for y, x in ((150, 150), (150, 200), (190, 150)):
        click(qtbot, w, y, x)
    key(w, Qt.Key.Key_Escape)
    assert (doc.mask[150:190, 150:200] == 255).all()
    # a freehand drag is a lasso: released, it closes and fills
    qtbot.mousePress(w.canvas, Qt.MouseButton.LeftButton, pos=at(w, 120, 120))
    pts = [(120 + 30 * np.sin(t), 150 + 30 * np.cos(t) - 30) for t in np.linspace(0, 2 * np.pi, 40)]
    for y, x in pts:
        QTest.mouseMove(w.canvas, at(w, y, x))
    qtbot.mouseRelease(w.canvas, Qt.MouseButton.LeftButton, pos=at(w, *pts[-1]))
    # the drag started at the centre: the lasso is the disk (but for the slit along row 120)
    assert doc.mask[130, 135] == 1 and doc.mask[105, 115] == 1 and len(doc.history) == 2


def test_magic_wand_shows_a_proposal_then_enter_commits(qtbot, win):
    w = win
    QTest.keyClick(w, Qt.Key.Key_W)
    w.editing.tolerance_spin.setValue(60)
    click(qtbot, w, 100, 110)
    assert w.canvas.proposal is not None
    doc = w.canvas.document
    assert (doc.mask == 255).all()               # nothing is written before Enter
    key(w, Qt.Key.Key_Escape)
    assert w.canvas.proposal is None and (doc.mask == 255).all()
    click(qtbot, w, 100, 110)
    key(w, Qt.Key.Key_Return)
    assert iou(doc.mask == 1, truth_disk()) > 0.95
    round_trip(w, doc.mask.copy())


def test_grabcut_from_a_box(qtbot, win):
    w = win
    QTest.keyClick(w, Qt.Key.Key_C)
    drag(qtbot, w, (50, 60), (150, 160))
    assert w.canvas.proposal is not None
    key(w, Qt.Key.Key_Enter)
    doc = w.canvas.document
    assert iou(doc.mask == 1, truth_disk()) > 0.85
    round_trip(w, doc.mask.copy())


def test_watershed_from_seeds(qtbot, win):
    w = win
    QTest.keyClick(w, Qt.Key.Key_S)
    click(qtbot, w, 100, 110)
    click(qtbot, w, 100, 40, button=Qt.MouseButton.RightButton)
    click(qtbot, w, 20, 110, button=Qt.MouseButton.RightButton)
    assert w.canvas.proposal is not None
    key(w, Qt.Key.Key_Return)
    doc = w.canvas.document
    got = doc.mask == 1
    assert got[100, 110] and not got[100, 40] and iou(got, truth_disk()) > 0.8
    round_trip(w, doc.mask.copy())


def test_threshold_in_a_box(qtbot, win):
    w = win
    QTest.keyClick(w, Qt.Key.Key_T)
    drag(qtbot, w, (40, 50), (160, 170))
    key(w, Qt.Key.Key_Return)
    doc = w.canvas.document
    assert iou(doc.mask == 1, truth_disk()) > 0.95
    round_trip(w, doc.mask.copy())


def test_mask_operations_are_undoable(qtbot, win):
    w = win
    doc = w.canvas.document
    QTest.keyClick(w, Qt.Key.Key_T)
    drag(qtbot, w, (40, 50), (160, 170))
    key(w, Qt.Key.Key_Return)
    disk = doc.mask == 1
    assert w.editing.run_op("erode", 3)
    assert (doc.mask == 1).sum() < disk.sum() and (doc.mask[disk] != 255).all()
    w.undo_action.trigger()
    assert np.array_equal(doc.mask == 1, disk)
    assert w.editing.run_op("dilate", 2) and (doc.mask == 1).sum() > disk.sum()
    assert w.editing.run_op("unlabeled_to_background") and not (doc.mask == 255).any()
    assert w.editing.run_op("clear_class") and not (doc.mask == 1).any()
    w.undo_action.trigger()
    assert (doc.mask == 1).any()


def test_history_is_kept_per_image_and_copy_previous(qtbot, win):
    w = win
    QTest.keyClick(w, Qt.Key.Key_R)
    drag(qtbot, w, (10, 10), (40, 40))
    first = w.current.id
    second = w.project.images[1].id
    w.show_image(second)
    qtbot.waitUntil(lambda: w.current.id == second and w.canvas.document is not None)
    assert not w.undo_action.isEnabled()
    assert w.editing.copy_previous_mask()
    assert (w.canvas.document.mask[10:41, 10:41] == 1).all()
    w.show_image(first)
    qtbot.waitUntil(lambda: w.current.id == first and w.canvas.document is not None)
    assert w.undo_action.isEnabled()
    w.undo_action.trigger()
    assert (w.canvas.document.mask == 255).all()


def test_brush_size_keys_and_ctrl_wheel_and_outline(qtbot, win):
    w = win
    w.set_brush_radius(10)
    QTest.keyClick(w, Qt.Key.Key_BracketRight)
    assert w.canvas.brush_radius == pytest.approx(12.5)
    QTest.keyClick(w, Qt.Key.Key_BracketLeft)
    assert w.canvas.brush_radius == pytest.approx(10)
    ev = QWheelEvent(QPointF(50, 50), w.canvas.mapToGlobal(QPointF(50, 50)), QPoint(0, 0), QPoint(0, 120),
                     Qt.MouseButton.NoButton, Qt.KeyboardModifier.ControlModifier,
                     Qt.ScrollPhase.NoScrollPhase, False)
    w.canvas.wheelEvent(ev)
    assert w.canvas.brush_radius > 10 and w.size_spin.value() == round(w.canvas.brush_radius)
    QTest.keyClick(w, Qt.Key.Key_R)
    drag(qtbot, w, (50, 50), (150, 150))
    filled = (w.canvas._over_buf[..., 3] > 0).sum()
    QTest.keyClick(w, Qt.Key.Key_O)
    assert w.canvas.outline
    outlined = (w.canvas._over_buf[..., 3] > 0).sum()
    assert 0 < outlined < filled / 5


def test_protect_other_classes_in_region_tools(qtbot, win):
    w = win
    QTest.keyClick(w, Qt.Key.Key_R)
    drag(qtbot, w, (50, 50), (100, 100))
    w.class_panel.add_class("other")
    w.class_panel.select_id(2)
    QTest.keyClick(w, Qt.Key.Key_P)
    drag(qtbot, w, (80, 80), (120, 120))
    doc = w.canvas.document
    assert doc.mask[90, 90] == 1 and doc.mask[110, 110] == 2
