"""MetricsPanel: per-class scores, object scores, a colour-coded confusion matrix and a
per-image table (worst first)."""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QHeaderView, QLabel,
                               QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

SPLITS = {"val": "validation images", "train": "training images", "test": "test images",
          "all": "all labelled images"}


OBJECT_COLUMNS = ("class", "true", "predicted", "AP@0.5", "AP@0.75", "mean AP", "F1@0.5", "PQ")


def _num(v: float, digits: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


class _NumberItem(QTableWidgetItem):
    """Sorts by value; NaN (no data) sorts last either way."""

    def __init__(self, value: float, text: str | None = None) -> None:
        super().__init__(text if text is not None else _num(value))
        self.value = value
        self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other) -> bool:
        a, b = self.value, getattr(other, "value", 0.0)
        if a != a:
            return False
        if b != b:
            return True
        return a < b


def _table(headers: list[str]) -> QTableWidget:
    t = QTableWidget(0, len(headers))
    t.setHorizontalHeaderLabels(headers)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    t.verticalHeader().setVisible(False)
    return t


class MetricsPanel(QWidget):
    evaluate_requested = Signal(str)     # split
    image_requested = Signal(str)        # image id (double-click in the per-image table)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.split = QComboBox()
        for key, text in SPLITS.items():
            self.split.addItem(text, key)
        self.evaluate_button = QPushButton("Measure")
        self.evaluate_button.setToolTip("Predict the chosen images with the active run and compare with their masks")
        self.evaluate_button.clicked.connect(lambda: self.evaluate_requested.emit(self.split.currentData()))
        self.summary = QLabel("No measurement yet: train a model, then press Measure.")
        self.summary.setWordWrap(True)
        self.classes = _table(["class", "IoU", "Dice", "precision", "recall", "support"])
        self.confusion = QTableWidget()
        self.confusion.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.confusion.setToolTip("Rows: true class; columns: predicted class; share of each row")
        self.objects = _table(list(OBJECT_COLUMNS))
        self.objects.setToolTip(
            "Objects matched one-to-one at IoU >= tau. AP = TP / (TP + FP + FN); mean AP over "
            "tau 0.5 ... 0.95 is the DSB2018 score; PQ = segmentation quality x recognition "
            "quality")
        self.objects_label = QLabel("Objects")
        self.images = _table(["image", "mean IoU", "mean Dice", "accuracy", "pixels"])
        self.images.setSortingEnabled(True)
        self.images.cellDoubleClicked.connect(self._on_images_double_clicked)
        top = QHBoxLayout()
        top.addWidget(self.split, 1)
        top.addWidget(self.evaluate_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.summary)
        layout.addWidget(QLabel("Per class"))
        layout.addWidget(self.classes, 1)
        layout.addWidget(self.objects_label)
        layout.addWidget(self.objects)
        self.objects_label.hide()
        self.objects.hide()
        layout.addWidget(QLabel("Confusion (rows: truth, columns: prediction)"))
        layout.addWidget(self.confusion, 1)
        layout.addWidget(QLabel("Per image, worst first (double-click to open)"))
        layout.addWidget(self.images, 1)
        self.report = None

    def show_report(self, report, run_name: str = "", split: str = "val") -> None:
        self.report = report
        s = report.scores
        means = report.means
        inst = "".join(f"; objects ({report.class_names[report.class_ids.index(cid)]}): AP@0.5 "
                       f"{_num(c.ap(0.5))}, mean AP {_num(c.mean_ap)}, {c.matched}/{c.true} "
                       f"found, {c.false_positives} extra"
                       for cid, c in report.instances.items() if cid in report.class_ids)
        volumes = "".join(
            f"; volume {vid}: 3-D Dice {_num(v.mean('dice', report.exclude_from_mean))}"
            for vid, v in report.volumes.items())
        self.summary.setText(
            f"Run {run_name} on {len(report.images)} {SPLITS.get(split, split)}: mean IoU "
            f"{_num(means.get('iou'))}, mean Dice {_num(means.get('dice'))}, pixel accuracy "
            f"{_num(s.accuracy)}{inst}{volumes}")
        self.classes.setRowCount(0)
        rows = [(name, s.iou[i], s.dice[i], s.precision[i], s.recall[i], int(s.support[i]))
                for i, name in enumerate(report.class_names)]
        rows.append(("mean" + (" (without background)" if report.exclude_from_mean else ""),
                     means.get("iou"), means.get("dice"), means.get("precision"),
                     means.get("recall"), int(s.support.sum())))
        for r, (name, *vals) in enumerate(rows):
            self.classes.insertRow(r)
            self.classes.setItem(r, 0, QTableWidgetItem(name))
            for c, v in enumerate(vals[:-1], 1):
                self.classes.setItem(r, c, _NumberItem(float(v) if v is not None else float("nan")))
            self.classes.setItem(r, 5, _NumberItem(float(vals[-1]), str(vals[-1])))
        self._show_objects(report)
        self._show_confusion(report)
        with_objects = any(cid in report.class_ids for cid in report.instances)
        headers = ["image", "mean IoU", "mean Dice", "accuracy", "pixels"]
        if with_objects:
            headers += ["AP@0.5", "mean AP", "objects"]
        self.images.setSortingEnabled(False)
        self.images.setRowCount(0)
        self.images.setColumnCount(len(headers))
        self.images.setHorizontalHeaderLabels(headers)
        for r, row in enumerate(report.worst_images("mean_iou")):
            self.images.insertRow(r)
            item = QTableWidgetItem(row.image_id)
            item.setData(Qt.ItemDataRole.UserRole, row.image_id)
            self.images.setItem(r, 0, item)
            for c, v in enumerate((row.mean_iou, row.mean_dice, row.accuracy), 1):
                self.images.setItem(r, c, _NumberItem(float(v)))
            self.images.setItem(r, 4, _NumberItem(float(row.pixels), str(row.pixels)))
            if with_objects:
                true = sum(c.true for c in row.instances.values())
                self.images.setItem(r, 5, _NumberItem(float(row.object_ap)))
                self.images.setItem(r, 6, _NumberItem(float(row.object_mean_ap)))
                self.images.setItem(r, 7, _NumberItem(float(true), str(true)))
        self.images.setSortingEnabled(True)
        self.images.sortItems(1, Qt.SortOrder.AscendingOrder)     # worst mean IoU first

    def _show_objects(self, report) -> None:
        rows = [(report.class_names[report.class_ids.index(cid)], c)
                for cid, c in report.instances.items() if cid in report.class_ids]
        self.objects.setRowCount(0)
        self.objects_label.setVisible(bool(rows))
        self.objects.setVisible(bool(rows))
        for r, (name, c) in enumerate(rows):
            self.objects.insertRow(r)
            self.objects.setItem(r, 0, QTableWidgetItem(name))
            values = (c.true, c.predicted, c.ap(0.5), c.ap(0.75), c.mean_ap, c.at(0.5).f1,
                      c.panoptic_quality)
            for k, v in enumerate(values, 1):
                text = str(v) if isinstance(v, int) else None
                self.objects.setItem(r, k, _NumberItem(float(v), text))

    def _show_confusion(self, report) -> None:
        norm = report.normalized_confusion("true")
        names = report.class_names
        self.confusion.clear()
        self.confusion.setRowCount(len(names))
        self.confusion.setColumnCount(len(names))
        self.confusion.setHorizontalHeaderLabels(names)
        self.confusion.setVerticalHeaderLabels(names)
        counts = report.scores.confusion
        for i in range(len(names)):
            for j in range(len(names)):
                v = float(norm[i, j])
                item = QTableWidgetItem("—" if np.isnan(v) else f"{v:.2f}")
                item.setToolTip(f"{int(counts[i, j])} pixels of {names[i]} predicted as {names[j]}")
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                if not np.isnan(v):
                    # a colour-blind-safe ramp: white -> blue (0072B2); text flips to white when dark
                    k = max(0.0, min(1.0, v))
                    item.setBackground(QColor(int(255 - k * 255), int(255 - k * 141), int(255 - k * 77)))
                    if k > 0.55:
                        item.setForeground(QColor(255, 255, 255))
                self.confusion.setItem(i, j, item)
        self.confusion.resizeColumnsToContents()

    def _on_images_double_clicked(self, row: int, _col: int) -> None:
        item = self.images.item(row, 0)
        if item is not None:
            self.image_requested.emit(item.data(Qt.ItemDataRole.UserRole))
