import numpy as np
import pytest

from segstudio.core.document import ImageDocument
from segstudio.core.prediction import accept_prediction, accept_where, disagreement

MASK = np.array([[255, 255, 0],
                 [1, 255, 2],
                 [0, 0, 255]], np.uint8)
PRED = np.array([[1, 0, 0],
                 [2, 2, 2],
                 [0, 1, 1]], np.uint8)


def test_accept_where_modes():
    assert accept_where(MASK, PRED, "all").tolist() == [[1, 1, 0], [1, 1, 0], [0, 1, 1]]
    assert accept_where(MASK, PRED, "unlabeled").tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert accept_where(MASK, PRED, "classes", [2]).tolist() == [[0, 0, 0], [1, 1, 0],
                                                                 [0, 0, 0]]
    with pytest.raises(ValueError, match="known"):
        accept_where(MASK, PRED, "some")
    with pytest.raises(ValueError, match="at least one"):
        accept_where(MASK, PRED, "classes", [])


def test_accept_is_one_undo_step():
    doc = ImageDocument(MASK.copy())
    edit = accept_prediction(doc, PRED, "unlabeled")
    assert edit is not None and len(doc.history) == 1
    assert doc.mask.tolist() == [[1, 0, 0], [1, 2, 2], [0, 0, 1]]
    doc.undo()
    assert np.array_equal(doc.mask, MASK)
    doc.redo()
    accept_prediction(doc, PRED, "all")
    assert np.array_equal(doc.mask, PRED)
    assert accept_prediction(doc, PRED, "all") is None          # nothing left to change
    assert len(doc.history) == 2


def test_accept_on_a_large_mask_touches_only_the_changed_region():
    mask = np.full((1000, 1000), 0, np.uint8)
    pred = mask.copy()
    pred[700:710, 300:320] = 1
    doc = ImageDocument(mask)
    edit = accept_prediction(doc, pred, "all")
    assert edit.bounds.y0 >= 640 and edit.bounds.y1 <= 770       # a few 64 px tiles only
    assert (doc.mask == pred).all()


def test_disagreement_ignores_unlabeled():
    assert disagreement(MASK, PRED).tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0]]
