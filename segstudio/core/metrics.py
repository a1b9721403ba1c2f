"""Per-class IoU and Dice from one confusion matrix; 255 (unlabeled) is ignored everywhere."""

from __future__ import annotations

import numpy as np

from segstudio.core.classes import UNLABELED


def confusion_matrix(true: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """num_classes x num_classes int64 counts, rows = true class, columns = predicted class.

    Pixels whose true value is 255 (or any id >= num_classes) are left out.
    """
    true = np.asarray(true).ravel()
    pred = np.asarray(pred).ravel()
    if true.shape != pred.shape:
        raise ValueError(f"true and pred differ in size: {true.size} vs {pred.size}")
    keep = (true != UNLABELED) & (true < num_classes) & (pred < num_classes)
    idx = true[keep].astype(np.int64) * num_classes + pred[keep].astype(np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_dice(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class IoU and Dice; a class absent from both truth and prediction reports NaN."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        union = tp + fp + fn
        iou = np.where(union > 0, tp / union, np.nan)
        dice = np.where(union > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    return iou, dice


def mean_over(values: np.ndarray, class_ids: list[int]) -> float:
    """Mean of the given classes' values, skipping NaN; NaN when none is defined."""
    picked = [float(values[i]) for i in class_ids if i < len(values) and not np.isnan(values[i])]
    return float(np.mean(picked)) if picked else float("nan")
