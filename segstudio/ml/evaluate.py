"""Measuring a model on a project's labelled images: per-class table, confusion, objects.

The numbers come from `segstudio.core.metrics`; this module only predicts each image (tiled,
see `predict.py`), reads its mask and feeds both to an `Evaluator`. Connected components for
the object counts come from OpenCV, which is why they live here and not in core.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from segstudio.core.classes import LabelClass
from segstudio.core.jobs import CancelToken, Progress, ProgressFn
from segstudio.core.metrics import IGNORE, Evaluator, MetricsReport
from segstudio.ml.objects import ObjectHead, head_for, objects_or_regions, project_objects
from segstudio.ml.predict import Normaliser, TileOptions, predict_tiled

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "all")


def label_components(binary: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, int]:
    """(int32 labels with 0 = background, number of objects) of a boolean mask."""
    import cv2

    n, labels = cv2.connectedComponents(np.ascontiguousarray(binary, np.uint8),
                                        connectivity=connectivity, ltype=cv2.CV_32S)
    return labels, int(n) - 1


def default_instance_classes(classes: Sequence[LabelClass]) -> tuple[int, ...]:
    """Object counts make sense for a binary "things on background" project: class 1 of 0, 1."""
    ids = sorted(c.id for c in classes)
    return (1,) if ids == [0, 1] else ()


def evaluate_project(project, model: torch.nn.Module, normalise: Normaliser,
                     classes: Sequence[LabelClass] | None = None, *, split: str = "val",
                     options: TileOptions = TileOptions(),
                     instance_classes: Sequence[int] | None = None,
                     exclude_from_mean: Sequence[int] = (),
                     objects: ObjectHead | None = None,
                     on_progress: ProgressFn | None = None,
                     cancel: CancelToken | None = None) -> MetricsReport:
    """Predict every labelled image of a split and measure it against its mask.

    `project` is a `segstudio.io.project.Project`. Pixels left unlabeled (255) are not
    scored; images with no labelled pixel at all are skipped. Raises `Cancelled`.
    `objects`: the model's object head (`LoadedModel.objects`). Its object classes are then
    counted object by object: the prediction's object ids against the ids stored with each
    mask (connected regions where an image has none).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {list(SPLITS)}")
    cancel = cancel or CancelToken()
    classes = list(classes if classes is not None else project.classes)
    entries = [e for e in project.images if (split == "all" or e.split == split)
               and project.masks.has_mask(e.id)]
    max_id = max([c.id for c in classes] + [0])
    names = {c.id: c.name for c in classes}
    evaluator: Evaluator | None = None
    # the object classes: the model's, else the project's (its objects then from regions)
    truth_head = objects if objects is not None else head_for(project.classes)
    if instance_classes is None:
        instance_classes = (truth_head.classes if truth_head is not None
                            else default_instance_classes(classes))
    for k, entry in enumerate(entries):
        cancel.raise_if_cancelled()
        if on_progress:
            on_progress(Progress(k, len(entries), f"evaluating {entry.display_name}"))
        try:
            image = project.read_image(entry).data
            mask = project.load_mask(entry, image.shape[:2])
            true_ids = project_objects(project, entry, mask.shape, truth_head)
        except Exception as e:          # one broken file must not sink the whole table
            log.warning("%s: %s; not evaluated", entry.display_name, e)
            continue
        if not (mask != IGNORE).any():
            log.info("%s has no labelled pixels; not evaluated", entry.display_name)
            continue
        pred = predict_tiled(model, image, normalise, options, uncertainty=False,
                             objects=objects, cancel=cancel)
        if evaluator is None:
            # the table covers every class the model or the project knows
            n = max(pred.num_classes, max_id + 1)
            evaluator = Evaluator(n, class_names=[names.get(i, f"class {i}") for i in range(n)],
                                  exclude_from_mean=exclude_from_mean,
                                  instance_classes=instance_classes,
                                  label_components=label_components)
        truth = mask
        if int(mask[mask != IGNORE].max()) >= evaluator.num_classes:
            # a class added after this model was trained: the model can never predict it
            truth = mask.copy()
            truth[(mask >= evaluator.num_classes) & (mask != IGNORE)] = IGNORE
            log.warning("%s: class ids >= %d are not known to the model; not scored",
                        entry.display_name, evaluator.num_classes)
        true_objects = None
        if truth_head is not None:
            true_objects = objects_or_regions(truth, true_ids, truth_head)
        evaluator.add(truth, pred.labels, entry.id, true_objects=true_objects,
                      pred_objects=pred.objects, volume=entry.series)
    if on_progress:
        on_progress(Progress(len(entries), len(entries), "evaluated"))
    if evaluator is None:
        n = max_id + 1
        evaluator = Evaluator(n, class_names=[names.get(i, f"class {i}") for i in range(n)],
                              exclude_from_mean=exclude_from_mean)
    return evaluator.report()
