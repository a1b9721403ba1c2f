"""Whole-mask operations on one class: fill holes, remove islands, dilate, erode, and more.

Each returns the new mask (a copy) or None when nothing would change; the document applies
it as one undoable step (only the tiles that changed are kept).
"""

from __future__ import annotations

import cv2
import numpy as np

from segstudio.core.classes import BACKGROUND, UNLABELED


def _result(old: np.ndarray, new: np.ndarray) -> np.ndarray | None:
    return None if np.array_equal(old, new) else new


def fill_holes(mask: np.ndarray, class_id: int) -> np.ndarray | None:
    """Regions enclosed by `class_id` (not touching the image border) become `class_id`."""
    outside = (mask != class_id).astype(np.uint8)
    n, labels = cv2.connectedComponents(outside, connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    holes = (labels > 0) & ~np.isin(labels, border)
    new = mask.copy()
    new[holes] = class_id
    return _result(mask, new)


def remove_islands(mask: np.ndarray, class_id: int, min_pixels: int) -> np.ndarray | None:
    """Connected pieces of `class_id` smaller than `min_pixels` become background."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats((mask == class_id).astype(np.uint8),
                                                           connectivity=8)
    small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < min_pixels)
    small = small[small > 0]
    if small.size == 0:
        return None
    new = mask.copy()
    new[np.isin(labels, small)] = BACKGROUND
    return new


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def dilate(mask: np.ndarray, class_id: int, radius: int) -> np.ndarray | None:
    """Grow `class_id` by `radius` px over background and unlabeled pixels (other classes stay)."""
    grown = cv2.dilate((mask == class_id).astype(np.uint8), _disk(radius)).astype(bool)
    new = mask.copy()
    new[grown & ((mask == BACKGROUND) | (mask == UNLABELED))] = class_id
    return _result(mask, new)


def erode(mask: np.ndarray, class_id: int, radius: int) -> np.ndarray | None:
    """Shrink `class_id` by `radius` px; the pixels it gives up become background."""
    own = (mask == class_id).astype(np.uint8)
    kept = cv2.erode(own, _disk(radius), borderType=cv2.BORDER_REPLICATE).astype(bool)
    new = mask.copy()
    new[own.astype(bool) & ~kept] = BACKGROUND
    return _result(mask, new)


def unlabeled_to_background(mask: np.ndarray) -> np.ndarray | None:
    new = mask.copy()
    new[mask == UNLABELED] = BACKGROUND
    return _result(mask, new)


def clear_class(mask: np.ndarray, class_id: int) -> np.ndarray | None:
    """Every pixel of `class_id` becomes unlabeled."""
    new = mask.copy()
    new[mask == class_id] = UNLABELED
    return _result(mask, new)
