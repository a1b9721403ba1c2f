"""Accepting a prediction of a run with object classes copies objects, not just pixels."""

import numpy as np

from segstudio.core.classes import UNLABELED
from segstudio.core.document import ImageDocument
from segstudio.core.prediction import accept_prediction


def predicted_pair():
    labels = np.zeros((30, 40), np.uint8)
    labels[5:25, 5:35] = 1
    objects = np.zeros(labels.shape, np.uint32)
    objects[5:25, 5:20] = 1
    objects[5:25, 20:35] = 2             # two touching objects of class 1
    return labels, objects


def test_touching_predicted_objects_stay_two_and_undo_restores():
    labels, objects = predicted_pair()
    doc = ImageDocument(np.full(labels.shape, UNLABELED, np.uint8), object_classes=(1,))
    assert accept_prediction(doc, labels, "all", objects=objects) is not None
    np.testing.assert_array_equal(doc.mask, labels)
    left, right = int(doc.objects[10, 10]), int(doc.objects[10, 30])
    assert left and right and left != right
    assert set(np.unique(doc.objects).tolist()) == {0, left, right}
    doc.undo()
    assert (doc.mask == UNLABELED).all() and not doc.objects.any()
    doc.redo()
    assert int(doc.objects[10, 10]) == left and int(doc.objects[10, 30]) == right


def test_predicted_ids_never_merge_with_painted_objects():
    labels, objects = predicted_pair()
    mask = np.full(labels.shape, UNLABELED, np.uint8)
    painted = np.zeros(labels.shape, np.uint32)
    mask[26:29, 2:8] = 1
    painted[26:29, 2:8] = 1              # an object the user painted has id 1 already
    doc = ImageDocument(mask, objects=painted, object_classes=(1,))
    accept_prediction(doc, labels, "unlabeled", objects=objects)
    assert int(doc.objects[27, 3]) == 1
    new = {int(doc.objects[10, 10]), int(doc.objects[10, 30])}
    assert len(new) == 2 and 1 not in new and 0 not in new


def test_pixels_whose_class_already_agrees_take_the_object_id():
    labels, objects = predicted_pair()
    doc = ImageDocument(labels.copy(), object_classes=(1,))   # class right, no objects yet
    assert accept_prediction(doc, labels, "all", objects=objects) is not None
    assert len(np.unique(doc.objects[5:25, 5:35])) == 2
    # "unlabeled" writes only unlabeled pixels: nothing to do here
    doc2 = ImageDocument(labels.copy(), object_classes=(1,))
    assert accept_prediction(doc2, labels, "unlabeled", objects=objects) is None
