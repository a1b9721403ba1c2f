"""Canvas tools other than the brush: fill, polygon/lasso, rectangle and the smart tools.

A tool turns mouse input (in image coordinates) into a Proposal. Fill, polygon and rectangle
commit at once; the smart tools (magic wand, GrabCut, watershed, threshold) show their
proposal first: Enter commits it as one undo step, Esc discards it.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QKeyEvent, QPainter, QPen, QPolygonF

from segstudio.edit import regions
from segstudio.edit.regions import Proposal

Point = tuple[float, float]   # (y, x) in image pixels


class Tool:
    name = ""
    label = ""                  # names its undo step
    text = ""                   # its menu and tool-bar entry
    shortcut = ""               # its key (portable text)
    smart = False               # shows a proposal that waits for Enter / Esc
    hint = ""

    def __init__(self, canvas) -> None:
        self.canvas = canvas

    def press(self, pt: Point, button: Qt.MouseButton, modifiers) -> None: ...
    def move(self, pt: Point, buttons) -> None: ...
    def release(self, pt: Point, button: Qt.MouseButton) -> None: ...
    def double_click(self, pt: Point) -> None: ...

    def key(self, event: QKeyEvent) -> bool:
        return False

    def reset(self) -> None:
        """Drop anything half-done (tool switch, image switch)."""

    def paint(self, p: QPainter) -> None:
        """Draw what the tool is building, in widget coordinates."""

    # helpers
    @property
    def image(self):
        return self.canvas.image_data

    def commit(self, proposal: Proposal | None, label: str) -> None:
        if proposal is not None and not proposal.empty:
            self.canvas.commit_region(proposal, label)

    def show(self, proposal: Proposal | None) -> None:
        self.canvas.set_proposal(proposal)


class FillTool(Tool):
    name, label, hint = "fill", "Fill", "Click a region of the mask to fill it with the class"
    text, shortcut = "Fill", "G"
    connectivity = 4

    def press(self, pt, button, modifiers) -> None:
        doc = self.canvas.document
        if button != Qt.MouseButton.LeftButton or doc is None:
            return
        self.commit(regions.flood_fill(doc.mask, int(pt[0]), int(pt[1]), self.connectivity), "Fill")


class PolygonTool(Tool):
    name, label = "polygon", "Polygon / lasso"
    text, shortcut = "Polygon / Lasso", "L"
    hint = "Click corners and double-click (or Enter) to close, or drag freehand; Esc cancels"

    def __init__(self, canvas) -> None:
        super().__init__(canvas)
        self.points: list[Point] = []
        self._dragging = False
        self._drag_start = 0
        self._hover: Point | None = None

    def reset(self) -> None:
        self.points, self._dragging, self._hover = [], False, None
        self.canvas.update()

    def press(self, pt, button, modifiers) -> None:
        if button != Qt.MouseButton.LeftButton:
            return
        if self.points and len(self.points) >= 3 and self._near_first(pt):
            self.close()
            return
        self.points.append(pt)
        self._dragging = True
        self._drag_start = len(self.points)
        self.canvas.update()

    def move(self, pt, buttons) -> None:
        self._hover = pt
        if self._dragging and buttons & Qt.MouseButton.LeftButton:
            last = self.points[-1]
            if (pt[0] - last[0]) ** 2 + (pt[1] - last[1]) ** 2 >= (2.0 / self.canvas.zoom) ** 2:
                self.points.append(pt)       # freehand: a lasso is a dense polygon
        self.canvas.update()

    def release(self, pt, button) -> None:
        if button != Qt.MouseButton.LeftButton:
            return
        self._dragging = False
        if len(self.points) - self._drag_start >= 5:   # a freehand drag closes on release, like a lasso
            self.close()

    def double_click(self, pt) -> None:
        self.close()

    def _near_first(self, pt: Point) -> bool:
        f = self.points[0]
        return ((pt[0] - f[0]) ** 2 + (pt[1] - f[1]) ** 2) * self.canvas.zoom ** 2 <= 64

    def close(self) -> None:
        pts = list(dict.fromkeys(self.points))
        self.reset()
        shape = self.canvas.image_shape
        if shape is not None and len(pts) >= 3:
            self.commit(regions.polygon(shape, pts), "Polygon")

    def key(self, event) -> bool:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.points:
            self.close()
            return True
        if event.key() == Qt.Key.Key_Escape and self.points:
            self.reset()
            return True
        return False

    def paint(self, p) -> None:
        if not self.points:
            return
        poly = QPolygonF([self.canvas.image_to_widget(y, x) for y, x in self.points])
        if self._hover is not None:
            poly.append(self.canvas.image_to_widget(*self._hover))
        p.setPen(QPen(QColor(255, 255, 255), 1.5, Qt.PenStyle.DashLine))
        p.drawPolyline(poly)


class DragTool(Tool):
    """A left-button drag from p0 to p1 (the modifiers held at the press kept in `_modifiers`)."""

    def __init__(self, canvas) -> None:
        super().__init__(canvas)
        self.p0: Point | None = None
        self.p1: Point | None = None
        self._modifiers = Qt.KeyboardModifier.NoModifier

    def reset(self) -> None:
        self.p0 = self.p1 = None
        self.canvas.update()

    def press(self, pt, button, modifiers) -> None:
        if button == Qt.MouseButton.LeftButton:
            self.p0 = self.p1 = pt
            self._modifiers = modifiers

    def move(self, pt, buttons) -> None:
        if self.p0 is not None and buttons & Qt.MouseButton.LeftButton:
            self.p1 = pt
            self.canvas.update()


class BoxTool(DragTool):
    """Drag a box; `finish(p0, p1)` turns it into a proposal."""

    def release(self, pt, button) -> None:
        if button != Qt.MouseButton.LeftButton or self.p0 is None or self.canvas.image_data is None:
            return
        p0, p1 = self.p0, pt
        self.reset()
        self.finish(p0, p1)

    def finish(self, p0: Point, p1: Point) -> None: ...

    def paint(self, p) -> None:
        if self.p0 is None or self.p1 is None:
            return
        a = self.canvas.image_to_widget(*self.p0)
        b = self.canvas.image_to_widget(*self.p1)
        p.setPen(QPen(QColor(255, 255, 255), 1.5, Qt.PenStyle.DashLine))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRect(QRectF(a, b).normalized())


class RectangleTool(BoxTool):
    name, label, hint = "rectangle", "Rectangle", "Drag a box to fill it with the class"
    text, shortcut = "Rectangle", "R"

    def finish(self, p0, p1) -> None:
        self.commit(regions.rectangle(self.canvas.image_shape, p0, p1), "Rectangle")


class SmartTool(Tool):
    smart = True

    def key(self, event) -> bool:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.canvas.proposal is not None:
            self.canvas.commit_proposal(self.label)
            self.reset()
            return True
        if event.key() == Qt.Key.Key_Escape and self.canvas.proposal is not None:
            self.canvas.set_proposal(None)
            self.reset()
            return True
        return False


class WandTool(SmartTool):
    name, label = "wand", "Magic wand"
    text, shortcut = "Magic Wand", "W"
    hint = "Click: pixels like this one (tolerance in the toolbar); Enter keeps, Esc drops"
    tolerance = 10.0

    def press(self, pt, button, modifiers) -> None:
        data = self.image
        if button == Qt.MouseButton.LeftButton and data is not None:
            y, x = int(pt[0]), int(pt[1])
            if 0 <= y < data.shape[0] and 0 <= x < data.shape[1]:
                self.show(regions.magic_wand(data, y, x, self.tolerance))


class GrabCutTool(SmartTool, BoxTool):
    name, label = "grabcut", "GrabCut"
    text, shortcut = "GrabCut", "C"
    hint = "Drag a box around an object; Enter keeps the proposal, Esc drops it"

    def finish(self, p0, p1) -> None:
        self.show(regions.grabcut(self.image, p0, p1, self.canvas.display_range))

    def key(self, event) -> bool:
        return SmartTool.key(self, event)


class ThresholdTool(SmartTool, BoxTool):
    name, label = "threshold", "Threshold"
    text, shortcut = "Threshold", "T"
    hint = "Drag a box: its bright pixels (Shift: dark) by Otsu's threshold; Enter keeps, Esc drops"

    def finish(self, p0, p1) -> None:
        dark = bool(self._modifiers & Qt.KeyboardModifier.ShiftModifier)
        self.show(regions.threshold(self.image, p0, p1, bright=not dark))

    def key(self, event) -> bool:
        return SmartTool.key(self, event)


class WatershedTool(SmartTool):
    name, label = "watershed", "Watershed"
    text, shortcut = "Watershed", "S"
    hint = "Left-click object seeds, right-click background seeds; Enter keeps, Esc drops"

    def __init__(self, canvas) -> None:
        super().__init__(canvas)
        self.fg: list[tuple[int, int]] = []
        self.bg: list[tuple[int, int]] = []

    def reset(self) -> None:
        self.fg, self.bg = [], []
        self.canvas.update()

    def press(self, pt, button, modifiers) -> None:
        if self.image is None:
            return
        seed = (int(pt[0]), int(pt[1]))
        if button == Qt.MouseButton.LeftButton:
            self.fg.append(seed)
        elif button == Qt.MouseButton.RightButton:
            self.bg.append(seed)
        else:
            return
        self.show(regions.watershed(self.image, self.fg, self.bg, self.canvas.display_range))

    def paint(self, p) -> None:
        for seeds, color in ((self.fg, QColor(255, 255, 255)), (self.bg, QColor(0, 0, 0))):
            p.setPen(QPen(color, 2))
            for y, x in seeds:
                p.drawEllipse(self.canvas.image_to_widget(y + 0.5, x + 0.5), 4, 4)


class ObjectTool(DragTool):
    """Objects of instance classes: click selects, drag cuts one in two along the line."""

    name, label = "objects", "Objects"
    text, shortcut = "Objects (Select / Cut)", "X"
    hint = ("Click an object to select it (Shift+click: add), drag a line across one to cut it "
            "in two; Ctrl+J merges the selected, Del deletes them, Esc clears the selection")
    DRAG_PX = 4             # screen pixels: a shorter drag is a click

    def release(self, pt, button) -> None:
        if button != Qt.MouseButton.LeftButton or self.p0 is None:
            return
        p0 = self.p0
        self.reset()
        dist = ((pt[0] - p0[0]) ** 2 + (pt[1] - p0[1]) ** 2) ** 0.5 * self.canvas.zoom
        if dist >= self.DRAG_PX:
            self.canvas.split_along(p0, pt)
        else:
            add = bool(self._modifiers & (Qt.KeyboardModifier.ShiftModifier
                                          | Qt.KeyboardModifier.ControlModifier))
            self.canvas.select_object_at(pt, add=add)

    def key(self, event) -> bool:
        if event.key() == Qt.Key.Key_Escape and len(self.canvas.selected_objects):
            self.canvas.set_selected_objects([])
            return True
        return False

    def paint(self, p) -> None:
        if self.p0 is None or self.p1 is None or self.p0 == self.p1:
            return
        a, b = self.canvas.image_to_widget(*self.p0), self.canvas.image_to_widget(*self.p1)
        p.setPen(QPen(QColor(0, 0, 0, 200), 3))
        p.drawLine(a, b)
        p.setPen(QPen(QColor(255, 255, 255), 1.5, Qt.PenStyle.DashLine))
        p.drawLine(a, b)


TOOL_CLASSES = (FillTool, PolygonTool, RectangleTool, WandTool, GrabCutTool, WatershedTool,
                ThresholdTool, ObjectTool)


# the brush and the eraser have no Tool object (the canvas paints with them itself):
# (name, menu text, key, hint), like the classes above
PAINT_TOOLS = (("brush", "Brush", "B", ""), ("eraser", "Eraser", "E", ""))


def make_tools(canvas) -> dict[str, Tool]:
    return {cls.name: cls(canvas) for cls in TOOL_CLASSES}


def tool_entries() -> list[tuple[str, str, str, str]]:
    """(name, menu text, key, hint) of every tool, in menu order: the Tools menu's source."""
    return [*PAINT_TOOLS, *((c.name, c.text, c.shortcut, c.hint) for c in TOOL_CLASSES)]

