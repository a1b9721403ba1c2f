"""benchmarks/object_errors.py sorts every miss into the right group."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from object_errors import classify  # noqa: E402


def test_matched_merged_missed_and_spurious_objects_are_told_apart():
    truth = np.zeros((60, 80), np.uint16)
    truth[5:15, 5:15] = 1          # found as it is
    truth[20:30, 5:15] = 2         # two touching objects predicted as one
    truth[20:30, 15:25] = 3
    truth[40:50, 40:50] = 4        # not found at all
    pred = np.zeros_like(truth)
    pred[5:15, 5:14] = 1
    pred[19:31, 4:26] = 2          # a little larger than the pair: IoU < 0.5 with each
    pred[45:55, 65:75] = 3         # nothing there
    true_groups, pred_groups, diam = classify(truth, pred)
    assert true_groups == {"matched": 1, "merged": 2, "missed": 1, "poor": 0}
    assert pred_groups == {"spurious": 1, "split": 0, "poor": 1}
    assert round(diam["missed"][0], 1) == round(float(np.sqrt(400 / np.pi)), 1)


def test_one_object_cut_in_two_is_a_split():
    truth = np.zeros((30, 30), np.uint16)
    truth[5:25, 5:25] = 1
    pred = np.zeros_like(truth)
    pred[5:25, 5:12], pred[5:25, 12:18], pred[5:25, 18:25] = 1, 2, 3
    true_groups, pred_groups, _ = classify(truth, pred)
    assert true_groups["poor"] == 1 and pred_groups == {"spurious": 0, "split": 3, "poor": 0}
