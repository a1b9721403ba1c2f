"""Editing objects of instance classes: pick, merge, split by a line cut, delete. No Qt.

Each function takes an ImageDocument (the change is one undo step, a tile diff of both layers,
with the document's usual signals) or a `(mask, objects)` pair of arrays changed in place (the
CLI, tests). Points are (y, x) pixel centres: pixel (y, x) has its centre at (y, x).
"""

from __future__ import annotations

import numpy as np

from segstudio.core.classes import UNLABELED
from segstudio.core.document import ImageDocument
from segstudio.core.geometry import Rect

Target = ImageDocument | tuple[np.ndarray, np.ndarray]


class ObjectEditError(ValueError):
    """An object edit that cannot be done (no such object, objects of different classes)."""


def _layers(target: Target) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(target, ImageDocument):
        return target.mask, target.objects
    mask, objects = target
    if objects is not None and objects.shape != mask.shape:
        raise ObjectEditError(f"the instance layer {objects.shape} does not match the mask "
                              f"{mask.shape}")
    return mask, objects


def new_object_id(objects: np.ndarray | ImageDocument | None) -> int:
    """An id no object has: the largest + 1 (a document hands out ids it never reuses)."""
    if isinstance(objects, ImageDocument):
        return objects.new_object_id()
    if objects is None or objects.size == 0:
        return 1
    return int(objects.max()) + 1


def object_at(objects: np.ndarray | None, y: float, x: float) -> int:
    """The object id at pixel (y, x); 0 off the image, on no object or without a layer."""
    if objects is None:
        return 0
    yi, xi = int(np.floor(y)), int(np.floor(x))
    if not (0 <= yi < objects.shape[0] and 0 <= xi < objects.shape[1]):
        return 0
    return int(objects[yi, xi])


def object_rect(objects: np.ndarray, ids) -> Rect | None:
    """Bounding box of the pixels of the given object ids, or None when there are none."""
    hit = np.isin(objects, np.asarray(list(ids), np.uint32))
    rows, cols = np.flatnonzero(hit.any(axis=1)), np.flatnonzero(hit.any(axis=0))
    if rows.size == 0:
        return None
    return Rect(int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)


def object_class(target: Target, object_id: int) -> int:
    """The class id of an object's pixels; ObjectEditError if the image has no such object."""
    mask, objects = _layers(target)
    if object_id <= 0 or objects is None:
        raise ObjectEditError(f"no object {object_id} in this image")
    where = np.flatnonzero(objects.ravel() == object_id)
    if where.size == 0:
        raise ObjectEditError(f"no object {object_id} in this image")
    return int(mask.ravel()[where[0]])


def _commit(target: Target, rect: Rect, where: np.ndarray, mask_values, object_values,
            label: str) -> None:
    """Write the region: one undo step on a document, in place on arrays."""
    if isinstance(target, ImageDocument):
        target.replace(rect, mask_values, label, where=where, object_value=object_values)
        return
    mask, objects = target
    m, o = mask[rect.slices], objects[rect.slices]
    m[where] = mask_values[where] if isinstance(mask_values, np.ndarray) else mask_values
    o[where] = object_values[where] if isinstance(object_values, np.ndarray) else object_values


def merge_objects(target: Target, ids) -> int:
    """The objects `ids` become one (the smallest id); returns it, 0 if nothing changed.

    Objects of different classes are refused: a merged object has one class.
    """
    ids = sorted({int(i) for i in ids})
    if len(ids) < 2:
        return 0
    classes = {i: object_class(target, i) for i in ids}
    if len(set(classes.values())) > 1:
        raise ObjectEditError(f"objects {ids} are of different classes "
                              f"({sorted(set(classes.values()))}); merge objects of one class")
    mask, objects = _layers(target)
    keep, rest = ids[0], ids[1:]
    rect = object_rect(objects, rest)
    region = objects[rect.slices]
    where = np.isin(region, np.asarray(rest, np.uint32))
    _commit(target, rect, where, mask[rect.slices].copy(), keep, "Merge objects")
    return keep


def split_object(target: Target, p0: tuple[float, float], p1: tuple[float, float],
                 object_id: int | None = None) -> int:
    """Cut an object along the straight line through p0 and p1 (y, x), across the whole
    object: the pixels on one side keep the id, the other side becomes a new object; a pixel
    the line crosses goes to the side its centre lies on (the nearer side). The object is
    `object_id`, or the one the segment p0-p1 crosses most. Returns the new id, or 0 when the
    line does not cut the object in two."""
    (y0, x0), (y1, x1) = p0, p1
    dy, dx = y1 - y0, x1 - x0
    if dy * dy + dx * dx < 1e-12:
        raise ObjectEditError("a cut needs two different points")
    mask, objects = _layers(target)
    if objects is None:
        return 0
    if object_id is None:
        object_id = most_crossed(objects, p0, p1)
        if object_id == 0:
            return 0
    object_class(target, object_id)            # raises for an unknown id
    rect = object_rect(objects, [object_id])
    ys = np.arange(rect.y0, rect.y1, dtype=np.float64)[:, None]
    xs = np.arange(rect.x0, rect.x1, dtype=np.float64)[None, :]
    side = (xs - x0) * dy - (ys - y0) * dx > 0   # which side of the line each pixel centre is
    inside = objects[rect.slices] == object_id
    cut = inside & side
    if not cut.any() or cut.sum() == inside.sum():
        return 0
    new_id = new_object_id(target if isinstance(target, ImageDocument) else objects)
    _commit(target, rect, cut, mask[rect.slices].copy(), new_id, "Split object")
    return new_id


def most_crossed(objects: np.ndarray, p0, p1) -> int:
    """The object under most of the segment's points (every half pixel along it)."""
    n = int(np.ceil(2 * max(abs(p1[0] - p0[0]), abs(p1[1] - p0[1])))) + 1
    t = np.linspace(0.0, 1.0, n)
    ys = np.rint(p0[0] + t * (p1[0] - p0[0])).astype(np.int64)
    xs = np.rint(p0[1] + t * (p1[1] - p0[1])).astype(np.int64)
    ok = (ys >= 0) & (ys < objects.shape[0]) & (xs >= 0) & (xs < objects.shape[1])
    hits = objects[ys[ok], xs[ok]]
    hits = hits[hits != 0]
    if hits.size == 0:
        return 0
    ids, counts = np.unique(hits, return_counts=True)
    return int(ids[np.argmax(counts)])


def delete_object(target: Target, object_id: int) -> bool:
    """The object's pixels become unlabeled (class and id); False if there was no such object."""
    return delete_objects(target, [object_id]) > 0


def delete_objects(target: Target, ids) -> int:
    """Several objects deleted as one step; returns how many were there."""
    mask, objects = _layers(target)
    ids = np.asarray(sorted({int(i) for i in ids if int(i) > 0}), np.uint32)
    if objects is None or ids.size == 0:
        return 0
    rect = object_rect(objects, ids)
    if rect is None:
        return 0
    region = objects[rect.slices]
    found = int(np.isin(ids, np.unique(region)).sum())
    where = np.isin(region, ids)
    _commit(target, rect, where, UNLABELED, 0, "Delete object" if found == 1 else "Delete objects")
    return found
