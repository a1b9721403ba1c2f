"""Objects in the window, by real mouse and key events: two touching strokes stay two objects,
a cut makes three, a merge two, each step undoes, and the project reopens with the same ids."""

import contextlib
import io
import json

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from segstudio.io.project import Project

IMAGE = "nuclei_07"        # unlabeled in the sample


def _pt(canvas, y, x) -> QPoint:
    p = canvas.image_to_widget(y, x)
    return QPoint(int(round(p.x())), int(round(p.y())))


def _drag(qtbot, canvas, a, b, steps=10, modifier=Qt.KeyboardModifier.NoModifier):
    pa, pb = _pt(canvas, *a), _pt(canvas, *b)
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, modifier, pos=pa)
    for t in range(1, steps + 1):
        QTest.mouseMove(canvas, QPoint(pa.x() + (pb.x() - pa.x()) * t // steps,
                                       pa.y() + (pb.y() - pa.y()) * t // steps))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, modifier, pos=pb)


def _click(qtbot, canvas, y, x, modifier=Qt.KeyboardModifier.NoModifier):
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, modifier, pos=_pt(canvas, y, x))


def _ids(doc) -> set[int]:
    return set(np.unique(doc.objects).tolist()) - {0}


def _window_on_unlabeled(qtbot, open_window, root):
    w = open_window(root, size=(1000, 700))
    w.show_image(IMAGE)
    qtbot.waitUntil(lambda: w.current is not None and w.current.id == IMAGE
                    and w.canvas.document is not None and w.canvas.loading is None)
    return w


def _mark_nucleus_objects(qtbot, w):
    w.class_panel.select_id(1)
    qtbot.mouseClick(w.class_panel.objects_button, Qt.MouseButton.LeftButton)
    assert w.project.class_by_id(1).objects


def test_touching_objects_split_merge_undo_and_reopen(qtbot, open_window, sample_copy, tmp_path,
                                                      export_in_window):
    w = _window_on_unlabeled(qtbot, open_window, sample_copy)
    _mark_nucleus_objects(qtbot, w)
    saved = json.loads((sample_copy / "project.json").read_text())
    assert [c.get("objects", False) for c in saved["classes"]][:2] == [False, True]
    canvas, doc = w.canvas, w.canvas.document
    w.class_panel.select_id(1)
    w.set_brush_radius(6)
    _drag(qtbot, canvas, (100, 40), (100, 90))
    _drag(qtbot, canvas, (100, 98), (100, 150))     # its rim overlaps the first stroke's
    assert (doc.mask[100, 40:150] == 1).all()       # one run of nucleus pixels...
    a, b = int(doc.objects[100, 50]), int(doc.objects[100, 140])
    assert _ids(doc) == {a, b} and a != b           # ...but two objects
    assert doc.objects[100, 94] in (a, b)

    QTest.keyClick(w, Qt.Key.Key_X)                 # the Objects tool
    assert canvas.tool == "objects"
    _drag(qtbot, canvas, (80, 124.5), (120, 124.5))   # a vertical cut through object b
    assert len(_ids(doc)) == 3
    c = int(doc.objects[100, 140])
    assert c not in (a, b) and doc.objects[100, 110] == b
    assert (doc.mask[100, 40:150] == 1).all()       # a cut changes ids, not classes

    _click(qtbot, canvas, 100, 50)                  # select a, Shift+click b, merge
    _click(qtbot, canvas, 100, 110, Qt.KeyboardModifier.ShiftModifier)
    assert sorted(canvas.selected_objects.tolist()) == sorted([a, b])
    QTest.keyClick(w, Qt.Key.Key_J, Qt.KeyboardModifier.ControlModifier)
    assert _ids(doc) == {min(a, b), c}
    assert doc.objects[100, 50] == doc.objects[100, 110]

    w.undo_action.trigger()                         # the merge
    assert _ids(doc) == {a, b, c}
    w.undo_action.trigger()                         # the cut
    assert _ids(doc) == {a, b}
    w.undo_action.trigger()                         # the second stroke
    assert _ids(doc) == {a} and doc.mask[100, 140] == 255
    w.redo_action.trigger()
    w.redo_action.trigger()
    assert _ids(doc) == {a, b, c}
    kept_mask, kept_objects = doc.mask.copy(), doc.objects.copy()

    assert w.saver.flush()
    project = Project.open(sample_copy)
    entry = project.entry(IMAGE)
    assert np.array_equal(project.load_objects(entry, doc.shape), kept_objects)
    w.close()
    w2 = _window_on_unlabeled(qtbot, open_window, sample_copy)
    doc2 = w2.canvas.document
    assert np.array_equal(doc2.mask, kept_mask) and np.array_equal(doc2.objects, kept_objects)
    assert w2.project.class_by_id(1).objects

    # File > Export as COCO from the window: pycocotools reads one annotation per object,
    # each covering that object's pixels, although the three touch as one nucleus region
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO

    out = tmp_path / "coco"
    export_in_window(w2, out, "coco")
    split = w2.project.entry(IMAGE).split
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(out / "annotations" / f"instances_{split}.json"))
    image_id = next(i["id"] for i in coco.dataset["images"] if IMAGE in i["file_name"])
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
    assert len(anns) == len(_ids(doc2)) == 3
    masks = sorted((coco.annToMask(a).astype(bool) for a in anns), key=lambda m: m.sum())
    truth = sorted((kept_objects == k for k in _ids(doc2)), key=lambda m: m.sum())
    for m, t in zip(masks, truth):
        assert (m & t).sum() / (m | t).sum() > 0.9


def test_pick_continue_delete_and_colours(qtbot, open_window, sample_copy):
    w = _window_on_unlabeled(qtbot, open_window, sample_copy)
    _mark_nucleus_objects(qtbot, w)
    canvas, doc = w.canvas, w.canvas.document
    w.set_brush_radius(6)
    _drag(qtbot, canvas, (60, 40), (60, 90))
    _drag(qtbot, canvas, (60, 98), (60, 150))
    a, b = int(doc.objects[60, 50]), int(doc.objects[60, 140])
    # touching objects of one class are drawn in two shades of its colour
    over = canvas._over_buf
    pa, pb = _pt(canvas, 60.5, 50.5), _pt(canvas, 60.5, 140.5)
    ca, cb = over[pa.y(), pa.x()], over[pb.y(), pb.x()]
    assert ca[3] == cb[3] > 0 and tuple(ca[:3]) != tuple(cb[:3])

    QTest.keyClick(w, Qt.Key.Key_0)                 # the background class is selected...
    _click(qtbot, canvas, 60, 50, Qt.KeyboardModifier.AltModifier)
    assert canvas.picked_object == (a, 1) and canvas.class_value == 1   # ...Alt+click: nucleus
    QTest.keyClick(w, Qt.Key.Key_J)                 # continue the object
    assert canvas.continue_object
    _drag(qtbot, canvas, (150, 60), (150, 100))     # away from any object: continues a
    assert doc.objects[150, 80] == a and _ids(doc) == {a, b}
    QTest.keyClick(w, Qt.Key.Key_J)
    _drag(qtbot, canvas, (200, 60), (200, 100))     # a new object again
    assert len(_ids(doc)) == 3

    QTest.mouseMove(canvas, _pt(canvas, 60.5, 140.5))
    assert w.class_label.text() == f"nucleus, object {b}"     # the status bar names it
    QTest.keyClick(w, Qt.Key.Key_X)
    _click(qtbot, canvas, 60, 50)
    QTest.keyClick(canvas, Qt.Key.Key_Escape)                 # Esc drops the selection
    assert not len(canvas.selected_objects)
    _click(qtbot, canvas, 60, 140)
    QTest.keyClick(w, Qt.Key.Key_Delete)
    assert b not in _ids(doc) and doc.mask[60, 140] == 255 and doc.objects[60, 50] == a
    w.undo_action.trigger()
    assert doc.objects[60, 140] == b and doc.mask[60, 140] == 1

    QTest.keyClick(w, Qt.Key.Key_E)                 # the eraser takes pixels and ids
    _drag(qtbot, canvas, (60, 45), (60, 55))
    assert doc.objects[60, 50] == 0 and doc.mask[60, 50] == 255
    assert not doc.objects[doc.mask != 1].any()
    w.grab().save(str(sample_copy / "objects.png"))   # offscreen drawing does not fail
    assert w.errors == []


def test_object_actions_are_listed_once(qtbot, open_window, sample_copy):
    w = open_window(sample_copy, size=(1000, 700))
    reg = w.action_registry
    for action_id, key in (("tools.objects", "X"), ("objects.continue", "J"),
                           ("objects.merge", "Ctrl+J"), ("objects.delete", "Del"),
                           ("view.object_edges", "Shift+O")):
        assert key in reg[action_id].shortcuts and reg.is_bound(action_id)
    assert reg.conflicts() == []
    assert "canvas.pick_object" in reg


def test_copy_previous_brings_objects_and_unmarking_keeps_pixels(qtbot, open_window, sample_copy):
    project = Project.open(sample_copy)
    ids = [e.id for e in project.images]
    prev = project.entry(ids[ids.index(IMAGE) - 1])
    w = _window_on_unlabeled(qtbot, open_window, sample_copy)
    _mark_nucleus_objects(qtbot, w)
    canvas, doc = w.canvas, w.canvas.document
    mask = np.full(doc.shape, 255, np.uint8)
    objects = np.zeros(doc.shape, np.uint32)
    mask[10:30, 10:30], objects[10:30, 10:30] = 1, 70_000      # past 16 bits: a TIFF layer
    mask[10:30, 30:50], objects[10:30, 30:50] = 1, 70_001
    w.project.masks.write(prev.id, mask, objects)
    assert w.editing.copy_previous_mask()
    assert np.array_equal(doc.mask, mask) and np.array_equal(doc.objects, objects)
    w.undo_action.trigger()
    assert (doc.mask == 255).all() and not doc.objects.any()
    w.redo_action.trigger()
    # unmarking the class: its pixels stay, drawn as plain class pixels, ids ignored on load
    w.class_panel.select_id(1)
    qtbot.mouseClick(w.class_panel.objects_button, Qt.MouseButton.LeftButton)
    assert not w.project.class_by_id(1).objects and not doc.is_object_class(1)
    over = canvas._over_buf
    pa, pb = _pt(canvas, 20.5, 20.5), _pt(canvas, 20.5, 40.5)
    assert tuple(over[pa.y(), pa.x()]) == tuple(over[pb.y(), pb.x()])
    assert w.saver.flush()
    reopened = Project.open(sample_copy)
    assert np.array_equal(reopened.load_mask(reopened.entry(IMAGE), doc.shape), mask)
    assert not reopened.load_objects(reopened.entry(IMAGE), doc.shape).any()
