"""WindowSettings: what the window remembers between sessions — layout, tool, brush, overlay.

Read once at start, written on close, into the QSettings of ui/settings.py. It is given the
QMainWindow (for its geometry and dock state, Qt's own API) and the few widgets whose values
persist, not the SegStudio window.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QComboBox, QDockWidget, QMainWindow, QSlider

from segstudio.ui.canvas import MaskCanvas
from segstudio.ui.settings import value


class WindowSettings:
    """Restores and saves the window's layout and the editing and view choices."""

    def __init__(self, settings: QSettings, window: QMainWindow, canvas: MaskCanvas, *,
                 tools: Callable[[], dict], set_tool: Callable[[str], None],
                 set_brush_radius: Callable[[float], None], opacity: QSlider,
                 device: QComboBox, outline_action: QAction) -> None:
        self.settings = settings
        self.window = window
        self.canvas = canvas
        self._tools = tools
        self._set_tool = set_tool
        self._set_brush_radius = set_brush_radius
        self._opacity = opacity
        self._device = device
        self._outline_action = outline_action
        self.default_layout: QByteArray = window.saveState()   # what View ▸ Reset Layout restores

    def restore(self) -> None:
        st = self.settings
        geometry, state = st.value("window/geometry"), st.value("window/state")
        if geometry is not None:
            self.window.restoreGeometry(geometry)
        if state is not None:
            self.window.restoreState(state)
        tool = value(st, "tools/tool", "brush", str)
        if tool in self._tools():
            self._set_tool(tool)
        self._set_brush_radius(value(st, "tools/brush_radius", self.canvas.brush_radius, float))
        opacity = value(st, "view/opacity", 0.5, float)
        self._opacity.setValue(int(round(opacity * 100)))
        self.canvas.set_opacity(opacity)
        device = value(st, "train/device", "auto", str)
        if device in [self._device.itemText(i) for i in range(self._device.count())]:
            self._device.setCurrentText(device)
        self._outline_action.setChecked(value(st, "view/outline", False, bool))
        self.canvas.set_outline(self._outline_action.isChecked())

    def save(self) -> None:
        st = self.settings
        st.setValue("window/geometry", self.window.saveGeometry())
        st.setValue("window/state", self.window.saveState())
        st.setValue("tools/tool", self.canvas.tool)
        st.setValue("tools/brush_radius", self.canvas.brush_radius)
        st.setValue("view/opacity", self.canvas.opacity)
        st.setValue("view/outline", self.canvas.outline)
        st.setValue("train/device", self._device.currentText())
        st.sync()

    def reset_layout(self) -> None:
        self.window.restoreState(self.default_layout)
        for dock in self.window.findChildren(QDockWidget):
            dock.show()
