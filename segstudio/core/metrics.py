"""Segmentation metrics from one confusion matrix: per-class IoU, Dice, precision, recall.

Everything here is numpy only, shared by the metrics panel, the CLI and the tests. Rows of a
confusion matrix are the true class, columns the predicted one; pixels whose truth is 255
(unlabeled) are left out. A class that is absent from both truth and prediction has no
IoU/Dice: it reports NaN, and the class means skip NaN rather than counting it as 0 or 1.

Object-level scores (AP, F1, PQ for instance labels) live in `segstudio.core.object_metrics`;
the names are re-exported here for the reports and callers that import them from this module.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

from segstudio.core.object_metrics import (  # noqa: F401  (re-exported)
    CHUNK, IGNORE, MATCH_IOU, THRESHOLDS, ComponentLabeller, InstanceCounts, ObjectScores,
    _json_float, instance_counts, match_instances, object_counts, pooled, sequential_labels)


def confusion_matrix(true: np.ndarray, pred: np.ndarray, num_classes: int,
                     ignore: int | None = IGNORE) -> np.ndarray:
    """(num_classes, num_classes) int64 counts; rows = truth, columns = prediction.

    Pixels whose truth equals `ignore` are skipped. A prediction outside 0..num_classes-1 (or a
    truth outside it that is not `ignore`) is an error, not silently dropped: it means the
    class list and the model disagree.
    """
    true = np.asarray(true)
    pred = np.asarray(pred)
    if true.shape != pred.shape:
        raise ValueError(f"truth and prediction differ in shape: {true.shape} vs {pred.shape}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    counts = np.zeros(num_classes * num_classes, np.int64)
    t_all, p_all = true.reshape(-1), pred.reshape(-1)
    # in chunks: int64 copies of a 16k x 16k mask would be 2 GB each
    for c0 in range(0, t_all.size, CHUNK):
        t = t_all[c0:c0 + CHUNK]
        p = p_all[c0:c0 + CHUNK]
        if ignore is not None:
            keep = t != ignore
            if not keep.all():
                t, p = t[keep], p[keep]
        if t.size == 0:
            continue
        t = t.astype(np.int64)
        p = p.astype(np.int64)
        for name, a in (("truth", t), ("prediction", p)):
            lo, hi = int(a.min()), int(a.max())
            if lo < 0 or hi >= num_classes:
                raise ValueError(
                    f"{name} holds class id {hi if hi >= num_classes else lo}; expected "
                    f"0..{num_classes - 1}"
                    + (f" or {ignore} (ignored)" if name == "truth" and ignore is not None
                       else ""))
        counts += np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN where den is 0 (undefined, not zero)."""
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def nanmean(values: Iterable[float]) -> float:
    """Mean of the values that are not NaN; NaN when none is (no warning, unlike numpy)."""
    a = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, np.float64)
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else math.nan


def normalized_confusion(cm: np.ndarray, by: str = "true") -> np.ndarray:
    """Rows (by="true": recall view) or columns (by="pred": precision view) summing to 1.

    A row of a class absent from the truth (or a column never predicted) is NaN, so a colour
    map can show it as "no data" instead of a misleading 0.
    """
    cm = np.asarray(cm, np.float64)
    if by == "true":
        return _ratio(cm, cm.sum(axis=1, keepdims=True))
    if by == "pred":
        return _ratio(cm, cm.sum(axis=0, keepdims=True))
    raise ValueError(f"by must be 'true' or 'pred', got {by!r}")


@dataclass(frozen=True)
class ClassScores:
    """Per-class scores from one confusion matrix; arrays are indexed by class id."""

    confusion: np.ndarray      # (n, n) int64, rows = truth
    iou: np.ndarray            # tp / (tp + fp + fn); NaN when the class is nowhere
    dice: np.ndarray           # 2tp / (2tp + fp + fn); NaN when the class is nowhere
    precision: np.ndarray      # tp / (tp + fp); NaN when never predicted
    recall: np.ndarray         # tp / (tp + fn); NaN when absent from the truth
    support: np.ndarray        # true pixels per class (int64)
    predicted: np.ndarray      # predicted pixels per class (int64)

    @property
    def num_classes(self) -> int:
        return int(self.confusion.shape[0])

    @property
    def pixels(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        n = self.pixels
        return float(np.trace(self.confusion)) / n if n else math.nan

    def mean(self, metric: str, exclude: Sequence[int] = ()) -> float:
        """Mean of one metric over the classes labelled in the truth, leaving out `exclude`.

        The one class mean: validation during training (the runs table), the Metrics panel,
        `evaluate` and the benchmarks all take it. Only classes with true pixels count: a class
        nobody labelled has no score to average (a false alarm of it still lowers the labelled
        classes' precision), so a model is ranked by the classes it can be checked on, and
        background alone (excluded) is no score (NaN), never a perfect 1.0. NaN values skipped.
        """
        values = np.asarray(getattr(self, metric), np.float64)
        keep = np.asarray(self.support) > 0
        keep[[c for c in exclude if 0 <= c < values.size]] = False
        return nanmean(values[keep])

    def means(self, exclude: Sequence[int] = ()) -> dict[str, float]:
        return {m: self.mean(m, exclude) for m in ("iou", "dice", "precision", "recall")}


def class_scores(cm: np.ndarray) -> ClassScores:
    """IoU, Dice, precision, recall and support per class from a confusion matrix."""
    cm = np.asarray(cm, np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix must be square, got shape {cm.shape}")
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    fp = predicted - tp
    fn = support - tp
    return ClassScores(confusion=cm, iou=_ratio(tp, tp + fp + fn),
                       dice=_ratio(2 * tp, 2 * tp + fp + fn), precision=_ratio(tp, tp + fp),
                       recall=_ratio(tp, support), support=support, predicted=predicted)


# -- reports -------------------------------------------------------------------------------------

@dataclass
class ImageRow:
    """One line of the per-image table (sortable, worst first)."""

    image_id: str
    pixels: int                    # labelled pixels compared
    accuracy: float
    mean_iou: float
    mean_dice: float
    iou: list[float]               # per class, NaN where absent
    instances: dict[int, InstanceCounts] = field(default_factory=dict)

    @property
    def object_ap(self) -> float:
        """AP@0.5 of this image's objects, all object classes pooled (NaN: no object classes)."""
        return pooled(self.instances.values()).ap(MATCH_IOU) if self.instances else math.nan

    @property
    def object_mean_ap(self) -> float:
        """Mean AP over tau 0.5..0.95 of this image's objects, object classes pooled."""
        return pooled(self.instances.values()).mean_ap if self.instances else math.nan

    def as_dict(self) -> dict:
        return {"image_id": self.image_id, "pixels": self.pixels,
                "accuracy": _json_float(self.accuracy), "mean_iou": _json_float(self.mean_iou),
                "mean_dice": _json_float(self.mean_dice),
                "iou": [_json_float(v) for v in self.iou],
                "instances": {str(k): v.as_dict() for k, v in self.instances.items()},
                "object_ap50": _json_float(self.object_ap),
                "object_mean_ap": _json_float(self.object_mean_ap)}


@dataclass
class MetricsReport:
    """What the metrics panel and `segstudio-cli evaluate` show."""

    class_ids: list[int]
    class_names: list[str]
    scores: ClassScores
    exclude_from_mean: tuple[int, ...]
    images: list[ImageRow]
    instances: dict[int, InstanceCounts]
    # per volume (a series' slices scored as one 3-D mask): volume id -> its class scores
    volumes: dict[str, ClassScores] = field(default_factory=dict)

    @property
    def means(self) -> dict[str, float]:
        return self.scores.means(self.exclude_from_mean)

    def normalized_confusion(self, by: str = "true") -> np.ndarray:
        return normalized_confusion(self.scores.confusion, by)

    def worst_images(self, key: str = "mean_iou") -> list[ImageRow]:
        """Rows sorted worst first; rows without a value (NaN) go last."""
        return sort_rows(self.images, key)

    def as_dict(self) -> dict:
        s = self.scores
        classes = []
        for i, (cid, name) in enumerate(zip(self.class_ids, self.class_names)):
            classes.append({"id": cid, "name": name, "iou": _json_float(s.iou[i]),
                            "dice": _json_float(s.dice[i]),
                            "precision": _json_float(s.precision[i]),
                            "recall": _json_float(s.recall[i]), "support": int(s.support[i])})
        return {"classes": classes,
                "mean": {k: _json_float(v) for k, v in self.means.items()},
                "mean_excludes": list(self.exclude_from_mean),
                "accuracy": _json_float(s.accuracy), "pixels": s.pixels,
                "confusion": s.confusion.tolist(),
                "instances": {str(k): v.as_dict() for k, v in self.instances.items()},
                "images": [r.as_dict() for r in self.images],
                "volumes": {vid: {"dice": [_json_float(d) for d in v.dice],
                                  "mean_dice": _json_float(v.mean("dice", self.exclude_from_mean)),
                                  "pixels": v.pixels}
                            for vid, v in self.volumes.items()}}

    def format_table(self) -> str:
        """A plain-text per-class table (the CLI prints it)."""
        s = self.scores
        width = max([5, *(len(n) for n in self.class_names)])

        def cell(v: float) -> str:
            return f"{v:7.3f}" if math.isfinite(v) else "      -"

        lines = [f"{'class':<{width}}  {'IoU':>7} {'Dice':>7} {'prec':>7} {'recall':>7} "
                 f"{'support':>12}"]
        for i, name in enumerate(self.class_names):
            lines.append(f"{name:<{width}}  {cell(s.iou[i])} {cell(s.dice[i])} "
                         f"{cell(s.precision[i])} {cell(s.recall[i])} {int(s.support[i]):>12}")
        m = self.means
        label = "mean" + (" (excl. " + ",".join(map(str, self.exclude_from_mean)) + ")"
                          if self.exclude_from_mean else "")
        lines.append(f"{label:<{width}}  {cell(m['iou'])} {cell(m['dice'])} "
                     f"{cell(m['precision'])} {cell(m['recall'])} {s.pixels:>12}")
        lines.append(f"pixel accuracy {cell(s.accuracy).strip()} over {len(self.images)} image(s)")
        for vid, v in self.volumes.items():
            per_class = ", ".join(f"{n} {cell(v.dice[i]).strip()}"
                                  for i, n in enumerate(self.class_names)
                                  if i < v.num_classes and i not in self.exclude_from_mean)
            lines.append(f"volume {vid}: 3-D Dice {per_class}; mean "
                         f"{cell(v.mean('dice', self.exclude_from_mean)).strip()}")
        for cid, c in self.instances.items():
            name = self.class_names[cid] if cid < len(self.class_names) else str(cid)
            lines.append(f"objects '{name}': {c.true} true, {c.predicted} predicted, "
                         f"{c.matched} matched (IoU>={MATCH_IOU}); F1 {cell(c.f1).strip()}, "
                         f"precision {cell(c.precision).strip()}, "
                         f"recall {cell(c.recall).strip()}")
            lines.append(f"objects '{name}': AP@0.5 {cell(c.ap(0.5)).strip()}, AP@0.75 "
                         f"{cell(c.ap(0.75)).strip()}, mean AP 0.5:0.95 "
                         f"{cell(c.mean_ap).strip()}, PQ {cell(c.panoptic_quality).strip()}")
        return "\n".join(lines)

    def format_objects(self, limit: int = 20) -> str:
        """Object scores per class and tau, then the images with the lowest AP@0.5 first."""
        def cell(v: float) -> str:
            return f"{v:6.3f}" if math.isfinite(v) else "     -"

        lines = []
        for cid, c in self.instances.items():
            name = self.class_names[cid] if cid < len(self.class_names) else str(cid)
            lines.append(f"objects '{name}' ({c.true} true, {c.predicted} predicted):")
            lines.append(f"  {'IoU>=':>6} {'TP':>6} {'FP':>6} {'FN':>6} {'prec':>6} "
                         f"{'recall':>6} {'F1':>6} {'AP':>6}")
            for t in THRESHOLDS:
                a = c.at(t)
                lines.append(f"  {t:6.2f} {a.tp:6d} {a.fp:6d} {a.fn:6d} {cell(a.precision)} "
                             f"{cell(a.recall)} {cell(a.f1)} {cell(a.ap)}")
            lines.append(f"  mean AP 0.5:0.95 {cell(c.mean_ap).strip()}, panoptic quality "
                         f"{cell(c.panoptic_quality).strip()}")
        rows = [r for r in sort_rows(self.images, "object_ap") if r.instances][:limit]
        if rows:
            width = max(5, *(len(r.image_id) for r in rows))
            lines.append(f"per image, lowest AP@0.5 first (at most {limit}):")
            lines.append(f"  {'image':<{width}} {'AP@.5':>6} {'mAP':>6} {'true':>6} "
                         f"{'pred':>6}")
            for r in rows:
                c = pooled(r.instances.values())
                lines.append(f"  {r.image_id:<{width}} {cell(r.object_ap)} "
                             f"{cell(r.object_mean_ap)} {c.true:6d} {c.predicted:6d}")
        return "\n".join(lines)


def sort_rows(rows: Sequence[ImageRow], key: str = "mean_iou", worst_first: bool = True
              ) -> list[ImageRow]:
    """Sort per-image rows by a numeric attribute; NaN always sorts last."""
    def sort_key(r: ImageRow) -> tuple[bool, float]:
        v = float(getattr(r, key))
        nan = not math.isfinite(v)
        return nan, (0.0 if nan else (v if worst_first else -v))
    return sorted(rows, key=sort_key)


class Evaluator:
    """Accumulates one confusion matrix (and object counts) over many images.

    `add` returns that image's row, so a panel can fill its table as results arrive.
    """

    def __init__(self, num_classes: int, *, class_names: Sequence[str] | None = None,
                 ignore: int | None = IGNORE, exclude_from_mean: Sequence[int] = (),
                 instance_classes: Sequence[int] = (),
                 label_components: ComponentLabeller | None = None) -> None:
        if instance_classes and label_components is None:
            raise ValueError("instance_classes need a label_components function "
                             "(segstudio.ml.evaluate.label_components)")
        self.num_classes = int(num_classes)
        self.class_names = list(class_names) if class_names is not None else [
            str(i) for i in range(self.num_classes)]
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {num_classes} classes")
        self.ignore = ignore
        self.exclude_from_mean = tuple(exclude_from_mean)
        self.instance_classes = tuple(instance_classes)
        self._label = label_components
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)
        self.instances = {c: InstanceCounts() for c in self.instance_classes}
        self.rows: list[ImageRow] = []
        self._volumes: dict[str, np.ndarray] = {}

    def add(self, true: np.ndarray, pred: np.ndarray, image_id: str = "", *,
            true_objects: np.ndarray | None = None,
            pred_objects: np.ndarray | None = None, volume: str | None = None) -> ImageRow:
        """Score one image. `true_objects` / `pred_objects`: instance label images (0 = none)
        that say which pixels of an object class are one object; connected components where
        they are not given (touching objects then count as one)."""
        cm = confusion_matrix(true, pred, self.num_classes, self.ignore)
        self.confusion += cm
        if volume is not None:     # a slice: its volume's 3-D scores add up over its slices
            self._volumes.setdefault(volume, np.zeros_like(self.confusion))
            self._volumes[volume] += cm
        s = class_scores(cm)
        inst: dict[int, InstanceCounts] = {}
        for c in self.instance_classes:
            inst[c] = instance_counts(true, pred, c, self._label, ignore=self.ignore,
                                      true_objects=true_objects, pred_objects=pred_objects)
            self.instances[c] += inst[c]
        row = ImageRow(image_id or str(len(self.rows)), s.pixels, s.accuracy,
                       s.mean("iou", self.exclude_from_mean),
                       s.mean("dice", self.exclude_from_mean), [float(v) for v in s.iou], inst)
        self.rows.append(row)
        return row

    def report(self, class_ids: Sequence[int] | None = None) -> MetricsReport:
        ids = list(class_ids) if class_ids is not None else list(range(self.num_classes))
        return MetricsReport(ids, list(self.class_names), class_scores(self.confusion.copy()),
                             self.exclude_from_mean, list(self.rows),
                             {c: v.copy() for c, v in self.instances.items()},
                             {vid: class_scores(cm.copy()) for vid, cm in self._volumes.items()})


def iou_dice(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class IoU and Dice of a confusion matrix (NaN where a class is nowhere)."""
    s = class_scores(cm)
    return s.iou, s.dice

