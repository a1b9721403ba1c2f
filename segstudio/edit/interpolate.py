"""Filling the slices between labelled key slices of a volume (shape-based interpolation).

    filled = interpolate_between({10: mask_10, 30: mask_30}, cancel=token, progress=on_progress)
    filled[20]               # uint8 mask of slice 20, class ids, 255 = unlabeled

Each class is turned into a signed distance map on every key slice (negative inside, positive
outside, in pixels; `cv2.distanceTransform`, exact Euclidean), and a slice at fraction `t` of
the way from key slice `a` to key slice `b` gets the class where `(1 - t) * d_a + t * d_b < 0`.
A disc of radius 10 and one of radius 20 so give a disc of radius about 15 halfway, and a
square that moves is found on the straight line between its two places.

The rules, pixel by pixel, for a slice between two consecutive key slices:

- A class present on only one of the two key slices shrinks towards its deepest point and is
  gone by halfway: the other side's distance is taken as the class's greatest depth there, a
  constant, so the blend of its deepest pixel reaches 0 exactly at t = 0.5.
- A class whose two regions share less than half of the smaller one (it moved further than its
  own size) is first aligned: both distance maps are moved so that the class's centroid goes
  in a straight line from one key slice to the other, then blended. Plain blending would lose
  such a shape halfway; regions that overlap more (the usual case) are blended where they are.
- Where several classes come out of the blend, the pixel takes the one whose blended distance
  is deepest (most negative): two classes that touch share their border halfway between them.
- A pixel no class covers is background (0) where the nearer key slice is labelled (any value
  but `unlabeled`; halfway, the lower slice counts as nearer) and `unlabeled` where it is not:
  labelled on both key slices -> 0, on neither -> 255, on one only -> that slice's half of the
  gap is 0, the other half 255. Class pixels are never turned unlabeled.
- With `classes` given only those are interpolated; pixels of other classes on the key slices
  count as labelled background. Class ids must lie in 1..254 (0 is background, 255 unlabeled).

Only class ids are interpolated: instance ids (classes marked as objects) are out of scope, and
so is deciding which slices are key slices (the caller passes the ones the user labelled) and
merging the result with what the slices in between already hold. Fewer than two key slices, or
key slices that are neighbours, give `{}` (nothing lies between them); the caller says so.
Cost: two distance transforms per class and key slice (each key slice once, shared by the gaps
on both its sides), then a few float32 array operations per class and filled slice (two
translations more for an aligned class): a 512 x 512, 20-slice gap takes tens of ms.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from segstudio.core.jobs import CancelToken, Progress, ProgressFn

OVERLAP_TO_ALIGN = 0.5   # regions sharing less than this part of the smaller one get aligned


def _signed_distance(region: np.ndarray) -> np.ndarray:
    """float32: distance to the region's border, negative inside; the region is not empty."""
    src = region.view(np.uint8)
    inside = cv2.distanceTransform(src, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    outside = cv2.distanceTransform(1 - src, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    # a region covering the whole slice has no border: OpenCV then answers ~1.8e19 inside
    np.minimum(inside, float(sum(region.shape)), out=inside)
    np.subtract(outside, inside, out=outside)
    return outside


@dataclass
class _Region:
    """One class on one key slice: its pixels, their centroid (y, x), its distance map."""

    pixels: np.ndarray
    centroid: np.ndarray
    field: np.ndarray


class _KeySlice:
    """One key slice's class regions and their signed distance maps, computed once."""

    def __init__(self, mask: np.ndarray, classes: Collection[int], unlabeled: int) -> None:
        counts = np.bincount(mask.ravel(), minlength=256)
        self.labelled = mask != unlabeled
        self.regions: dict[int, _Region] = {}
        for c in classes:
            if counts[c]:
                pixels = mask == c
                ys, xs = np.nonzero(pixels)
                self.regions[c] = _Region(pixels, np.array([ys.mean(), xs.mean()]),
                                          _signed_distance(pixels))


class _Blend:
    """How one class goes from the left key slice to the right one: `at(t, out)` writes the
    blended signed distance at fraction t."""

    def __init__(self, a: _Region | None, b: _Region | None) -> None:
        self.shift = None
        if a is None or b is None:
            # gone by halfway: the missing side is the present side's greatest depth
            fa = a.field if a is not None else np.full_like(b.field, -float(b.field.min()))
            fb = b.field if b is not None else np.full_like(a.field, -float(a.field.min()))
        else:
            fa, fb = a.field, b.field
            shared = np.count_nonzero(a.pixels & b.pixels)
            smaller = min(np.count_nonzero(a.pixels), np.count_nonzero(b.pixels))
            if shared < OVERLAP_TO_ALIGN * smaller:
                self.shift = b.centroid - a.centroid      # (dy, dx), followed linearly
        self.a, self.b = fa, fb
        self.slope = None if self.shift is not None else fb - fa
        self._buf = np.empty_like(fa) if self.shift is not None else None

    def at(self, t: np.float32, out: np.ndarray) -> None:
        if self.shift is None:
            np.multiply(self.slope, t, out=out)
            out += self.a
            return
        # both sides moved to where the centroid is at t, then blended
        _moved(self.a, self.shift * float(t), out)
        out *= 1 - t
        _moved(self.b, -self.shift * (1 - float(t)), self._buf)
        self._buf *= t
        out += self._buf


def _moved(field: np.ndarray, dyx: np.ndarray, out: np.ndarray) -> None:
    m = np.float32([[1, 0, dyx[1]], [0, 1, dyx[0]]])
    cv2.warpAffine(field, m, (field.shape[1], field.shape[0]), dst=out,
                   flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _check(masks: Mapping[int, np.ndarray], unlabeled: int,
           classes: Collection[int] | None) -> dict[int, np.ndarray]:
    if not 0 <= int(unlabeled) <= 255:
        raise ValueError(f"unlabeled must be a uint8 value (0..255), not {unlabeled}")
    checked: dict[int, np.ndarray] = {}
    first: tuple[int, tuple[int, ...]] | None = None
    for k in sorted(masks):
        m = np.asarray(masks[k])
        if m.ndim != 2:
            raise ValueError(f"key slice {k}: a mask is a 2-D array of class ids, "
                             f"not an array of shape {m.shape}")
        if m.dtype != np.uint8:
            if m.dtype.kind not in "iub" or (m.size and (m.min() < 0 or m.max() > 255)):
                raise ValueError(f"key slice {k}: a mask holds class ids 0..255 (uint8), "
                                 f"not {m.dtype} values")
            m = m.astype(np.uint8)
        if first is None:
            first = (k, m.shape)
        elif m.shape != first[1]:
            raise ValueError(f"key slices {first[0]} and {k} differ in size "
                             f"({first[1][0]} x {first[1][1]} and {m.shape[0]} x {m.shape[1]}); "
                             f"the slices of one volume share one size")
        checked[int(k)] = m
    if classes is not None:
        bad = sorted(int(c) for c in classes if not 1 <= int(c) <= 254 or int(c) == unlabeled)
        if bad:
            raise ValueError(f"cannot interpolate class ids {bad}: classes are 1..254 "
                             f"(0 is background, {unlabeled} unlabeled)")
    return checked


def interpolate_between(masks: Mapping[int, np.ndarray], *, unlabeled: int = 255,
                        classes: Collection[int] | None = None,
                        cancel: CancelToken | None = None,
                        progress: ProgressFn | None = None) -> dict[int, np.ndarray]:
    """Masks for every slice strictly between two consecutive key slices of `masks` (slice
    index -> uint8 mask of a slice the user labelled), by blending signed distance maps per
    class; the rules are in the module docstring. Raises `Cancelled` when `cancel` is set."""
    checked = _check(masks, unlabeled, classes)
    keys = sorted(checked)
    total = sum(b - a - 1 for a, b in zip(keys, keys[1:]))
    if total == 0:
        return {}
    if classes is None:
        present = np.zeros(256, bool)
        for m in checked.values():
            present |= np.bincount(m.ravel(), minlength=256) > 0
        present[0] = present[unlabeled] = False
        class_ids = [int(c) for c in np.flatnonzero(present)]
    else:
        class_ids = sorted({int(c) for c in classes})
    shape = checked[keys[0]].shape
    out: dict[int, np.ndarray] = {}
    done = 0
    blend = np.empty(shape, np.float32)
    best = np.empty(shape, np.float32)
    won = np.empty(shape, bool)
    right: _KeySlice | None = None
    for a, b in zip(keys, keys[1:]):
        if cancel is not None:
            cancel.raise_if_cancelled()
        left = right if right is not None else _KeySlice(checked[a], class_ids, unlabeled)
        right = _KeySlice(checked[b], class_ids, unlabeled)
        if b - a < 2:
            continue
        blends = [(c, _Blend(left.regions.get(c), right.regions.get(c))) for c in class_ids
                  if c in left.regions or c in right.regions]
        for k in range(a + 1, b):
            if cancel is not None:
                cancel.raise_if_cancelled()
            t = np.float32((k - a) / (b - a))
            label = np.zeros(shape, np.uint8)
            best.fill(0.0)       # only negative blends (inside) can win a pixel
            for c, blended in blends:
                blended.at(t, blend)
                np.less(blend, best, out=won)
                np.copyto(best, blend, where=won)
                label[won] = c
            # no class here: background where the nearer key slice is labelled (halfway: left)
            nearer = left.labelled if 2 * (k - a) <= b - a else right.labelled
            np.logical_not(nearer, out=won)
            won &= label == 0
            label[won] = unlabeled
            out[k] = label
            done += 1
            if progress is not None:
                progress(Progress(done, total, f"slice {k}"))
    return out
