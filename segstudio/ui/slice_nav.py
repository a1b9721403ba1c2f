"""The slice bar under the canvas: which slice of a volume is shown, a slider to move through
it, and where the labelled slices are.

It knows slice ids only; the window opens the chosen slice as any image (`slice_chosen`).
Dragging the slider asks for the slice it rests on after a short pause, so a fast drag does not
queue one image load per slice it passes.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QWidget

from segstudio.io.entries import ImageEntry, SeriesRecord

DRAG_PAUSE_MS = 12


class SliceBar(QWidget):
    slice_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("sliceSlider")
        self.slider.setMinimum(0)
        self.slider.setPageStep(10)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)   # Up/Down stay with the canvas
        self.label = QLabel()
        self.label.setObjectName("sliceLabel")
        self.label.setMinimumWidth(220)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        layout.addWidget(self.label)
        layout.addWidget(self.slider, 1)
        self._ids: list[str] = []
        self._record: SeriesRecord | None = None
        self._labelled: list[int] = []
        self._shown: tuple[SeriesRecord, int] | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DRAG_PAUSE_MS)
        self._timer.timeout.connect(self._emit_slider)
        self.slider.valueChanged.connect(self._on_value)
        self.hide()

    @property
    def active(self) -> bool:
        return bool(self._ids)

    def show_for(self, slices: list[ImageEntry], current: str,
                 record: SeriesRecord | None) -> None:
        """Show the bar for a volume's slices (in order) with `current` shown; hide it for
        an image (no slices)."""
        self._ids = [e.id for e in slices]
        self._record = record
        self._labelled = [k for k, e in enumerate(slices) if e.labelled > 0]
        if not self._ids or current not in self._ids:
            self._ids = []
            self.hide()
            return
        k = self._ids.index(current)
        self.slider.blockSignals(True)
        self.slider.setMaximum(len(self._ids) - 1)
        self.slider.setValue(k)
        self.slider.blockSignals(False)
        self._describe(k)
        self.show()

    def current_index(self) -> int:
        return self.slider.value()

    def follow(self, project, image_id: str) -> SeriesRecord | None:
        """Show the bar for the image being opened (hidden unless it is a slice of a
        volume); returns its volume's record."""
        entry = project.entry(image_id)
        record = project.series.get(entry.series) if entry.series is not None else None
        self.show_for(project.slices_of(record.id) if record else [], image_id, record)
        self._shown = (record, entry.slice) if record is not None and self.active else None
        return record

    def place(self) -> tuple[np.ndarray, int, str | None] | None:
        """(voxel -> patient mm affine, slice, modality) of the slice opened, or None."""
        if self._shown is None:
            return None
        record, k = self._shown
        return record.affine, k, record.modality

    def step(self, delta: int) -> None:
        """The next (+1) or previous (-1) slice, at once (keys and the wheel)."""
        if not self._ids:
            return
        k = min(len(self._ids) - 1, max(0, self.slider.value() + delta))
        if k == self.slider.value():
            return
        self.slider.blockSignals(True)
        self.slider.setValue(k)
        self.slider.blockSignals(False)
        self._describe(k)
        self.slice_chosen.emit(self._ids[k])

    def _on_value(self, k: int) -> None:
        self._describe(k)
        self._timer.start()

    def _emit_slider(self) -> None:
        if self._ids:
            self.slice_chosen.emit(self._ids[self.slider.value()])

    def _describe(self, k: int) -> None:
        text = f"Slice {k + 1} / {len(self._ids)}"
        if self._record is not None:
            text += f" · {self._record.spacing[2]:.3g} mm apart"
        if self._labelled:
            shown = ", ".join(str(i + 1) for i in self._labelled[:8])
            more = ", …" if len(self._labelled) > 8 else ""
            text += f" · labelled: {shown}{more}"
        else:
            text += " · no slice labelled yet"
        self.label.setText(text)
