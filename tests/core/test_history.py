import numpy as np

from segstudio.core.document import ImageDocument
from segstudio.core.geometry import TILE, Rect
from segstudio.core.history import History, StrokeRecorder


def test_stroke_is_one_undo_step_and_round_trips():
    doc = ImageDocument.blank(300, 300)
    doc.begin_stroke()
    for x in range(20, 200, 7):
        doc.paint_segment((50, x - 7), (50, x), 5, 1)
    edit = doc.end_stroke()
    assert edit is not None and len(doc.history) == 1
    painted = doc.mask.copy()
    assert (painted[50, 20:195] == 1).all()
    doc.undo()
    assert (doc.mask == 255).all()
    doc.redo()
    assert np.array_equal(doc.mask, painted)


def test_fast_drag_leaves_no_gaps():
    doc = ImageDocument.blank(100, 400)
    doc.begin_stroke()
    doc.paint_segment((50, 10), (50, 390), 2, 3)   # one mouse move across the whole image
    doc.end_stroke()
    assert (doc.mask[50, 10:391] == 3).all()


def test_stroke_over_itself_costs_nothing():
    doc = ImageDocument.blank(100, 100, fill=1)
    doc.begin_stroke()
    doc.dab(50, 50, 10, 1)
    assert doc.end_stroke() is None
    assert len(doc.history) == 0


def test_only_changed_tiles_are_kept():
    mask = np.zeros((4 * TILE, 4 * TILE), np.uint8)
    rec = StrokeRecorder(mask)
    rec.will_write(Rect(0, 0, 4 * TILE, 4 * TILE))
    mask[5, 5] = 2
    edit = rec.finish("x")
    assert len(edit.patches) == 1 and edit.patches[0].rect == Rect(0, 0, TILE, TILE)


def test_history_is_bounded_by_bytes():
    doc = ImageDocument.blank(1024, 1024, history_bytes=20_000)
    for i in range(1000):
        doc.begin_stroke()
        doc.dab(10 + (i * 97) % 1000, 10 + (i * 31) % 1000, 30, 1 + i % 3)
        doc.end_stroke()
    assert doc.history.nbytes <= 20_000
    assert 0 < len(doc.history) < 1000
    # the oldest steps went; the newest still undo correctly
    before = doc.mask.copy()
    doc.undo()
    doc.redo()
    assert np.array_equal(doc.mask, before)


def test_history_is_stored_compressed():
    doc = ImageDocument.blank(2048, 2048)
    for i in range(100):   # 100 strokes of 200 dabs, radius 20, as in benchmarks/paint_latency.py
        doc.begin_stroke()
        for k in range(1, 40):
            doc.paint_segment((100 + 19 * i, 20 + 50 * (k - 1)), (100 + 19 * i, 20 + 50 * k), 20, 1 + i % 2)
        doc.end_stroke()
    assert len(doc.history) == 100
    assert doc.history.nbytes < 50 * 2**20
    raw = sum(p.rect.height * p.rect.width * 2 for e in doc.history._undo for p in e.patches)
    assert doc.history.nbytes < raw / 5


def test_protect_other_classes():
    doc = ImageDocument.blank(50, 50)
    doc.begin_stroke(); doc.dab(25, 25, 10, 2); doc.end_stroke()
    doc.begin_stroke(); doc.dab(25, 30, 10, 1, only_over=(255, 1)); doc.end_stroke()
    assert doc.mask[25, 25] == 2 and doc.mask[25, 38] == 1


def test_history_changed_signal():
    h = History()
    seen = []
    h.history_changed.connect(lambda u, r: seen.append((u, r)))
    doc = ImageDocument.blank(10, 10)
    doc.history_changed.connect(lambda u, r: seen.append(("doc", u, r)))
    doc.begin_stroke(); doc.dab(5, 5, 2, 1); doc.end_stroke()
    doc.undo()
    assert ("doc", True, False) in seen and ("doc", False, True) in seen
