"""The instance layer of a document: created on first use, kept consistent, undone with the mask."""

import numpy as np
import pytest

from segstudio.core.classes import UNLABELED
from segstudio.core.document import ImageDocument
from segstudio.core.geometry import Rect

NUCLEUS, CELL, DEBRIS = 1, 2, 3     # nucleus and cell are object classes, debris is not


def _doc(h=100, w=120):
    return ImageDocument.blank(h, w, object_classes={NUCLEUS, CELL})


def _stroke(doc, p0, p1, radius, value, object_id=None):
    doc.begin_stroke("Brush", object_id)
    doc.paint_segment(p0, p1, radius, value)
    return doc.end_stroke()


def test_semantic_painting_creates_no_instance_layer():
    doc = _doc()
    _stroke(doc, (10, 10), (10, 50), 4, DEBRIS)
    assert doc.objects is None
    edit = doc.history.peek()
    assert not edit.has_objects


def test_touching_strokes_of_an_object_class_are_two_objects():
    doc = _doc()
    _stroke(doc, (50, 20), (50, 40), 8, NUCLEUS)
    first = doc.stroke_object_id
    _stroke(doc, (50, 52), (50, 80), 8, NUCLEUS)     # overlaps the first one's rim
    second = doc.stroke_object_id
    assert doc.objects is not None and doc.objects.dtype == np.uint32
    assert first != second and first > 0 and second > 0
    assert doc.objects[50, 25] == first and doc.objects[50, 70] == second
    assert set(np.unique(doc.objects)) == {0, first, second}
    assert (doc.mask[doc.objects > 0] == NUCLEUS).all()


def test_a_stroke_can_continue_an_object():
    doc = _doc()
    _stroke(doc, (20, 20), (20, 30), 5, NUCLEUS)
    oid = doc.stroke_object_id
    _stroke(doc, (60, 60), (60, 70), 5, NUCLEUS, object_id=oid)
    assert doc.objects[20, 25] == doc.objects[60, 65] == oid
    assert set(np.unique(doc.objects)) == {0, oid}


def test_other_class_or_eraser_over_an_object_clears_its_ids():
    doc = _doc()
    _stroke(doc, (50, 20), (50, 80), 10, NUCLEUS)
    oid = doc.stroke_object_id
    _stroke(doc, (50, 30), (50, 30), 6, DEBRIS)       # a class without objects
    _stroke(doc, (50, 70), (50, 70), 6, UNLABELED)    # the eraser
    assert doc.mask[50, 30] == DEBRIS and doc.objects[50, 30] == 0
    assert doc.mask[50, 70] == UNLABELED and doc.objects[50, 70] == 0
    assert doc.objects[50, 50] == oid
    # the invariant everywhere: ids only on object-class pixels
    assert not doc.objects[~np.isin(doc.mask, [NUCLEUS, CELL])].any()


def test_another_object_class_over_an_object_gives_a_new_object():
    doc = _doc()
    _stroke(doc, (50, 20), (50, 80), 10, NUCLEUS)
    nucleus = doc.stroke_object_id
    _stroke(doc, (50, 50), (50, 50), 5, CELL)
    assert doc.mask[50, 50] == CELL and doc.objects[50, 50] not in (0, nucleus)


def test_whole_mask_apply_clears_ids_where_the_class_changed():
    doc = _doc()
    _stroke(doc, (50, 20), (50, 80), 10, NUCLEUS)
    oid = doc.stroke_object_id
    new = doc.mask.copy()
    new[:, :50] = 0                      # background over the left half (a mask operation)
    doc.apply(new, "Fill")
    assert not doc.objects[:, :50].any() and (doc.objects[50, 60:80] == oid).all()


def test_undo_and_redo_restore_both_layers():
    doc = _doc()
    _stroke(doc, (50, 20), (50, 40), 8, NUCLEUS)
    mask1, obj1 = doc.mask.copy(), doc.objects.copy()
    _stroke(doc, (50, 30), (50, 60), 8, NUCLEUS)      # takes part of the first object
    mask2, obj2 = doc.mask.copy(), doc.objects.copy()
    _stroke(doc, (50, 35), (50, 35), 6, DEBRIS)       # and debris over both
    doc.undo()
    assert np.array_equal(doc.mask, mask2) and np.array_equal(doc.objects, obj2)
    doc.undo()
    assert np.array_equal(doc.mask, mask1) and np.array_equal(doc.objects, obj1)
    doc.undo()
    assert (doc.mask == UNLABELED).all() and not doc.objects.any()
    doc.redo()
    doc.redo()
    assert np.array_equal(doc.mask, mask2) and np.array_equal(doc.objects, obj2)


def test_edited_tiles_carry_ids_only_where_they_changed():
    doc = _doc(200, 200)
    seen = []
    doc.edited.connect(seen.append)
    _stroke(doc, (10, 10), (10, 10), 4, NUCLEUS)
    assert all(len(t) == 3 and t[2].dtype == np.uint32 for t in seen[-1])
    _stroke(doc, (150, 150), (150, 150), 4, DEBRIS)   # far from any object: mask tiles only
    assert all(len(t) == 2 for t in seen[-1])


def test_history_survives_a_reopen_with_the_layer_rebuilt():
    doc = _doc()
    _stroke(doc, (50, 50), (50, 50), 6, NUCLEUS)
    # the window keeps the history while the image is closed; a reopened document without
    # a layer in memory (nothing saved yet) still undoes and redoes the object stroke
    again = ImageDocument(doc.mask.copy(), history=doc.history, object_classes={NUCLEUS})
    again.undo()
    assert (again.mask == UNLABELED).all()
    again.redo()
    assert again.objects is not None and again.objects[50, 50] > 0


def test_bad_instance_layer_is_refused():
    with pytest.raises(ValueError, match="uint32"):
        ImageDocument(np.zeros((4, 4), np.uint8), objects=np.zeros((4, 4), np.int64))


def test_new_ids_never_repeat_after_undo():
    doc = _doc()
    _stroke(doc, (20, 20), (20, 20), 4, NUCLEUS)
    a = doc.stroke_object_id
    doc.undo()
    _stroke(doc, (20, 20), (20, 20), 4, NUCLEUS)
    assert doc.stroke_object_id != a
    ids = ImageDocument(doc.mask.copy(), objects=doc.objects.copy(), object_classes={NUCLEUS})
    assert ids.new_object_id() == int(doc.objects.max()) + 1


def test_write_with_explicit_ids():
    doc = _doc(10, 10)
    ids = np.arange(100, dtype=np.uint32).reshape(10, 10)
    doc.replace(Rect(0, 0, 10, 10), NUCLEUS, "Paste", object_value=ids)
    assert np.array_equal(doc.objects, ids)
    assert doc.new_object_id() == 100


def test_writing_no_ids_creates_no_layer():
    doc = _doc(10, 10)
    doc.replace(Rect(0, 0, 10, 10), DEBRIS, "Fill", object_value=0)
    doc.apply(np.full((10, 10), NUCLEUS, np.uint8), "Paste", np.zeros((10, 10), np.uint32))
    assert doc.objects is None and (doc.mask == NUCLEUS).all()
