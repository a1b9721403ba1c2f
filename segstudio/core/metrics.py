"""Segmentation metrics from one confusion matrix: per-class IoU, Dice, precision, recall.

Everything here is numpy only, shared by the metrics panel, the CLI and the tests. Rows of a
confusion matrix are the true class, columns the predicted one; pixels whose truth is 255
(unlabeled) are left out. A class that is absent from both truth and prediction has no
IoU/Dice: it reports NaN, and the class means skip NaN rather than counting it as 0 or 1.

Instance-level counts for binary object classes (nuclei, cells) match connected components by
IoU >= 0.5. Labelling components needs OpenCV, so the caller passes the labeller in
(`segstudio.ml.evaluate.label_components`) and this module stays numpy-only.
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
@dataclass
class InstanceCounts:
    """Object-level counts for one class; adds up over images."""

    true: int = 0          # objects in the truth
    predicted: int = 0     # objects in the prediction (those mostly on unlabeled pixels left out)
    matched: int = 0       # true positives: pairs with IoU >= 0.5, one-to-one
    iou_sum: float = 0.0   # sum of matched pairs' IoU, for the mean matched IoU

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

    def __iadd__(self, other: InstanceCounts) -> InstanceCounts:
        self.true += other.true
        self.predicted += other.predicted
        self.matched += other.matched
        self.iou_sum += other.iou_sum
        return self

    def as_dict(self) -> dict[str, float | int | None]:
        return {"true": self.true, "predicted": self.predicted, "matched": self.matched,
                "false_positives": self.false_positives, "false_negatives": self.false_negatives,
                "precision": _json_float(self.precision), "recall": _json_float(self.recall),
                "f1": _json_float(self.f1),
                "mean_matched_iou": _json_float(self.mean_matched_iou)}


def match_instances(true_labels: np.ndarray, pred_labels: np.ndarray, n_true: int, n_pred: int,
                    *, min_iou: float = MATCH_IOU,
                    ignore: np.ndarray | None = None) -> InstanceCounts:
    """Match labelled objects (0 = none, 1..n) one-to-one by IoU >= min_iou, best pairs first.

    With min_iou >= 0.5 each object can overlap at most one partner that much (ties only at
    exactly 0.5), so taking pairs in descending IoU order is the optimal matching. Predicted
    objects lying mostly on ignored pixels (`ignore` True) are not counted either way: nobody
    has said whether they are right.
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
    good = (iou >= min_iou) & pred_alive[pi]
    ti, pi, iou = ti[good], pi[good], iou[good]
    order = np.argsort(-iou, kind="stable")
    used_t: set[int] = set()
    used_p: set[int] = set()
    iou_sum = 0.0
    for k in order:
        a, b = int(ti[k]), int(pi[k])
        if a in used_t or b in used_p:
            continue
        used_t.add(a)
        used_p.add(b)
        iou_sum += float(iou[k])
    return InstanceCounts(true=n_true, predicted=int(pred_alive.sum()), matched=len(used_t),
                          iou_sum=iou_sum)


def instance_counts(true: np.ndarray, pred: np.ndarray, class_id: int,
                    label_components: ComponentLabeller, *, ignore: int | None = IGNORE,
                    min_iou: float = MATCH_IOU) -> InstanceCounts:
    """Connected components of one class in truth and prediction, matched by IoU."""
    true = np.asarray(true)
    pred = np.asarray(pred)
    t_labels, n_t = label_components(true == class_id)
    p_labels, n_p = label_components(pred == class_id)
    ignored = (true == ignore) if ignore is not None else None
    return match_instances(t_labels, p_labels, n_t, n_p, min_iou=min_iou, ignore=ignored)


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

    def as_dict(self) -> dict:
        return {"image_id": self.image_id, "pixels": self.pixels,
                "accuracy": _json_float(self.accuracy), "mean_iou": _json_float(self.mean_iou),
                "mean_dice": _json_float(self.mean_dice),
                "iou": [_json_float(v) for v in self.iou],
                "instances": {str(k): v.as_dict() for k, v in self.instances.items()}}


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

    def add(self, true: np.ndarray, pred: np.ndarray, image_id: str = "") -> ImageRow:
        cm = confusion_matrix(true, pred, self.num_classes, self.ignore)
        self.confusion += cm
        s = class_scores(cm)
        inst: dict[int, InstanceCounts] = {}
        for c in self.instance_classes:
            assert self._label is not None
            inst[c] = instance_counts(true, pred, c, self._label, ignore=self.ignore)
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
                             {c: InstanceCounts(v.true, v.predicted, v.matched, v.iou_sum)
                              for c, v in self.instances.items()})


def iou_dice(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class IoU and Dice of a confusion matrix (NaN where a class is nowhere)."""
    s = class_scores(cm)
    return s.iou, s.dice

