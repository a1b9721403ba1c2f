"""PredictPanel: predict, choose what the overlay shows, accept, retrain, label next."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFormLayout, QHBoxLayout, QLabel, QListWidget,
                               QListWidgetItem, QPushButton, QSlider, QVBoxLayout, QWidget)

VIEWS = {"both": "Mask over prediction", "mask": "Mask only", "prediction": "Prediction only",
         "uncertainty": "Uncertainty", "disagreement": "Where they disagree"}
ACCEPT = {"unlabeled": "only unlabeled pixels", "all": "all pixels", "classes": "only the selected class"}


class PredictPanel(QWidget):
    predict_requested = Signal()
    predict_all_requested = Signal()
    accept_requested = Signal(str)        # mode
    retrain_requested = Signal()
    rank_requested = Signal()
    next_requested = Signal()
    view_changed = Signal(str)
    opacity_changed = Signal(float)
    image_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run_label = QLabel("No model yet: train one in the Training panel.")
        self.run_label.setWordWrap(True)
        self.predict_button = QPushButton("Predict image")
        self.predict_all_button = QPushButton("Predict all")
        self.predict_button.clicked.connect(self.predict_requested)
        self.predict_all_button.clicked.connect(self.predict_all_requested)
        self.view = QComboBox()
        for key, text in VIEWS.items():
            self.view.addItem(text, key)
        self.view.currentIndexChanged.connect(lambda _i: self.view_changed.emit(self.view.currentData()))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(45)
        self.opacity.valueChanged.connect(lambda v: self.opacity_changed.emit(v / 100.0))
        self.accept_mode = QComboBox()
        for key, text in ACCEPT.items():
            self.accept_mode.addItem(text, key)
        self.accept_button = QPushButton("Accept prediction")
        self.accept_button.setToolTip("Copy the prediction into the mask as one undo step (A)")
        self.accept_button.clicked.connect(lambda: self.accept_requested.emit(self.accept_mode.currentData()))
        self.retrain_button = QPushButton("Retrain from this run")
        self.retrain_button.setToolTip("Fine-tune the active run on the masks as they are now")
        self.retrain_button.clicked.connect(self.retrain_requested)
        self.rank_button = QPushButton("Rank unlabeled images")
        self.rank_button.setToolTip("Order the images by the model's uncertainty: label the most uncertain first")
        self.rank_button.clicked.connect(self.rank_requested)
        self.next_button = QPushButton("Next to label")
        self.next_button.clicked.connect(self.next_requested)
        self.ranking = QListWidget()
        self.ranking.itemActivated.connect(
            lambda it: self.image_requested.emit(it.data(Qt.ItemDataRole.UserRole)))
        row1 = QHBoxLayout()
        row1.addWidget(self.predict_button)
        row1.addWidget(self.predict_all_button)
        form = QFormLayout()
        form.addRow("Show", self.view)
        form.addRow("Prediction opacity", self.opacity)
        form.addRow("Accept", self.accept_mode)
        row2 = QHBoxLayout()
        row2.addWidget(self.accept_button)
        row2.addWidget(self.retrain_button)
        row3 = QHBoxLayout()
        row3.addWidget(self.rank_button)
        row3.addWidget(self.next_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.run_label)
        layout.addLayout(row1)
        layout.addLayout(form)
        layout.addLayout(row2)
        layout.addLayout(row3)
        layout.addWidget(self.ranking, 1)
        self.set_model_ready(False)

    def set_model_ready(self, ready: bool, run_name: str = "") -> None:
        for b in (self.predict_button, self.predict_all_button, self.retrain_button, self.rank_button):
            b.setEnabled(ready)
        if ready:
            self.run_label.setText(f"Active model: {run_name}")

    def set_ranking(self, rows: list[tuple[str, str, float]]) -> None:
        """(image id, display name, score) most uncertain first."""
        self.ranking.clear()
        for image_id, name, score in rows:
            item = QListWidgetItem(f"{name}   uncertainty {score:.3f}")
            item.setData(Qt.ItemDataRole.UserRole, image_id)
            self.ranking.addItem(item)

    def ranked_ids(self) -> list[str]:
        return [self.ranking.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.ranking.count())]
