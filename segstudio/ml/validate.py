"""Validation during training, through the one predictor and the one scoring.

Each validation image goes through `segstudio.ml.predict.predict_tiled` with the default
`TileOptions` (what Predict and Measure use), as stored, with the run's own `Normalisation`
and working scale (so the model sees the numbers Measure feeds it, and the prediction is
scored at the image's own size), and is
scored by `segstudio.core.metrics` with background left out of the means, as Measure does. The
runs table's "mean Dice" is therefore the number Measure shows on the same images.

A model with object classes is also scored object by object (its predicted object ids against
the ids stored with each validation mask, connected regions where there are none), and early
stopping and best.pt follow the mean of foreground Dice and object AP@0.5: pixel Dice of
touching nuclei levels off epochs before the objects stop coming apart better. Both follow
that score smoothed over epochs (`smoothed_score`), not one epoch's value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from segstudio.core.classes import BACKGROUND, LabelClass
from segstudio.core.jobs import CancelToken
from segstudio.core.metrics import InstanceCounts, class_scores, confusion_matrix, instance_counts
from segstudio.ml.normalise import PREPARED, Normaliser
from segstudio.ml.objects import ObjectHead, objects_or_regions
from segstudio.ml.predict import TileOptions, predict_tiled

VALIDATION_TILES = TileOptions()       # the predictor's defaults: those of Predict and Measure
EXCLUDE_FROM_MEAN = (BACKGROUND,)      # Measure's: the means are over the foreground classes


def evaluate(model: nn.Module, samples: Sequence, num_classes: int, *,
             normalise: Normaliser = PREPARED, options: TileOptions = VALIDATION_TILES,
             objects: ObjectHead | None = None,
             cancel: CancelToken | None = None
             ) -> tuple[np.ndarray, float, InstanceCounts | None]:
    """(confusion matrix, mean cross-entropy over labelled pixels, object counts) on whole
    images.

    `samples` hold `image` and `mask`: validation images as stored with the run's
    `normalise` (which resamples to its working scale and back), or training snapshots already
    prepared (`PREPARED`). With an object head, stored images are read out as Measure reads
    them (boundary back to its objects' class) and their objects are counted, pooled over the
    object classes; training snapshots, whose masks hold the boundary, are scored on the raw
    outputs and count no objects (None).
    """
    head = objects if normalise is not PREPARED else None
    was_training = model.training
    cm = np.zeros((num_classes, num_classes), np.int64)
    counts = InstanceCounts() if head is not None else None
    loss_sum, pixels = 0.0, 0
    try:
        for s in samples:
            pred = predict_tiled(model, s.image, normalise, options, uncertainty=False,
                                 truth=s.mask, objects=head, cancel=cancel)
            cm += confusion_matrix(s.mask, pred.labels, num_classes)
            loss_sum += pred.nll_sum
            pixels += pred.nll_pixels
            if counts is not None and pred.objects is not None:
                truth = objects_or_regions(s.mask, getattr(s, "objects", None), head)
                for c in head.classes:
                    counts += instance_counts(s.mask, pred.labels, c, None, true_objects=truth,
                                              pred_objects=pred.objects)
    finally:
        model.train(was_training)
    return cm, (loss_sum / pixels if pixels else math.nan), counts


def metrics_from(cm: np.ndarray, classes: Sequence[LabelClass], val_loss: float,
                 objects: InstanceCounts | None = None) -> dict[str, float]:
    """Flat metrics: val_loss, mean_dice/mean_iou, dice:<name>, iou:<name>, and with object
    counts object_ap50 / object_mean_ap / object_pq (pooled over the object classes).

    The means are `ClassScores.mean` without background, the rule of the Metrics panel: a class
    neither labelled nor predicted is NaN and left out, and background alone is no score (NaN),
    never a perfect 1.0.
    """
    s = class_scores(cm)
    out = {"val_loss": val_loss, "mean_dice": s.mean("dice", EXCLUDE_FROM_MEAN),
           "mean_iou": s.mean("iou", EXCLUDE_FROM_MEAN)}
    for c in classes:
        out[f"dice:{c.name}"] = float(s.dice[c.id]) if c.id < s.num_classes else math.nan
        out[f"iou:{c.name}"] = float(s.iou[c.id]) if c.id < s.num_classes else math.nan
    if objects is not None:
        out["object_ap50"] = objects.ap()
        out["object_mean_ap"] = objects.mean_ap
        out["object_pq"] = objects.panoptic_quality
    return out


def score(metrics: dict[str, float]) -> float:
    """Higher is better: mean foreground Dice (with objects: the mean of it and object
    AP@0.5), or minus the loss when neither is defined."""
    values = [v for v in (metrics.get("mean_dice", math.nan),
                          metrics.get("object_ap50", math.nan)) if not math.isnan(v)]
    return float(np.mean(values)) if values else -metrics.get("val_loss", math.inf)


# weight of the earlier epochs in the score that picks best.pt and drives early stopping
# (an exponential moving average, as nnU-Net picks its best checkpoint): a handful of
# validation images scores one epoch with noise as large as the gains of the run's second half
SELECTION_SMOOTHING = 0.9


def smoothed_score(previous: float | None, raw: float,
                   smoothing: float = SELECTION_SMOOTHING) -> float:
    """The selection score after an epoch scoring `raw` (the first epoch: its own score)."""
    if previous is None or not math.isfinite(previous):
        return float(raw)
    return float(smoothing * previous + (1.0 - smoothing) * raw)


def validate(model: nn.Module, samples: Sequence, classes: Sequence[LabelClass],
             num_classes: int, *, normalise: Normaliser = PREPARED,
             objects: ObjectHead | None = None,
             cancel: CancelToken | None = None) -> dict[str, float]:
    """The metrics of one validation pass (see `metrics_from`)."""
    with torch.inference_mode():
        cm, val_loss, counts = evaluate(model, samples, num_classes, normalise=normalise,
                                        objects=objects, cancel=cancel)
    return metrics_from(cm, classes, val_loss, counts)
