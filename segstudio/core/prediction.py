"""Taking a model's prediction into a mask, and seeing where the two disagree (numpy only).

"Accept prediction" is one undo step on the document, whatever its extent; the modes decide
which pixels it may write: all of them, only the ones nobody has labelled yet, or only the
pixels the model gives to chosen classes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np

from segstudio.core.classes import UNLABELED
from segstudio.core.geometry import Rect
from segstudio.core.history import MaskEdit

log = logging.getLogger(__name__)

ACCEPT_MODES = ("all", "unlabeled", "classes")


def accept_where(mask: np.ndarray, labels: np.ndarray, mode: str = "unlabeled",
                 classes: Iterable[int] | None = None) -> np.ndarray:
    """Boolean map of the pixels an accept in `mode` would write (and would change)."""
    if mask.shape != labels.shape:
        raise ValueError(f"prediction {labels.shape} does not fit the mask {mask.shape}")
    if mode not in ACCEPT_MODES:
        raise ValueError(f"unknown accept mode {mode!r}; known: {list(ACCEPT_MODES)}")
    where = labels != mask
    if mode == "unlabeled":
        where &= mask == UNLABELED
    elif mode == "classes":
        chosen = np.fromiter(classes if classes is not None else (), np.int64)
        if chosen.size == 0:
            raise ValueError("mode 'classes' needs at least one class id")
        where &= np.isin(labels, chosen)
    return where


def accept_prediction(doc, labels: np.ndarray, mode: str = "unlabeled",
                      classes: Iterable[int] | None = None,
                      label: str = "Accept prediction",
                      objects: np.ndarray | None = None) -> MaskEdit | None:
    """Copy the prediction into an `ImageDocument` as one undo step; None if nothing changed.

    `objects`: the prediction's object ids (0 = none). The accepted pixels of object classes
    then take them, renumbered after the ids the image already has, so predicted objects stay
    apart and never merge with objects painted before.
    """
    where = accept_where(doc.mask, labels, mode, classes)
    if objects is not None:
        if objects.shape != labels.shape:
            raise ValueError(f"object ids {objects.shape} do not fit the prediction "
                             f"{labels.shape}")
        if mode != "unlabeled":
            # a pixel whose class already agrees but has no object yet takes its object id
            current = doc.objects if doc.objects is not None else 0
            agree = (objects > 0) & (labels == doc.mask) & (current == 0)
            if mode == "classes":
                agree &= np.isin(labels, np.fromiter(classes or (), np.int64))
            where = where | agree
    rows = np.flatnonzero(where.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(where[rows[0]:rows[-1] + 1].any(axis=0))
    rect = Rect(int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    object_value = None
    if objects is not None:
        part = np.asarray(objects[rect.slices])
        if part.any():
            base = doc.new_object_id() - 1
            object_value = np.where(part > 0, part.astype(np.uint32) + np.uint32(base),
                                    0).astype(np.uint32)
    return doc.replace(rect, np.ascontiguousarray(labels[rect.slices], np.uint8), label,
                       where=where[rect.slices], object_value=object_value)


def disagreement(mask: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Labelled pixels where the prediction says something else (the disagreement view)."""
    if mask.shape != labels.shape:
        raise ValueError(f"prediction {labels.shape} does not fit the mask {mask.shape}")
    return (mask != UNLABELED) & (mask != labels)
