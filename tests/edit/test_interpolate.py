"""Filling the slices between key slices: shapes grow, move, stay apart and vanish as a user
of Slicer's "fill between slices" expects; what nobody labelled stays unlabeled."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from segstudio.core.jobs import Cancelled, CancelToken
from segstudio.edit.interpolate import interpolate_between

U = 255


def disc(radius: int, centre=(64, 64), shape=(128, 128), cls: int = 1, rest: int = 0):
    m = np.full(shape, rest, np.uint8)
    cv2.circle(m, (centre[1], centre[0]), radius, cls, -1)
    return m


def square(y: int, x: int, size: int = 20, shape=(128, 128), cls: int = 1, rest: int = 0):
    m = np.full(shape, rest, np.uint8)
    m[y:y + size, x:x + size] = cls
    return m


def test_disc_grows_to_the_radius_between():
    out = interpolate_between({0: disc(10), 10: disc(20)})
    assert sorted(out) == list(range(1, 10))
    for k, expected in ((5, 15), (2, 12), (8, 18)):
        area = int((out[k] == 1).sum())
        assert abs(area - int((disc(expected) == 1).sum())) / area < 0.05, (k, area)
    assert all(out[k].dtype == np.uint8 for k in out)
    areas = [int((out[k] == 1).sum()) for k in range(1, 10)]
    assert areas == sorted(areas)                  # grows slice by slice
    assert set(np.unique(out[5])) == {0, 1}        # labelled on both sides: the rest is 0


def test_square_moves_on_a_straight_line():
    out = interpolate_between({0: square(10, 10), 8: square(90, 50)})
    for k in range(1, 8):
        ys, xs = np.nonzero(out[k] == 1)
        t = k / 8
        assert abs(ys.mean() - (19.5 + 80 * t)) < 1.0, k
        assert abs(xs.mean() - (19.5 + 40 * t)) < 1.0, k
        assert abs(len(ys) - 400) / 400 < 0.15, k     # it moves, it does not swell


def test_two_classes_stay_apart_and_keep_their_ids():
    a = square(20, 10, cls=1)
    a[20:40, 70:90] = 2
    b = square(20, 30, cls=1)
    b[20:40, 50:70] = 2            # the two squares meet at x = 50 on the far key slice
    out = interpolate_between({0: a, 4: b})
    for k in range(1, 4):
        ones, twos = np.nonzero(out[k] == 1)[1], np.nonzero(out[k] == 2)[1]
        assert len(ones) and len(twos)
        assert ones.max() < twos.min(), k          # class 1 stays left of class 2
    # where the blends overlap the deeper one wins: class 2 is not eaten by class 1's growth
    assert abs(int((out[2] == 2).sum()) - 400) / 400 < 0.15


def test_a_class_on_one_side_only_shrinks_and_is_gone_by_halfway():
    a = disc(12, cls=1)
    a[5:25, 5:25] = 2                          # class 2 only on the first key slice
    b = disc(12, cls=1)
    out = interpolate_between({0: a, 10: b})
    areas = [int((out[k] == 2).sum()) for k in range(1, 10)]
    assert 0 < areas[0] < 400
    assert areas == sorted(areas, reverse=True)
    assert all(area == 0 for area in areas[4:])     # slice 5 (halfway) on: gone
    assert all((out[k] == 1).sum() > 300 for k in range(1, 10))    # class 1 untouched


def test_unlabeled_pixels_stay_unlabeled():
    a = disc(10, rest=U)                       # the user painted the disc only
    b = disc(10, rest=U)
    b[100:120, 100:120] = 0                    # and some background on the far slice
    out = interpolate_between({3: a, 7: b})
    assert sorted(out) == [4, 5, 6]
    for k in out:
        assert (out[k][disc(10) == 1] == 1).all()
        assert (out[k][:40, 100:] == U).all()  # nobody labelled it: still unlabeled
    # background labelled on one side only: the nearer key slice decides
    assert (out[6][100:120, 100:120] == 0).all()
    assert (out[4][100:120, 100:120] == U).all()
    assert (out[5][100:120, 100:120] == U).all()      # halfway: the lower key slice


def test_labelled_background_on_both_sides_becomes_background():
    a = disc(10, rest=U)
    a[:, :30] = 0
    b = disc(20, rest=U)
    b[:, :30] = 0
    out = interpolate_between({0: a, 2: b})
    assert (out[1][:, :30] == 0).all()
    assert (out[1][:, 100:] == U).all()


def test_each_gap_between_consecutive_key_slices_is_filled():
    out = interpolate_between({0: disc(10), 4: disc(20), 5: disc(20), 9: disc(10)})
    assert sorted(out) == [1, 2, 3, 6, 7, 8]
    assert np.array_equal(out[2], out[7])          # symmetric gaps, same answer


def test_fewer_than_two_key_slices_fill_nothing():
    assert interpolate_between({}) == {}
    assert interpolate_between({4: disc(10)}) == {}
    assert interpolate_between({4: disc(10), 5: disc(12)}) == {}     # neighbours


def test_classes_limits_what_is_interpolated():
    a = square(10, 10, cls=1)
    a[80:100, 80:100] = 2
    out = interpolate_between({0: a, 4: a}, classes=[2])
    assert set(np.unique(out[2])) == {0, 2}
    with pytest.raises(ValueError, match="0 is background"):
        interpolate_between({0: a, 4: a}, classes=[0, 1])


def test_masks_of_different_sizes_are_refused_naming_the_slices():
    with pytest.raises(ValueError, match=r"key slices 2 and 9 differ in size \(128 x 128 and 64 x 64\)"):
        interpolate_between({2: disc(10), 9: disc(10, centre=(32, 32), shape=(64, 64))})
    with pytest.raises(ValueError, match="key slice 3: a mask is a 2-D array"):
        interpolate_between({3: np.zeros((4, 4, 3), np.uint8), 5: np.zeros((4, 4), np.uint8)})


def test_cancel_stops_between_slices():
    token = CancelToken()
    seen = []

    def on_progress(p):
        seen.append(p.done)
        if p.done == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        interpolate_between({0: disc(10), 20: disc(20)}, cancel=token, progress=on_progress)
    assert seen == [1, 2, 3]
    already = CancelToken()
    already.cancel()
    with pytest.raises(Cancelled):
        interpolate_between({0: disc(10), 20: disc(20)}, cancel=already)


def test_progress_counts_every_filled_slice():
    seen = []
    interpolate_between({0: disc(10), 3: disc(20), 6: disc(10)}, progress=seen.append)
    assert [(p.done, p.total) for p in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_a_512_pixel_twenty_slice_gap_is_quick():
    a = disc(60, centre=(200, 220), shape=(512, 512), rest=U)
    a[300:400, 300:420] = 2
    b = disc(90, centre=(260, 250), shape=(512, 512), rest=U)
    b[320:420, 280:400] = 2
    interpolate_between({0: a[:64, :64], 2: b[:64, :64]})       # warm up OpenCV
    start = time.perf_counter()
    out = interpolate_between({0: a, 21: b})
    assert len(out) == 20
    assert time.perf_counter() - start < 1.0
