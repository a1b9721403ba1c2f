"""Object-level scores: objects matched one-to-one by IoU, AP / F1 / PQ per threshold.

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

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

IGNORE = 255
MATCH_IOU = 0.5
# tau for AP: 0.5, 0.55, ..., 0.95 (the DSB2018 score is their mean)
THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))
CHUNK = 1 << 22        # pixels per pass: bounds int64 temporaries to ~32 MB on huge masks

# (binary mask) -> (int labels with 0 = none, number of components)
ComponentLabeller = Callable[[np.ndarray], tuple[np.ndarray, int]]


def _json_float(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


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
