import math

import numpy as np
import pytest

from segstudio.core.metrics import (Evaluator, InstanceCounts, class_scores, confusion_matrix,
                                    match_instances, nanmean, normalized_confusion, sort_rows)

# Worked by hand: rows truth, columns prediction; (2, 0) is unlabeled and must not count.
TRUE = np.array([[0, 0, 1],
                 [1, 2, 2],
                 [255, 1, 0]], np.uint8)
PRED = np.array([[0, 1, 1],
                 [1, 2, 0],
                 [2, 1, 0]], np.uint8)
CM = np.array([[2, 1, 0],
               [0, 3, 0],
               [1, 0, 1]])


def test_hand_worked_confusion_matrix():
    assert confusion_matrix(TRUE, PRED, 3).tolist() == CM.tolist()


def test_hand_worked_scores():
    s = class_scores(CM)
    np.testing.assert_allclose(s.iou, [2 / 4, 3 / 4, 1 / 2])
    np.testing.assert_allclose(s.dice, [4 / 6, 6 / 7, 2 / 3])
    np.testing.assert_allclose(s.precision, [2 / 3, 3 / 4, 1])
    np.testing.assert_allclose(s.recall, [2 / 3, 1, 1 / 2])
    assert s.support.tolist() == [3, 3, 2]
    assert s.pixels == 8
    assert s.accuracy == pytest.approx(6 / 8)
    assert s.mean("iou") == pytest.approx((0.5 + 0.75 + 0.5) / 3)
    assert s.mean("iou", exclude=[0]) == pytest.approx((0.75 + 0.5) / 2)


def test_matches_sklearn_with_ignore_value(rng):
    sk = pytest.importorskip("sklearn.metrics")
    true = rng.integers(0, 5, (40, 50)).astype(np.uint8)
    pred = rng.integers(0, 5, (40, 50)).astype(np.uint8)
    true[rng.random((40, 50)) < 0.2] = 255
    keep = true != 255
    ref = sk.confusion_matrix(true[keep], pred[keep], labels=list(range(5)))
    cm = confusion_matrix(true, pred, 5)
    assert cm.tolist() == ref.tolist()
    s = class_scores(cm)
    np.testing.assert_allclose(s.iou, sk.jaccard_score(true[keep], pred[keep], average=None,
                                                       labels=list(range(5))))
    np.testing.assert_allclose(s.dice, sk.f1_score(true[keep], pred[keep], average=None,
                                                   labels=list(range(5))))
    np.testing.assert_allclose(s.precision, sk.precision_score(true[keep], pred[keep],
                                                               average=None, labels=list(range(5))))
    np.testing.assert_allclose(s.recall, sk.recall_score(true[keep], pred[keep], average=None,
                                                         labels=list(range(5))))


def test_absent_class_is_nan_and_left_out_of_means():
    s = class_scores(confusion_matrix(TRUE, PRED, 4))   # class 3: in neither truth nor prediction
    assert math.isnan(s.iou[3]) and math.isnan(s.dice[3])
    assert math.isnan(s.precision[3]) and math.isnan(s.recall[3])
    assert s.support[3] == 0
    assert s.mean("iou") == pytest.approx((0.5 + 0.75 + 0.5) / 3)


def test_class_only_predicted_scores_zero_not_nan():
    true = np.zeros((2, 2), np.uint8)
    pred = np.array([[0, 1], [0, 0]], np.uint8)
    s = class_scores(confusion_matrix(true, pred, 2))
    assert s.iou[1] == 0.0 and s.precision[1] == 0.0
    assert math.isnan(s.recall[1])          # no true pixels: recall undefined


def test_all_ignored_gives_empty_matrix():
    true = np.full((3, 3), 255, np.uint8)
    cm = confusion_matrix(true, PRED, 3)
    assert cm.sum() == 0
    assert np.isnan(class_scores(cm).iou).all()
    assert math.isnan(class_scores(cm).accuracy)


def test_out_of_range_prediction_is_an_error():
    with pytest.raises(ValueError, match="expected 0..1"):
        confusion_matrix(TRUE, PRED, 2)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(TRUE, PRED[:2], 3)


def test_normalized_confusion_rows_sum_to_one_and_absent_rows_are_nan():
    n = normalized_confusion(confusion_matrix(TRUE, PRED, 4))
    np.testing.assert_allclose(n[:3].sum(axis=1), 1.0)
    assert np.isnan(n[3]).all()
    np.testing.assert_allclose(n[0], [2 / 3, 1 / 3, 0, 0])
    by_pred = normalized_confusion(CM, by="pred")
    np.testing.assert_allclose(by_pred.sum(axis=0), 1.0)


def test_nanmean_of_nothing_is_nan():
    assert math.isnan(nanmean([math.nan, math.nan]))
    assert nanmean([1.0, math.nan, 3.0]) == 2.0


def _squares(shape, boxes):
    labels = np.zeros(shape, np.int32)
    for i, (y0, x0, y1, x1) in enumerate(boxes, start=1):
        labels[y0:y1, x0:x1] = i
    return labels, len(boxes)


def test_instance_matching_by_iou():
    t, nt = _squares((20, 20), [(0, 0, 4, 4), (10, 10, 14, 14), (0, 15, 3, 18)])
    # first: exact; second: shifted by 1 row (IoU 12/20 = 0.6); third missed; one extra object
    p, np_ = _squares((20, 20), [(0, 0, 4, 4), (11, 10, 15, 14), (16, 0, 18, 2)])
    c = match_instances(t, p, nt, np_)
    assert (c.true, c.predicted, c.matched) == (3, 3, 2)
    assert c.false_positives == 1 and c.false_negatives == 1
    assert c.f1 == pytest.approx(2 * 2 / 6)
    assert c.mean_matched_iou == pytest.approx((1.0 + 0.6) / 2)


def test_instance_below_half_iou_is_not_a_match():
    t, nt = _squares((10, 10), [(0, 0, 4, 4)])
    p, np_ = _squares((10, 10), [(2, 0, 6, 4)])       # IoU 8/24
    assert match_instances(t, p, nt, np_).matched == 0


def test_instance_matching_is_one_to_one_at_exact_half():
    t, nt = _squares((4, 4), [(0, 0, 2, 4)])          # 8 pixels
    p, np_ = _squares((4, 4), [(0, 0, 2, 2), (0, 2, 2, 4)])   # two halves, IoU 0.5 each
    c = match_instances(t, p, nt, np_)
    assert c.matched == 1 and c.predicted == 2


def test_predicted_object_on_unlabeled_pixels_is_not_counted():
    t, nt = _squares((10, 10), [(0, 0, 3, 3)])
    p, np_ = _squares((10, 10), [(0, 0, 3, 3), (6, 6, 9, 9)])
    ignore = np.zeros((10, 10), bool)
    ignore[5:, 5:] = True
    c = match_instances(t, p, nt, np_, ignore=ignore)
    assert (c.predicted, c.matched) == (1, 1)


def _label_by_value(binary):
    """A labeller for tests: every 4-connected blob via a flood fill, numpy + Python only."""
    labels = np.zeros(binary.shape, np.int32)
    n = 0
    for y, x in zip(*np.nonzero(binary)):
        if labels[y, x]:
            continue
        n += 1
        stack = [(y, x)]
        while stack:
            a, b = stack.pop()
            if 0 <= a < binary.shape[0] and 0 <= b < binary.shape[1] and binary[a, b] \
                    and not labels[a, b]:
                labels[a, b] = n
                stack += [(a + 1, b), (a - 1, b), (a, b + 1), (a, b - 1)]
    return labels, n


def test_evaluator_accumulates_and_sorts_worst_first():
    ev = Evaluator(3, class_names=["bg", "a", "b"], exclude_from_mean=[0],
                   instance_classes=[1], label_components=_label_by_value)
    good = ev.add(TRUE, TRUE.copy().clip(0, 2), "good")   # 255 -> 2 where ignored: no effect
    bad = ev.add(TRUE, PRED, "bad")
    assert good.mean_iou == pytest.approx(1.0)
    assert bad.mean_iou == pytest.approx((0.75 + 0.5) / 2)
    assert ev.confusion.tolist() == (CM + np.diag([3, 3, 2])).tolist()
    rep = ev.report()
    assert [r.image_id for r in rep.worst_images()] == ["bad", "good"]
    # class 1 is three 4-connected single pixels per image; in "bad" one of them is matched
    # by a two-pixel blob (IoU exactly 0.5), so it still counts
    assert (rep.instances[1].true, rep.instances[1].matched) == (6, 6)
    assert rep.instances[1].mean_matched_iou == pytest.approx(5.5 / 6)
    d = rep.as_dict()
    assert d["classes"][1]["name"] == "a" and d["classes"][1]["support"] == 6
    assert "bg" in rep.format_table()


def test_sort_rows_puts_nan_last():
    ev = Evaluator(2)
    ev.add(np.full((2, 2), 255, np.uint8), np.zeros((2, 2), np.uint8), "empty")
    ev.add(np.zeros((2, 2), np.uint8), np.ones((2, 2), np.uint8), "wrong")
    ev.add(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8), "right")
    assert [r.image_id for r in sort_rows(ev.rows)] == ["wrong", "right", "empty"]
    assert [r.image_id for r in sort_rows(ev.rows, worst_first=False)] == [
        "right", "wrong", "empty"]


def test_instance_counts_add_up():
    a = InstanceCounts(3, 2, 1, 0.8)
    a += InstanceCounts(1, 1, 1, 0.9)
    assert (a.true, a.predicted, a.matched) == (4, 3, 2)
    assert a.mean_matched_iou == pytest.approx(0.85)


def test_chunked_passes_give_the_same_counts(rng, monkeypatch):
    import segstudio.core.metrics as metrics

    true = rng.integers(0, 4, (37, 41)).astype(np.uint8)
    true[rng.random(true.shape) < 0.1] = 255
    pred = rng.integers(0, 4, (37, 41)).astype(np.uint8)
    t_lab, nt = _label_by_value(true == 1)
    p_lab, np_ = _label_by_value(pred == 1)
    whole_cm = confusion_matrix(true, pred, 4)
    whole_inst = match_instances(t_lab, p_lab, nt, np_, ignore=true == 255)
    monkeypatch.setattr(metrics, "CHUNK", 97)          # many chunks, ragged last one
    assert confusion_matrix(true, pred, 4).tolist() == whole_cm.tolist()
    assert match_instances(t_lab, p_lab, nt, np_, ignore=true == 255) == whole_inst
    with pytest.raises(ValueError, match="outside"):
        match_instances(t_lab, p_lab, nt - 1, np_)


from segstudio.core.metrics import iou_dice  # noqa: E402


def test_iou_dice_and_the_one_mean():
    true = np.array([[0, 0, 1], [1, 255, 255], [0, 1, 1]], np.uint8)
    pred = np.array([[0, 1, 1], [1, 2, 0], [0, 1, 0]], np.uint8)
    cm = confusion_matrix(true, pred, 4)
    assert cm.sum() == 7                       # the two 255 pixels are left out
    assert cm[0, 0] == 2 and cm[0, 1] == 1 and cm[1, 1] == 3 and cm[1, 0] == 1
    iou, dice = iou_dice(cm)
    assert np.isclose(iou[1], 3 / 5) and np.isclose(dice[1], 6 / 8)
    assert np.isclose(iou[0], 2 / 4)
    assert np.isnan(iou[2]) and np.isnan(dice[3])   # never true, never predicted
    s = class_scores(cm)
    assert np.isclose(s.mean("dice", exclude=[0]), 0.75)
    assert np.isclose(s.mean("dice"), (dice[0] + dice[1]) / 2)
    only_bg = class_scores(confusion_matrix(np.zeros((2, 2), np.uint8),
                                            np.array([[0, 1], [0, 0]], np.uint8), 2))
    # class 1 is predicted but labelled nowhere: Dice 0, yet no score to average
    assert only_bg.dice[1] == 0.0 and np.isnan(only_bg.mean("dice", exclude=[0]))
