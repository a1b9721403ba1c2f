"""DisplayPanel: contrast, window/level presets and overlay opacity (display only), and the
intensity range the brush may paint in (e.g. only -500..200 HU, as Slicer's editable range)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QSlider,
                               QWidget)

from segstudio.core.display import CT_PRESETS, DisplayRange

AUTO = "Auto (0.5–99.5 %)"
FULL = "Full range"
HEADER = "From file header"
MANUAL = "Manual"


class DisplayPanel(QWidget):
    preset_chosen = Signal(str)
    range_edited = Signal(object)      # DisplayRange
    opacity_changed = Signal(float)
    paint_range_changed = Signal(object)     # (low, high) the brush paints within, or None

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.preset = QComboBox()
        self.preset.addItems([AUTO, FULL, HEADER, *CT_PRESETS, MANUAL])
        self.preset.setToolTip("How data values map to screen brightness; the data itself never changes")
        self.preset.activated.connect(lambda _i: self.preset_chosen.emit(self.preset.currentText()))
        self.low = QDoubleSpinBox()
        self.high = QDoubleSpinBox()
        for s in (self.low, self.high):
            s.setRange(-1e9, 1e9)
            s.setDecimals(1)
            s.setKeyboardTracking(False)
            s.valueChanged.connect(self._on_spin_changed)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.opacity.setToolTip("Opacity of the label overlay")
        self.opacity.valueChanged.connect(lambda v: self.opacity_changed.emit(v / 100.0))
        self.paint_only = QCheckBox("Paint only values from")
        self.paint_only.setToolTip("The brush labels only pixels whose value lies in this range "
                                   "(in HU for CT); the eraser erases everywhere")
        self.paint_low, self.paint_high = QDoubleSpinBox(), QDoubleSpinBox()
        for s, v in ((self.paint_low, -500.0), (self.paint_high, 200.0)):
            s.setRange(-1e9, 1e9)
            s.setDecimals(1)
            s.setValue(v)
            s.setKeyboardTracking(False)
            s.valueChanged.connect(lambda _v: self._emit_paint_range())
        self.paint_only.toggled.connect(lambda _on: self._emit_paint_range())
        form = QFormLayout(self)
        form.setContentsMargins(4, 4, 4, 4)
        form.addRow("Contrast", self.preset)
        form.addRow("Black at", self.low)
        form.addRow("White at", self.high)
        form.addRow("Mask opacity", self.opacity)
        form.addRow(self.paint_only, self.paint_low)
        form.addRow("to", self.paint_high)
        self._updating = False

    def show_range(self, rng: DisplayRange, preset: str | None = None) -> None:
        self._updating = True
        self.low.setValue(rng.low)
        self.high.setValue(rng.high)
        if preset is not None:
            self.preset.setCurrentText(preset)
        self._updating = False

    def _on_spin_changed(self, _v: float) -> None:
        if self._updating:
            return
        lo, hi = self.low.value(), self.high.value()
        if hi <= lo:
            hi = lo + 1.0
        self.preset.setCurrentText(MANUAL)
        self.range_edited.emit(DisplayRange(lo, hi))

    def paint_range(self) -> tuple[float, float] | None:
        if not self.paint_only.isChecked():
            return None
        lo, hi = self.paint_low.value(), self.paint_high.value()
        return (lo, hi) if lo <= hi else (hi, lo)

    def _emit_paint_range(self) -> None:
        self.paint_range_changed.emit(self.paint_range())
