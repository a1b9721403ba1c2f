"""Object edits (merge, split by a line cut, delete, pick) on documents and on plain arrays."""

import numpy as np
import pytest

from segstudio.core.classes import UNLABELED
from segstudio.core.document import ImageDocument
from segstudio.core.geometry import Rect
from segstudio.edit.objects import (ObjectEditError, delete_object, merge_objects, new_object_id,
                                    object_at, split_object)

NUCLEUS, CELL = 1, 2


def _two_touching():
    """Two nuclei side by side, touching along column 30, as two strokes."""
    doc = ImageDocument.blank(60, 60, object_classes={NUCLEUS, CELL})
    ids = []
    for x0, x1 in ((10, 29), (30, 50)):
        doc.begin_stroke()
        doc.write(Rect(20, x0, 40, x1 + 1), np.ones((20, x1 - x0 + 1), bool), NUCLEUS)
        doc.end_stroke()
        ids.append(doc.stroke_object_id)
    return doc, ids


def test_pick_and_new_id():
    doc, (a, b) = _two_touching()
    assert object_at(doc.objects, 25, 15) == a and object_at(doc.objects, 25.7, 45.2) == b
    assert object_at(doc.objects, 5, 5) == 0 and object_at(doc.objects, -1, 200) == 0
    assert object_at(None, 1, 1) == 0
    assert new_object_id(doc.objects) == max(a, b) + 1
    assert new_object_id(None) == 1


def test_merge_is_one_undo_step():
    doc, (a, b) = _two_touching()
    before = doc.objects.copy()
    steps = len(doc.history)
    assert merge_objects(doc, [b, a]) == min(a, b)
    assert set(np.unique(doc.objects)) == {0, min(a, b)}
    assert len(doc.history) == steps + 1
    doc.undo()
    assert np.array_equal(doc.objects, before)


def test_merge_refuses_unknown_ids_and_mixed_classes():
    doc, (a, b) = _two_touching()
    with pytest.raises(ObjectEditError, match="no object 99"):
        merge_objects(doc, [a, 99])
    doc.begin_stroke()
    doc.dab(5, 5, 3, CELL)
    doc.end_stroke()
    with pytest.raises(ObjectEditError, match="different classes"):
        merge_objects(doc, [a, doc.stroke_object_id])


def test_split_by_a_vertical_cut_gives_two_objects_and_undoes():
    doc, (a, b) = _two_touching()
    before = doc.objects.copy()
    new = split_object(doc, (10, 40), (50, 40))        # a cut down column 40 of object b
    assert new not in (0, a, b)
    assert set(np.unique(doc.objects)) == {0, a, b, new}
    right = doc.objects[20:40, 41:51]
    left = doc.objects[20:40, 30:40]
    assert (np.unique(right).tolist(), np.unique(left).tolist()) in (([new], [b]), ([b], [new]))
    # the line's own column goes wholly to one side; nothing of the class changed
    assert len(np.unique(doc.objects[20:40, 40])) == 1
    assert (doc.mask[20:40, 10:51] == NUCLEUS).all()
    doc.undo()
    assert np.array_equal(doc.objects, before)


def test_split_diagonal_line_pixels_go_to_the_nearer_side():
    mask = np.full((20, 20), NUCLEUS, np.uint8)
    objects = np.full((20, 20), 7, np.uint32)
    new = split_object((mask, objects), (0.0, 0.25), (19.0, 19.25), 7)
    ys, xs = np.mgrid[0:20, 0:20]
    # a pixel whose centre lies right of the line (x > y + 0.25) is on the other side
    above = xs - 0.25 > ys
    assert (objects[above] == objects[0, 19]).all() and (objects[~above] == objects[19, 0]).all()
    assert {objects[0, 19], objects[19, 0]} == {7, new}


def test_a_line_that_misses_changes_nothing():
    doc, (a, b) = _two_touching()
    steps = len(doc.history)
    assert split_object(doc, (5, 0), (5, 59)) == 0                 # crosses no object
    assert split_object(doc, (0, 5), (59, 5), object_id=a) == 0    # beside object a
    assert len(doc.history) == steps
    with pytest.raises(ObjectEditError, match="two different points"):
        split_object(doc, (3, 3), (3, 3))


def test_delete_object_unlabels_its_pixels():
    doc, (a, b) = _two_touching()
    assert delete_object(doc, a)
    assert not (doc.objects == a).any() and (doc.mask[20:40, 10:30] == UNLABELED).all()
    assert (doc.objects[20:40, 30:51] == b).all()
    assert not delete_object(doc, a)
    doc.undo()
    assert (doc.objects[20:40, 10:30] == a).all() and (doc.mask[20:40, 10:30] == NUCLEUS).all()


def test_arrays_are_changed_in_place():
    mask = np.full((10, 10), NUCLEUS, np.uint8)
    objects = np.zeros((10, 10), np.uint32)
    objects[:, :5], objects[:, 5:] = 1, 2
    assert merge_objects((mask, objects), [1, 2]) == 1 and (objects == 1).all()
    assert delete_object((mask, objects), 1) and (mask == UNLABELED).all()
