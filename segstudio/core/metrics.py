"""Segmentation metrics from one confusion matrix: per-class IoU, Dice, precision, recall.

Everything here is numpy only, shared by the metrics panel, the CLI and the tests. Rows of a
confusion matrix are the true class, columns the predicted one; pixels whose truth is 255
(unlabeled) are left out. A class that is absent from both truth and prediction has no
IoU/Dice: it reports NaN, and the class means skip NaN rather than counting it as 0 or 1.

Instance-level counts for object classes (nuclei, cells) match objects one-to-one by IoU: the
objects are either given as instance label images (0 = none) or are the connected components of
the class. Labelling components needs OpenCV, so the caller passes the labeller in
(`segstudio.ml.evaluate.label_components`) and this module stays numpy-only.

Object scores follow stardist's `matching.py` (Schmidt et al. 2018) and the DSB2018 challenge:
at an IoU threshold tau, TP = pairs matched one-to-one with IoU >= tau, FP = predicted objects
left unmatched, FN = true objects left unmatched; AP_tau = TP / (TP + FP + FN) (the DSB2018
"average precision", stardist's `accuracy`), F1 = 2TP / (2TP + FP + FN), and panoptic quality
PQ = (sum of the matched pairs' IoU) / (TP + FP/2 + FN/2) at tau = 0.5 (Kirillov et al. 2019).
The DSB2018 score is the mean of AP_tau over tau = 0.5, 0.55, ..., 0.95. Over many images the
counts are summed first and the ratios taken once (stardist's `matching_dataset`, by_image=False).

Only tau >= 0.5 is supported, and there the matching needs no Hungarian algorithm: a true
object can overlap at most one predicted object with IoU > 0.5 (each such partner covers more
than half of it), and vice versa, so the optimal one-to-one matching is unique up to ties at
exactly 0.5, which cannot chain (see `match_instances`). Below 0.5 an object can match several
partners and the optimum needs a linear assignment solver (scipy), which is not a dependency:
such thresholds are refused with a message rather than answered approximately.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

IGNORE = 255
MATCH_IOU = 0.5
# tau for AP: 0.5, 0.55, ..., 0.95 (the DSB2018 score is their mean)
THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))
CHUNK = 1 << 22        # pixels per pass: bounds int64 temporaries to ~32 MB on huge masks

# (binary mask) -> (int labels with 0 = none, number of components)
ComponentLabeller = Callable[[np.ndarray], tuple[np.ndarray, int]]


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


# -- instances -----------------------------------------------------------------------------------
def _check_threshold(tau: float) -> float:
    tau = float(tau)
    if not 0.5 <= tau <= 1.0:
        raise ValueError(
            f"object scores at IoU threshold {tau:g} are not supported: use 0.5..1. Below 0.5 "
            "one object can match several others and the one-to-one matching needs the "
            "Hungarian algorithm (scipy's linear_sum_assignment), which segstudio does not ship")
    return tau


def _stardist_ratio(num: float, den: float, tp: int, anything: bool) -> float:
    """stardist's convention: 0 when no pair matched; NaN only when there is nothing to score."""
    if not anything:
        return math.nan
    return num / den if tp > 0 else 0.0


@dataclass(frozen=True)
class ObjectScores:
    """Object-level scores of one class at one IoU threshold (stardist's definitions)."""

    threshold: float
    tp: int
    fp: int
    fn: int
    iou_sum: float          # sum of the IoU of the pairs matched at this threshold

    @property
    def _any(self) -> bool:
        return self.tp + self.fp + self.fn > 0

    @property
    def precision(self) -> float:
        return _stardist_ratio(self.tp, self.tp + self.fp, self.tp, self._any)

    @property
    def recall(self) -> float:
        return _stardist_ratio(self.tp, self.tp + self.fn, self.tp, self._any)

    @property
    def f1(self) -> float:
        return _stardist_ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn, self.tp, self._any)

    @property
    def ap(self) -> float:
        """TP / (TP + FP + FN): the DSB2018 'average precision' at this threshold."""
        return _stardist_ratio(self.tp, self.tp + self.fp + self.fn, self.tp, self._any)

    @property
    def panoptic_quality(self) -> float:
        if not self._any:
            return math.nan
        return self.iou_sum / (self.tp + self.fp / 2 + self.fn / 2)

    def as_dict(self) -> dict[str, float | int | None]:
        return {"threshold": self.threshold, "tp": self.tp, "fp": self.fp, "fn": self.fn,
                "precision": _json_float(self.precision), "recall": _json_float(self.recall),
                "f1": _json_float(self.f1), "ap": _json_float(self.ap),
                "panoptic_quality": _json_float(self.panoptic_quality)}


@dataclass
class InstanceCounts:
    """Object-level counts for one class; adds up over images.

    `matched`, `iou_sum` and the `precision`/`recall`/`f1` properties are at the matching's
    `min_iou` (0.5 unless asked otherwise), NaN where a denominator is 0. `ious` keeps the IoU of
    every pair matched one-to-one at IoU >= 0.5, from which `at(tau)` derives the scores at any
    tau >= 0.5 (a pair matched at tau >= 0.5 is a pair matched at 0.5 with IoU >= tau).
    """

    true: int = 0          # objects in the truth
    predicted: int = 0     # objects in the prediction (those mostly on unlabeled pixels left out)
    matched: int = 0       # true positives: pairs with IoU >= min_iou, one-to-one
    iou_sum: float = 0.0   # sum of matched pairs' IoU, for the mean matched IoU
    ious: list[float] = field(default_factory=list)   # IoU of each pair matched at >= 0.5

    @property
    def false_positives(self) -> int:
        return self.predicted - self.matched

    @property
    def false_negatives(self) -> int:
        return self.true - self.matched

    @property
    def precision(self) -> float:
        return self.matched / self.predicted if self.predicted else math.nan

    @property
    def recall(self) -> float:
        return self.matched / self.true if self.true else math.nan

    @property
    def f1(self) -> float:
        den = self.true + self.predicted
        return 2 * self.matched / den if den else math.nan

    @property
    def mean_matched_iou(self) -> float:
        return self.iou_sum / self.matched if self.matched else math.nan

    def at(self, tau: float) -> ObjectScores:
        """TP, FP, FN and the ratios at IoU threshold tau (0.5..1)."""
        tau = _check_threshold(tau)
        ious = np.asarray(self.ious, np.float64)
        hit = ious[ious >= tau]
        tp = int(hit.size)
        return ObjectScores(tau, tp, self.predicted - tp, self.true - tp, float(hit.sum()))

    def ap(self, tau: float = MATCH_IOU) -> float:
        return self.at(tau).ap

    @property
    def mean_ap(self) -> float:
        """Mean of AP_tau over tau = 0.5, 0.55, ..., 0.95: the DSB2018 score."""
        values = [self.ap(t) for t in THRESHOLDS]
        return math.nan if any(math.isnan(v) for v in values) else float(np.mean(values))

    @property
    def panoptic_quality(self) -> float:
        """PQ at tau = 0.5: matched IoU sum / (TP + FP/2 + FN/2)."""
        return self.at(MATCH_IOU).panoptic_quality

    def copy(self) -> InstanceCounts:
        return InstanceCounts(self.true, self.predicted, self.matched, self.iou_sum,
                              list(self.ious))

    def __iadd__(self, other: InstanceCounts) -> InstanceCounts:
        self.true += other.true
        self.predicted += other.predicted
        self.matched += other.matched
        self.iou_sum += other.iou_sum
        self.ious.extend(other.ious)
        return self

    def as_dict(self) -> dict:
        at = [self.at(t) for t in THRESHOLDS]
        return {"true": self.true, "predicted": self.predicted, "matched": self.matched,
                "false_positives": self.false_positives, "false_negatives": self.false_negatives,
                "precision": _json_float(self.precision), "recall": _json_float(self.recall),
                "f1": _json_float(self.f1),
                "mean_matched_iou": _json_float(self.mean_matched_iou),
                "ap": {f"{s.threshold:g}": _json_float(s.ap) for s in at},
                "mean_ap": _json_float(self.mean_ap),
                "panoptic_quality": _json_float(self.panoptic_quality),
                "by_threshold": [s.as_dict() for s in at]}


def pooled(counts: Iterable[InstanceCounts]) -> InstanceCounts:
    """The counts of several classes (or images) added up."""
    total = InstanceCounts()
    for c in counts:
        total += c
    return total


def _greedy(ti: np.ndarray, pi: np.ndarray, iou: np.ndarray) -> list[float]:
    """IoUs of the pairs kept when taking pairs best first, each object at most once."""
    order = np.argsort(-iou, kind="stable")
    used_t: set[int] = set()
    used_p: set[int] = set()
    kept = []
    for k in order:
        a, b = int(ti[k]), int(pi[k])
        if a in used_t or b in used_p:
            continue
        used_t.add(a)
        used_p.add(b)
        kept.append(float(iou[k]))
    return kept


def match_instances(true_labels: np.ndarray, pred_labels: np.ndarray, n_true: int, n_pred: int,
                    *, min_iou: float = MATCH_IOU,
                    ignore: np.ndarray | None = None) -> InstanceCounts:
    """Match labelled objects (0 = none, 1..n) one-to-one by IoU >= min_iou, best pairs first.

    With IoU >= 0.5 each object can overlap at most one partner that much, except ties at
    exactly 0.5 (a partner that is exactly half of the object); those partners lie inside the
    object and overlap nothing else, so the tie cannot chain and taking pairs in descending IoU
    order is the optimal (maximum) matching. Predicted objects lying mostly on ignored pixels
    (`ignore` True) are not counted either way: nobody has said whether they are right.
    """
    true_labels = np.asarray(true_labels)
    pred_labels = np.asarray(pred_labels)
    if true_labels.shape != pred_labels.shape:
        raise ValueError(f"label maps differ in shape: {true_labels.shape} vs {pred_labels.shape}")
    t_all, p_all = true_labels.reshape(-1), pred_labels.reshape(-1)
    for name, a, n in (("true", t_all, n_true), ("predicted", p_all, n_pred)):
        if a.size and (int(a.max()) > n or int(a.min()) < 0):
            raise ValueError(f"{name} labels hold ids outside 0..{n}")
    ign_all = None if ignore is None else np.asarray(ignore, bool).reshape(-1)
    area_t = np.zeros(n_true + 1, np.int64)
    area_p = np.zeros(n_pred + 1, np.int64)
    on_ignored = np.zeros(n_pred + 1, np.int64)
    pair_codes, pair_counts = [], []
    for c0 in range(0, t_all.size, CHUNK):       # chunks: no int64 copy of a whole huge map
        t = t_all[c0:c0 + CHUNK].astype(np.int64)
        p = p_all[c0:c0 + CHUNK].astype(np.int64)
        area_t += np.bincount(t, minlength=n_true + 1)
        area_p += np.bincount(p, minlength=n_pred + 1)
        if ign_all is not None:
            on_ignored += np.bincount(p[ign_all[c0:c0 + CHUNK]], minlength=n_pred + 1)
        both = (t > 0) & (p > 0)
        # sparse overlap table: only pairs that touch, so thousands of nuclei stay cheap
        codes, counts = np.unique(t[both] * (n_pred + 1) + p[both], return_counts=True)
        pair_codes.append(codes)
        pair_counts.append(counts)
    codes, where = np.unique(np.concatenate(pair_codes), return_inverse=True)
    inter = np.bincount(where, weights=np.concatenate(pair_counts), minlength=codes.size)
    pred_alive = np.ones(n_pred + 1, bool)
    pred_alive[0] = False
    if ign_all is not None:
        pred_alive &= ~(2 * on_ignored > area_p)
    ti, pi = np.divmod(codes, n_pred + 1)
    iou = inter / (area_t[ti] + area_p[pi] - inter)
    alive = pred_alive[pi]

    def matched(threshold: float) -> list[float]:
        good = (iou >= threshold) & alive
        return _greedy(ti[good], pi[good], iou[good])

    at_half = matched(MATCH_IOU)
    kept = at_half if min_iou == MATCH_IOU else matched(min_iou)
    return InstanceCounts(true=n_true, predicted=int(pred_alive.sum()), matched=len(kept),
                          iou_sum=float(sum(kept)), ious=at_half)


def sequential_labels(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Object ids renumbered 1..n in order (0 stays background): (int32 labels, n)."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"instance labels must be integers, got dtype {labels.dtype}")
    if labels.size and int(labels.min()) < 0:
        raise ValueError("instance labels must be >= 0 (0 = background), found negative ids")
    ids = np.unique(labels)
    if ids.size == 0 or ids[0] != 0:
        ids = np.concatenate([np.zeros(1, ids.dtype), ids])
    if ids.size - 1 == (int(ids[-1]) if ids.size else 0):       # already 0..n without gaps
        return labels.astype(np.int32, copy=False), int(ids.size - 1)
    return np.searchsorted(ids, labels).astype(np.int32), int(ids.size - 1)


def object_counts(true_labels: np.ndarray, pred_labels: np.ndarray, *,
                  ignore: np.ndarray | None = None,
                  min_iou: float = MATCH_IOU) -> InstanceCounts:
    """Match two instance label images (any integer ids, 0 = background) one-to-one by IoU.

    `ignore` (bool, same shape) marks unlabeled pixels: a predicted object mostly on them is
    left out. Scores at any tau >= 0.5 follow from the result's `at(tau)`.
    """
    t, n_t = sequential_labels(true_labels)
    p, n_p = sequential_labels(pred_labels)
    return match_instances(t, p, n_t, n_p, min_iou=min_iou, ignore=ignore)


def instance_counts(true: np.ndarray, pred: np.ndarray, class_id: int,
                    label_components: ComponentLabeller | None, *, ignore: int | None = IGNORE,
                    min_iou: float = MATCH_IOU, true_objects: np.ndarray | None = None,
                    pred_objects: np.ndarray | None = None) -> InstanceCounts:
    """Objects of one class in truth and prediction, matched by IoU.

    The objects are the given instance label images (`true_objects`, `pred_objects`: object
    ids, 0 = none; only their pixels of this class count) or, where none is given, the
    connected components of the class.
    """
    true = np.asarray(true)
    pred = np.asarray(pred)
    ignored = (true == ignore) if ignore is not None else None

    def objects(classes: np.ndarray, given: np.ndarray | None, what: str) -> np.ndarray:
        if given is not None:
            given = np.asarray(given)
            if given.shape != classes.shape:
                raise ValueError(f"{what} instance labels have shape {given.shape}, the mask "
                                 f"{classes.shape}")
            return np.where(classes == class_id, given, 0)
        if label_components is None:
            raise ValueError("objects from connected components need a label_components "
                             "function (segstudio.ml.evaluate.label_components)")
        return label_components(classes == class_id)[0]

    return object_counts(objects(true, true_objects, "true"),
                         objects(pred, pred_objects, "predicted"), ignore=ignored,
                         min_iou=min_iou)


# -- reports -------------------------------------------------------------------------------------
def _json_float(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


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
                "images": [r.as_dict() for r in self.images]}

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

    def add(self, true: np.ndarray, pred: np.ndarray, image_id: str = "", *,
            true_objects: np.ndarray | None = None,
            pred_objects: np.ndarray | None = None) -> ImageRow:
        """Score one image. `true_objects` / `pred_objects`: instance label images (0 = none)
        that say which pixels of an object class are one object; connected components where
        they are not given (touching objects then count as one)."""
        cm = confusion_matrix(true, pred, self.num_classes, self.ignore)
        self.confusion += cm
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
                             {c: v.copy() for c, v in self.instances.items()})


def iou_dice(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class IoU and Dice of a confusion matrix (NaN where a class is nowhere)."""
    s = class_scores(cm)
    return s.iou, s.dice

