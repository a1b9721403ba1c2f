"""3-class targets and seeded flooding: touching objects come back as separate objects."""

from __future__ import annotations

import numpy as np
import pytest

from segstudio.core.metrics import object_counts
from segstudio.ml.instances import (BOUNDARY, INTERIOR, instances_from_probabilities,
                                    three_class_targets)


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _best_iou(truth, pred, k):
    t = truth == k
    ids, counts = np.unique(pred[t], return_counts=True)
    j = ids[np.argmax(np.where(ids > 0, counts, -1))]
    p = pred == j
    return (t & p).sum() / (t | p).sum()


def test_two_touching_discs_come_back_as_two_objects():
    shape = (64, 64)
    lab = np.zeros(shape, np.int32)
    lab[_disc(shape, 32, 20, 11)] = 1
    lab[_disc(shape, 32, 42, 11) & (lab == 0)] = 2        # they share a long edge
    assert np.count_nonzero((lab > 0)) and len(np.unique(lab)) == 3
    targets = three_class_targets(lab)
    assert targets.dtype == np.uint8 and set(np.unique(targets)) == {0, 1, 2}
    # the contact line is boundary on both sides, so the interiors do not touch
    assert (targets[32, 29:34] == BOUNDARY).all()
    objects = instances_from_probabilities(targets)
    assert objects.dtype == np.int32 and objects.max() == 2
    assert _best_iou(lab, objects, 1) > 0.9 and _best_iou(lab, objects, 2) > 0.9


def test_probabilities_work_like_the_class_map():
    shape = (48, 48)
    lab = np.zeros(shape, np.int32)
    lab[_disc(shape, 24, 15, 8)] = 5
    lab[_disc(shape, 24, 31, 8) & (lab == 0)] = 9
    targets = three_class_targets(lab)
    probs = np.stack([(targets == c).astype(np.float32) * 0.8 + 0.1 for c in range(3)])
    objects = instances_from_probabilities(probs)
    assert objects.max() == 2
    assert object_counts(lab, objects).ap(0.75) == 1


def test_boundary_width_follows_object_size():
    small = np.zeros((20, 20), np.int32)
    small[5:12, 5:12] = 1                         # 7 px: 1 px ring, 5x5 interior left
    t = three_class_targets(small)
    assert np.count_nonzero(t == INTERIOR) == 25
    big = np.zeros((60, 60), np.int32)
    big[10:40, 10:40] = 1                         # 30 px: 2 px ring
    t = three_class_targets(big)
    assert np.count_nonzero(t == INTERIOR) == 26 * 26
    edge = np.zeros((20, 20), np.int32)
    edge[0:7, 0:7] = 1                            # cut by the frame: no ring along the frame
    assert three_class_targets(edge)[0, 0] == INTERIOR


def test_a_tiny_object_without_interior_is_kept_and_specks_are_dropped():
    cls = np.zeros((20, 20), np.uint8)
    cls[2:5, 2:5] = BOUNDARY                      # 9 px, all boundary: one object
    cls[15, 15] = INTERIOR                        # a 1 px speck: below min_area
    objects = instances_from_probabilities(cls)
    assert objects.max() == 1 and (objects[2:5, 2:5] == 1).all() and objects[15, 15] == 0


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="integers"):
        three_class_targets(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="3 channels"):
        instances_from_probabilities(np.zeros((2, 4, 4), np.float32))


def test_fifty_touching_discs_are_recovered_at_ap50():
    rng = np.random.default_rng(0)
    shape = (256, 256)
    lab = np.zeros(shape, np.int32)
    placed = 0
    centres: list[tuple[int, int]] = []
    while placed < 50:
        r = int(rng.integers(6, 12))
        cy, cx = (int(v) for v in rng.integers(r, 256 - r, 2))
        # touching, not swallowed: centres at least 1.2 radii apart, so discs overlap a bit
        if any((cy - y) ** 2 + (cx - x) ** 2 < (1.2 * r) ** 2 for y, x in centres):
            continue
        centres.append((cy, cx))
        placed += 1
        lab[_disc(shape, cy, cx, r) & (lab == 0)] = placed
    merged = (lab > 0).astype(np.uint8)
    import cv2

    n_components = cv2.connectedComponents(merged)[0] - 1
    assert n_components < 45                      # the case really has touching objects
    objects = instances_from_probabilities(three_class_targets(lab))
    assert object_counts(lab, objects).ap(0.5) >= 0.95
