"""The window's actions are declared once: every key is in the F1 dialog, no key does two things,
and real key presses reach the action that the registry names."""

import re

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence, QTextTable
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from segstudio.ui.actions import Action, ActionRegistry, key_texts

NATIVE = QKeySequence.SequenceFormat.NativeText


def dialog_rows(dlg) -> dict[str, str]:
    """{action text: keys cell} read back from the dialog's table, as the user sees it."""
    frame = dlg.text.document().rootFrame()
    table = next(f for f in frame.childFrames() if isinstance(f, QTextTable))
    cell = lambda r, c: table.cellAt(r, c).firstCursorPosition().block().text().strip()  # noqa: E731
    rows = {}
    for r in range(table.rows()):
        if table.cellAt(r, 0).columnSpan() == 1:          # not a heading row
            rows[cell(r, 1)] = cell(r, 0)
    return rows


def listed(cell: str, key: str) -> bool:
    keys = cell.split(" / ")
    digits = re.fullmatch(r"(\d) … (\d)", cell)
    if digits:                                             # '0 … 9': a range of number keys
        return key.isdigit() and int(digits[1]) <= int(key) <= int(digits[2])
    return key in keys


@pytest.fixture
def window(qtbot, open_window, sample_copy):
    w = open_window(sample_copy, size=(1000, 700))
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=5000)
    return w


def test_every_key_of_the_window_is_in_the_shortcuts_dialog(qtbot, window):
    dlg = window.show_shortcuts()
    qtbot.addWidget(dlg)
    rows = dialog_rows(dlg)
    checked = 0
    # every QAction the window holds, however it was made: a key added outside the registry
    # would be missed here
    for act in window.findChildren(QAction):
        for seq in act.shortcuts():
            if seq[0].key() >= Qt.Key.Key_Help:    # keys some keyboards have: 'Undo', 'Help'
                continue
            text = act.text().rstrip("…")
            assert text in rows, f"{text!r} ({seq.toString(NATIVE)}) is not in the shortcuts dialog"
            assert listed(rows[text], seq.toString(NATIVE)), (text, rows[text], seq.toString(NATIVE))
            checked += 1
    assert checked >= 50
    # the ones the old, hand-written dialog lacked
    for text, key in (("Train", "Ctrl+T"), ("Retrain from Active Run", "Ctrl+Shift+T"),
                      ("Predict Image", "Ctrl+P"), ("Accept Prediction", "A"),
                      ("Measure (Metrics)", "Ctrl+M"), ("Next Image to Label", "N"),
                      ("Export Dataset", "Ctrl+E"), ("Import Masks", "Ctrl+Shift+I")):
        assert listed(rows[text], key)
    # keys the canvas reads itself are listed too, with no menu item
    for action in window.action_registry:
        if action.canvas:
            assert rows[action.text] == " / ".join([action.gesture, *key_texts(action)]
                                                   if action.gesture else key_texts(action))
    assert "Space+drag" in rows["Pan"] and "Esc" in rows[
        "Keep / drop a proposal (smart tool, click, interpolation); close / cancel a polygon"]


def test_no_two_actions_share_a_key_and_every_listed_key_works(window):
    reg = window.action_registry
    assert reg.conflicts() == []
    owners: dict[str, QAction] = {}
    for act in window.findChildren(QAction):
        for seq in act.shortcuts():
            key = seq.toString()
            assert owners.setdefault(key, act) is act, \
                f"{key} triggers both {owners[key].text()!r} and {act.text()!r}"
    # a key in the dialog that nothing is bound to would be a lie
    assert [a.id for a in reg if not a.canvas and not reg.is_bound(a.id)] == []


def test_a_second_action_on_a_taken_key_is_refused():
    reg = ActionRegistry([Action("tools.brush", "Brush", ("B",), menu="Tools")])
    with pytest.raises(ValueError, match="'tools.bucket' and 'tools.brush' both use the key 'B'"):
        reg.add(Action("tools.bucket", "Bucket", ("B",), menu="Tools"))
    with pytest.raises(ValueError, match="declared twice"):
        reg.add(Action("tools.brush", "Brush again"))
    reg.add(Action("tools.brush", "Brush", ("B",), menu="Tools"))     # the same one: no change
    assert [a.id for a in reg] == ["tools.brush"]


def test_key_presses_trigger_the_registered_actions(qtbot, window):
    w = window
    QTest.keyClick(w, Qt.Key.Key_W)                               # tools.wand
    assert w.canvas.tool == "wand" and w.tool_actions["wand"].isChecked()
    assert w.editing.hint_label.text().strip() == w.canvas.tools["wand"].hint
    radius = w.canvas.brush_radius
    QTest.keyClick(w, Qt.Key.Key_BracketRight)                    # tools.larger_brush
    assert w.canvas.brush_radius == pytest.approx(radius * 1.25)
    QTest.keyClick(w, Qt.Key.Key_0)                               # classes.select, key 0
    assert w.canvas.class_value == 0
    QTest.keyClick(w, Qt.Key.Key_1)                               # classes.select, key 1
    assert w.canvas.class_value == 1
    QTest.keyClick(w, Qt.Key.Key_M)                               # view.mask
    assert not w.canvas.mask_visible and not w.mask_action.isChecked()
    reviewed = w.current.reviewed
    QTest.keyClick(w, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)     # view.reviewed
    assert w.current.reviewed is not reviewed
    QTest.keyClick(w, Qt.Key.Key_N)                               # model.next_to_label
    assert "Nothing ranked yet" in w.statusBar().currentMessage()
    first = w.current.id
    QTest.keyClick(w, Qt.Key.Key_PageDown)                        # view.next_image
    qtbot.waitUntil(lambda: w.current is not None and w.current.id != first, timeout=10_000)
