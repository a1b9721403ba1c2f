"""The welcome page (no project open yet) and the dismissable first-steps hint."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QPushButton, QToolButton, QVBoxLayout, QWidget)

HINT = ("<b>Try it:</b> pick a class on the right (keys <b>0</b>–<b>9</b>), paint with the brush "
        "(<b>B</b>), undo with <b>Ctrl+Z</b>. Images in the list say how far each is labelled. "
        "<b>F1</b> lists every shortcut.")


class WelcomePage(QWidget):
    sample_requested = Signal()
    new_requested = Signal()
    open_requested = Signal()
    recent_requested = Signal(object)     # Path

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        title = QLabel("<h1>SegStudio</h1><p>Label images, train a model on them, check how good "
                       "it is, and export the masks.</p>")
        title.setWordWrap(True)
        self.sample_button = QPushButton("Open sample project")
        self.new_button = QPushButton("New project from a folder…")
        self.open_button = QPushButton("Open project…")
        self.sample_button.clicked.connect(self.sample_requested)
        self.new_button.clicked.connect(self.new_requested)
        self.open_button.clicked.connect(self.open_requested)
        self.recent = QListWidget()
        self.recent.setObjectName("recentProjects")
        self.recent.itemActivated.connect(
            lambda item: self.recent_requested.emit(Path(item.data(Qt.ItemDataRole.UserRole))))
        box = QVBoxLayout()
        box.addWidget(title)
        for b in (self.sample_button, self.new_button, self.open_button):
            b.setMinimumHeight(36)
            box.addWidget(b)
        box.addWidget(QLabel("Recent projects (double-click to open):"))
        box.addWidget(self.recent)
        outer = QHBoxLayout(self)
        outer.addStretch(1)
        outer.addLayout(box, 2)
        outer.addStretch(1)

    def set_recent(self, paths: list[Path]) -> None:
        self.recent.clear()
        for p in paths:
            item = QListWidgetItem(f"{p.name}    —    {p}")
            item.setData(Qt.ItemDataRole.UserRole, str(p))
            self.recent.addItem(item)
        if not paths:
            self.recent.addItem("(none yet)")


class HintBanner(QFrame):
    """A one-line hint above the canvas with a close button; closing it is remembered."""

    dismissed = Signal()

    def __init__(self, text: str = HINT, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("hintBanner")
        self.setStyleSheet("#hintBanner { background: #FFF7D6; border-bottom: 1px solid #D9C77A; }"
                           "#hintBanner QLabel { color: #222; }")
        self.label = QLabel(text)
        self.label.setWordWrap(True)
        close = QToolButton()
        close.setText("✕")
        close.setToolTip("Hide this hint")
        close.clicked.connect(self._on_close_clicked)
        row = QHBoxLayout(self)
        row.setContentsMargins(10, 4, 6, 4)
        row.addWidget(self.label, 1)
        row.addWidget(close)
        self.close_button = close

    def _on_close_clicked(self) -> None:
        self.hide()
        self.dismissed.emit()
