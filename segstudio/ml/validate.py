"""Validation during training, through the one predictor and the one scoring.

Each validation image goes through `segstudio.ml.predict.predict_tiled` with the default
`TileOptions` (what Predict and Measure use), as stored, with the run's own `Normalisation`
and working scale (so the model sees the numbers Measure feeds it, and the prediction is
scored at the image's own size), and is
scored by `segstudio.core.metrics` with background left out of the means, as Measure does. The
runs table's "mean Dice" is therefore the number Measure shows on the same images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from segstudio.core.classes import BACKGROUND, LabelClass
from segstudio.core.jobs import CancelToken
from segstudio.core.metrics import class_scores, confusion_matrix
from segstudio.ml.normalise import PREPARED, Normaliser
from segstudio.ml.objects import ObjectHead
from segstudio.ml.predict import TileOptions, predict_tiled

VALIDATION_TILES = TileOptions()       # the predictor's defaults: those of Predict and Measure
EXCLUDE_FROM_MEAN = (BACKGROUND,)      # Measure's: the means are over the foreground classes


def evaluate(model: nn.Module, samples: Sequence, num_classes: int, *,
             normalise: Normaliser = PREPARED, options: TileOptions = VALIDATION_TILES,
             objects: ObjectHead | None = None,
             cancel: CancelToken | None = None) -> tuple[np.ndarray, float]:
    """(confusion matrix, mean cross-entropy over labelled pixels) on whole images.

    `samples` hold `image` and `mask`: validation images as stored with the run's
    `normalise` (which resamples to its working scale and back), or training snapshots already
    prepared (`PREPARED`). With an object head, stored images are read out as Measure reads
    them (boundary back to its objects' class); training snapshots, whose masks hold the
    boundary, are scored on the raw outputs.
    """
    head = objects if normalise is not PREPARED else None
    was_training = model.training
    cm = np.zeros((num_classes, num_classes), np.int64)
    loss_sum, pixels = 0.0, 0
    try:
        for s in samples:
            pred = predict_tiled(model, s.image, normalise, options, uncertainty=False,
                                 truth=s.mask, objects=head, cancel=cancel)
            cm += confusion_matrix(s.mask, pred.labels, num_classes)
            loss_sum += pred.nll_sum
            pixels += pred.nll_pixels
    finally:
        model.train(was_training)
    return cm, (loss_sum / pixels if pixels else math.nan)


def metrics_from(cm: np.ndarray, classes: Sequence[LabelClass], val_loss: float
                 ) -> dict[str, float]:
    """Flat metrics: val_loss, mean_dice/mean_iou, dice:<name>, iou:<name>.

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
    return out


def score(metrics: dict[str, float]) -> float:
    """Higher is better: mean foreground Dice, or minus the loss when no Dice is defined."""
    d = metrics.get("mean_dice", math.nan)
    return d if not math.isnan(d) else -metrics.get("val_loss", math.inf)


def validate(model: nn.Module, samples: Sequence, classes: Sequence[LabelClass],
             num_classes: int, *, normalise: Normaliser = PREPARED,
             objects: ObjectHead | None = None,
             cancel: CancelToken | None = None) -> dict[str, float]:
    """The metrics of one validation pass (see `metrics_from`)."""
    with torch.inference_mode():
        cm, val_loss = evaluate(model, samples, num_classes, normalise=normalise,
                                objects=objects, cancel=cancel)
    return metrics_from(cm, classes, val_loss)
