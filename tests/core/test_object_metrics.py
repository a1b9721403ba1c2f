"""Object metrics (AP_tau, F1, PQ) against hand-computed answers and stardist's definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segstudio.core.metrics import (THRESHOLDS, Evaluator, InstanceCounts, object_counts,
                                    pooled, sequential_labels)


def _label_components(binary):
    import cv2

    n, labels = cv2.connectedComponents(binary.astype(np.uint8), connectivity=8,
                                        ltype=cv2.CV_32S)
    return labels, n - 1


def _squares(n: int, size: int = 10, shape=(40, 60)) -> np.ndarray:
    """n squares side by side in one row, touching: ids 1..n."""
    lab = np.zeros(shape, np.int32)
    for k in range(n):
        lab[10:10 + size, 5 + k * size:5 + (k + 1) * size] = k + 1
    return lab


# -- hand-made cases --------------------------------------------------------------------------
def test_three_touching_squares_predicted_as_one_region_match_nothing():
    truth = _squares(3)                      # IoU of each with the merged region: 100/300
    pred = (truth > 0).astype(np.int32)
    c = object_counts(truth, pred)
    s = c.at(0.5)
    assert (s.tp, s.fp, s.fn) == (0, 1, 3)
    assert s.ap == 0 and s.f1 == 0 and c.mean_ap == 0 and c.panoptic_quality == 0


def test_two_touching_squares_merged_sit_exactly_on_the_half_tie():
    truth = _squares(2)                      # each: 100 / 200 = 0.5, one of them may match
    c = object_counts(truth, (truth > 0).astype(np.int32))
    assert (c.at(0.5).tp, c.at(0.5).fp, c.at(0.5).fn) == (1, 0, 1)
    assert c.ap(0.5) == pytest.approx(0.5)
    assert c.ap(0.55) == 0
    assert c.mean_ap == pytest.approx(0.05)               # 0.5 at one tau of ten
    assert c.panoptic_quality == pytest.approx(0.5 / (1 + 0 + 0.5))
    assert c.at(0.5).f1 == pytest.approx(2 / 3)


def test_one_object_split_in_halves_counts_one_hit_and_one_false_positive():
    truth = np.zeros((30, 30), np.int32)
    truth[5:15, 5:25] = 7                    # any id, not 1
    pred = np.zeros_like(truth)
    pred[5:15, 5:15] = 3
    pred[5:15, 15:25] = 9
    s = object_counts(truth, pred).at(0.5)
    assert (s.tp, s.fp, s.fn) == (1, 1, 0)
    assert (s.precision, s.recall) == (pytest.approx(0.5), 1.0)
    assert s.panoptic_quality == pytest.approx(0.5 / 1.5)


def test_shifted_square_is_a_hit_up_to_its_iou_only():
    truth = np.zeros((30, 30), np.int32)
    truth[5:15, 5:15] = 1
    pred = np.roll(truth, 2, axis=1)         # 80 / 120 = 2/3
    c = object_counts(truth, pred)
    assert [c.ap(t) for t in THRESHOLDS] == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert c.mean_ap == pytest.approx(0.4)
    assert c.panoptic_quality == pytest.approx(2 / 3)


def test_perfect_prediction_scores_one_everywhere_and_empty_images_score_nothing():
    truth = _squares(3)
    c = object_counts(truth, truth * 5)      # other ids, same objects
    assert c.mean_ap == 1 and c.panoptic_quality == 1 and c.at(0.95).f1 == 1
    empty = object_counts(np.zeros((5, 5), np.int32), np.zeros((5, 5), np.int32))
    assert math.isnan(empty.ap(0.5)) and math.isnan(empty.mean_ap)
    missed = object_counts(truth, np.zeros_like(truth))
    assert missed.ap(0.5) == 0 and missed.at(0.5).precision == 0     # stardist: 0, not NaN


def test_counts_add_up_over_images_before_the_ratio():
    good = object_counts(_squares(1), _squares(1))
    merged = object_counts(_squares(3), (_squares(3) > 0).astype(np.int32))
    total = pooled([good, merged])
    # TP 1, FP 1, FN 3 over both images: 1/5, not the mean of the images' 1 and 0
    assert total.ap(0.5) == pytest.approx(0.2)
    assert good.ap(0.5) == 1 and merged.ap(0.5) == 0


def test_a_predicted_object_on_unlabeled_pixels_is_not_a_false_positive():
    truth = _squares(1)
    pred = truth.copy()
    pred[30:38, 40:50] = 2
    ignore = np.zeros(truth.shape, bool)
    ignore[28:40, 38:55] = True
    assert object_counts(truth, pred).at(0.5).fp == 1
    assert object_counts(truth, pred, ignore=ignore).at(0.5).fp == 0


def test_thresholds_below_half_are_refused_with_a_reason():
    c = object_counts(_squares(2), _squares(2))
    with pytest.raises(ValueError, match="Hungarian"):
        c.at(0.3)


def test_sequential_labels_keep_objects_and_reject_floats():
    lab = np.array([[0, 40, 40], [7, 7, 0]], np.uint16)
    seq, n = sequential_labels(lab)
    assert n == 2 and seq.tolist() == [[0, 2, 2], [1, 1, 0]]
    full, n = sequential_labels(np.array([[3, 3], [5, 5]]))        # no background at all
    assert n == 2 and set(np.unique(full)) == {1, 2}
    with pytest.raises(ValueError, match="integers"):
        sequential_labels(np.zeros((2, 2), np.float32))


# -- the evaluator ----------------------------------------------------------------------------
def test_evaluator_uses_given_instances_so_touching_objects_stay_apart():
    truth_objects = _squares(2)
    mask = (truth_objects > 0).astype(np.uint8)
    pred_objects = truth_objects.copy()
    ev = Evaluator(2, instance_classes=(1,), label_components=_label_components)
    row = ev.add(mask, mask, "split", true_objects=truth_objects, pred_objects=pred_objects)
    assert row.instances[1].ap(0.5) == 1 and row.object_ap == 1
    # without instances the same pixels are one component on each side: a match, 1 object
    row2 = ev.add(mask, mask, "components")
    assert row2.instances[1].true == 1 and row2.instances[1].ap(0.5) == 1
    # truth as instances, the prediction as components: the merged pair of the 2-class model
    row3 = ev.add(mask, mask, "merged", true_objects=truth_objects)
    assert row3.instances[1].at(0.5).fn == 1 and row3.object_ap == pytest.approx(0.5)
    rep = ev.report()
    assert [r.image_id for r in rep.worst_images("object_ap")][0] == "merged"
    d = rep.as_dict()
    assert d["instances"]["1"]["ap"]["0.5"] == pytest.approx(4 / 5)     # TP 4, FN 1
    assert set(d["instances"]["1"]["ap"]) == {f"{t:g}" for t in THRESHOLDS}
    assert d["images"][2]["object_ap50"] == pytest.approx(0.5)
    assert "AP@0.5 0.800" in rep.format_table()
    assert "merged" in rep.format_objects().split("lowest AP@0.5 first")[1].splitlines()[2]


def test_instance_counts_copy_is_independent():
    c = InstanceCounts(1, 1, 1, 0.9, [0.9])
    d = c.copy()
    d += c
    assert c.ious == [0.9] and d.ious == [0.9, 0.9]


# -- an independent reference: stardist's definitions, slow and plain -------------------------
def _reference(y_true: np.ndarray, y_pred: np.ndarray, thresh: float) -> dict:
    """stardist.matching.matching re-implemented with loops and scipy's assignment."""
    from scipy.optimize import linear_sum_assignment

    t_ids = [v for v in np.unique(y_true) if v != 0]
    p_ids = [v for v in np.unique(y_pred) if v != 0]
    scores = np.zeros((len(t_ids), len(p_ids)))
    for i, a in enumerate(t_ids):
        for j, b in enumerate(p_ids):
            inter = np.sum((y_true == a) & (y_pred == b))
            union = np.sum(y_true == a) + np.sum(y_pred == b) - inter
            scores[i, j] = inter / union
    n_true, n_pred = len(t_ids), len(p_ids)
    n_matched = min(n_true, n_pred)
    tp, matched_sum = 0, 0.0
    if n_matched > 0 and np.any(scores >= thresh):
        costs = -(scores >= thresh).astype(float) - scores / (2 * n_matched)
        ti, pi = linear_sum_assignment(costs)
        ok = scores[ti, pi] >= thresh
        tp = int(ok.sum())
        matched_sum = float(scores[ti, pi][ok].sum())
    fp, fn = n_pred - tp, n_true - tp
    return {"tp": tp, "fp": fp, "fn": fn,
            "ap": tp / (tp + fp + fn) if tp > 0 else 0.0,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp > 0 else 0.0,
            "precision": tp / (tp + fp) if tp > 0 else 0.0,
            "recall": tp / (tp + fn) if tp > 0 else 0.0,
            "pq": matched_sum / (tp + fp / 2 + fn / 2) if tp + fp + fn else 0.0}


def _random_labels(rng: np.random.Generator, shape=(48, 48), n=12) -> np.ndarray:
    lab = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    for k in range(n):
        cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        r = rng.uniform(2, 7)
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = rng.integers(1, 1000)
    return lab


def _perturbed(rng: np.random.Generator, lab: np.ndarray) -> np.ndarray:
    """Shifted, merged, dropped and invented objects: IoUs all over 0..1."""
    out = np.roll(lab, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1))
    ids = [v for v in np.unique(out) if v]
    for v in ids:
        u = rng.random()
        if u < 0.15:
            out[out == v] = 0
        elif u < 0.3 and ids:
            out[out == v] = ids[0]                   # merge into another object
    yy, xx = np.mgrid[:lab.shape[0], :lab.shape[1]]
    for _ in range(int(rng.integers(0, 3))):
        cy, cx = rng.integers(0, lab.shape[0]), rng.integers(0, lab.shape[1])
        out[(yy - cy) ** 2 + (xx - cx) ** 2 <= 9] = 2000 + int(rng.integers(0, 100))
    return out


@pytest.mark.parametrize("seed", range(8))
def test_matches_stardist_definitions_on_random_label_images(seed):
    rng = np.random.default_rng(seed)
    y_true = _random_labels(rng)
    y_pred = _perturbed(rng, y_true)
    c = object_counts(y_true, y_pred)
    for tau in THRESHOLDS:
        ref = _reference(y_true, y_pred, tau)
        s = c.at(tau)
        assert (s.tp, s.fp, s.fn) == (ref["tp"], ref["fp"], ref["fn"]), tau
        for ours, key in ((s.ap, "ap"), (s.f1, "f1"), (s.precision, "precision"),
                          (s.recall, "recall")):
            assert ours == pytest.approx(ref[key]), (tau, key)
    assert c.panoptic_quality == pytest.approx(_reference(y_true, y_pred, 0.5)["pq"])


def test_matches_stardist_over_a_dataset_summed_counts():
    rng = np.random.default_rng(42)
    pairs = [(t, _perturbed(rng, t)) for t in (_random_labels(rng) for _ in range(5))]
    total = pooled(object_counts(t, p) for t, p in pairs)
    for tau in (0.5, 0.7, 0.9):
        refs = [_reference(t, p, tau) for t, p in pairs]
        tp, fp, fn = (sum(r[k] for r in refs) for k in ("tp", "fp", "fn"))
        assert total.ap(tau) == pytest.approx(tp / (tp + fp + fn) if tp else 0.0)
