"""MaskCanvas: painting, the region and smart tools, zoom and pan by mouse and keys.

Drawing (the visible region only, at the visible resolution) is CanvasView's, in canvas_view.py;
this module turns input into document strokes and tool proposals.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QKeyEvent, QMouseEvent, QPainter, QPen, QWheelEvent
from PySide6.QtWidgets import QWidget

from segstudio.core.classes import UNLABELED
from segstudio.core.display import DisplayRange
from segstudio.core.document import ImageDocument
from segstudio.edit import objects as object_ops
from segstudio.edit.regions import Proposal
from segstudio.ui.actions import Action
from segstudio.ui.canvas_view import (BACKDROP, MAX_ZOOM, MIN_ZOOM, CanvasView,  # noqa: F401
                                      zoom_percent)
from segstudio.ui.click_tool import ClickTool
from segstudio.ui.tools import Tool, make_tools

TOOLS = ("brush", "eraser")

# keys and gestures the canvas reads itself (never QActions: a window shortcut would take them
# from the canvas); declared here, beside the code that handles them, for the shortcuts dialog
CANVAS_KEYS = (
    Action("canvas.proposal", "Keep / drop a proposal (smart tool, click, interpolation); "
           "close / cancel a polygon",
           ("Return", "Esc"), section="Tools", canvas=True),
    Action("canvas.brush_wheel", "Brush size", gesture="Ctrl+wheel", section="Tools", canvas=True),
    Action("canvas.zoom_wheel", "Zoom at the cursor", gesture="Wheel", section="View", canvas=True),
    Action("canvas.pan", "Pan", ("Left", "Right", "Up", "Down"),
           gesture="Space+drag, middle drag", section="View", canvas=True),
    Action("canvas.pick_object", "Pick the object under the cursor (selects it and its class)",
           gesture="Alt+click", section="Tools", canvas=True),
    Action("canvas.slice", "In a volume: previous / next slice (Up / Down pan no longer)",
           gesture="Up / Down, Shift+wheel", section="View", canvas=True),
)


class MaskCanvas(CanvasView):
    """Turns drags into document strokes (doc.changed -> _on_doc_changed); no undo here."""

    hovered = Signal(int, int)          # image (y, x) under the cursor, or (-1, -1)
    stroke_finished = Signal()
    paint_refused = Signal(str)         # why a stroke could not start (read-only mask)
    brush_changed = Signal(float)       # new brush radius (Ctrl+wheel)
    object_picked = Signal(int, int)    # object id and its class id (Alt+click)
    object_message = Signal(str)        # what an object edit did, or why it did nothing
    slice_step = Signal(int)            # in a volume: -1 previous slice, +1 next (Up/Down)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.tool = "brush"
        self.in_volume = False          # the image shown is a slice: Up/Down change slice
        self.paint_range: tuple[float, float] | None = None   # the brush paints only these values
        self.brush_radius = 8.0
        self.class_value = 1
        self.protect_others = False
        # painting an object class: False = each stroke is a new object (touching nuclei stay
        # two); True = a stroke continues the object under the cursor, else the picked one
        self.continue_object = False
        self.picked_object: tuple[int, int] | None = None     # (object id, class id)
        self._last_img: tuple[float, float] | None = None
        self._pan_from: QPointF | None = None
        self._space = False
        self._cursor: QPointF | None = None
        self.proposal: Proposal | None = None
        self.proposal_owner = None        # who takes Return / Esc for the proposal shown
        self.loading: str | None = None     # "Opening x…" while an image loads: input refused
        self._proposal_img: QImage | None = None
        self.tools = make_tools(self)
        self.tools[ClickTool.name] = ClickTool(self)     # ui/click_tool.py (issue 14)

    # -- content ---------------------------------------------------------------------------
    def set_content(self, data: np.ndarray | None, doc: ImageDocument | None,
                    display: DisplayRange | None = None, keep_view: bool = False,
                    view: tuple[float, float, float] | None = None) -> None:
        if self._doc is not None and self._doc.in_stroke:
            self._doc.end_stroke()
        self._last_img = None
        super().set_content(data, doc, display, keep_view, view)
        self.set_loading(None)
        self.set_tool(self.tool)          # drops half-built polygons and proposals

    def set_loading(self, message: str | None) -> None:
        """While an image opens: say so over the canvas and refuse input (nothing is dropped
        silently: a press says why it did nothing)."""
        self.loading = message
        if message:
            self.setCursor(Qt.CursorShape.BusyCursor)
        else:
            self.unsetCursor()
        self.update()

    # -- tools -----------------------------------------------------------------------------
    def set_tool(self, name: str) -> None:
        if name not in TOOLS and name not in self.tools:
            raise ValueError(f"unknown tool {name!r}; known: {[*TOOLS, *self.tools]}")
        for tool in self.tools.values():
            tool.reset()
        self.set_proposal(None)
        self.tool = name
        # the brush draws its own size ring; region tools aim with a cross
        self.setCursor(Qt.CursorShape.ArrowCursor if name in TOOLS else Qt.CursorShape.CrossCursor)

    @property
    def active_tool(self) -> Tool | None:
        return self.tools.get(self.tool)

    def set_proposal(self, proposal: Proposal | None, owner=None) -> None:
        """Show a proposal (yellow, outlined) until it is committed or dropped. A smart tool's
        is committed into this image; with an `owner` (a step across slices), Return and Esc
        go to `owner.accept_proposal()` / `owner.drop_proposal()` instead, even on a slice
        where it changes nothing (its region empty)."""
        self.proposal_owner = owner
        self.proposal = proposal if proposal is not None and not proposal.empty else None
        self._proposal_img = None
        if self.proposal is not None:
            region = self.proposal.region
            edge = region.copy()
            edge[1:-1, 1:-1] &= ~(region[:-2, 1:-1] & region[2:, 1:-1] & region[1:-1, :-2] & region[1:-1, 2:])
            rgba = np.zeros(region.shape + (4,), np.uint8)
            rgba[region] = (23, 80, 84, 90)          # yellow (#F0E442) at 35 %, premultiplied BGRA
            rgba[edge] = (66, 228, 240, 255)
            self._proposal_buf = rgba
            h, w = region.shape
            self._proposal_img = QImage(rgba.data, w, h, w * 4, QImage.Format.Format_ARGB32_Premultiplied)
        self.update()

    def commit_proposal(self, label: str = "Smart tool") -> None:
        if self.proposal is not None:
            proposal = self.proposal
            self.set_proposal(None)
            self.commit_region(proposal, label)

    def commit_region(self, proposal: Proposal, label: str) -> None:
        """Write the selected class into a region as one undo step."""
        if self._doc is None:
            return
        if self._doc.read_only:
            self.paint_refused.emit(self._doc.read_only)
            return
        value, only_over = self._painting_value()
        self._doc.replace(proposal.rect, value, label, where=proposal.region, only_over=only_over,
                          object_id=self._stroke_object(None))
        self.stroke_finished.emit()

    def _paint_above(self, p: QPainter) -> None:
        if self._proposal_img is not None and self.proposal is not None:
            rect = self.proposal.rect
            target = QRectF(self.image_to_widget(rect.y0, rect.x0), self.image_to_widget(rect.y1, rect.x1))
            p.drawImage(target, self._proposal_img)
        if self.loading:
            band = QRect(0, self.height() // 2 - 24, self.width(), 48)
            p.fillRect(band, QColor(0, 0, 0, 170))
            p.setPen(QColor(255, 255, 255))
            p.drawText(band, Qt.AlignmentFlag.AlignCenter, self.loading)
            return
        tool = self.active_tool
        if tool is not None:
            p.setRenderHint(QPainter.RenderHint.Antialiasing)
            tool.paint(p)
        if self._cursor is not None and self.tool in TOOLS and self._doc is not None:
            rad = max(1.0, self.brush_radius * self.zoom)
            p.setRenderHint(QPainter.RenderHint.Antialiasing)
            p.setPen(QPen(QColor(0, 0, 0, 200), 3))
            p.drawEllipse(self._cursor, rad, rad)
            p.setPen(QPen(QColor(255, 255, 255, 230), 1))
            p.drawEllipse(self._cursor, rad, rad)

    # -- input -----------------------------------------------------------------------------
    def _cursor_rect(self, pos: QPointF | None) -> QRect:
        if pos is None:
            return QRect()
        rad = int(max(1.0, self.brush_radius * self.zoom)) + 4
        return QRect(int(pos.x()) - rad, int(pos.y()) - rad, 2 * rad + 1, 2 * rad + 1)

    def _move_cursor(self, pos: QPointF | None) -> None:
        old = self._cursor_rect(self._cursor)
        self._cursor = pos
        self.update(old.united(self._cursor_rect(pos)))

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120.0
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.set_brush_radius(self.brush_radius * (1.15 ** steps))
        elif self.in_volume and event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            # Shift turns some mice's wheel into a horizontal one: either axis counts
            delta = event.angleDelta().y() or event.angleDelta().x()
            if delta:
                self.slice_step.emit(-1 if delta > 0 else 1)
        else:
            self.zoom_by(1.25 ** steps, event.position())
        event.accept()

    def set_brush_radius(self, radius: float) -> None:
        self.brush_radius = float(min(500.0, max(0.5, radius)))
        self._move_cursor(self._cursor)
        self.brush_changed.emit(self.brush_radius)

    def _painting_value(self) -> tuple[int, tuple[int, ...] | None]:
        if self.tool == "eraser":
            return UNLABELED, ((self.class_value,) if self.protect_others else None)
        return self.class_value, ((UNLABELED, self.class_value) if self.protect_others else None)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        pos = event.position()
        if (event.button() == Qt.MouseButton.MiddleButton
                or (event.button() == Qt.MouseButton.LeftButton and self._space)):
            self._pan_from = pos
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        if self.loading:
            self.paint_refused.emit(f"{self.loading} Paint once it is shown.")
            return
        if (event.button() == Qt.MouseButton.LeftButton and self._doc is not None
                and event.modifiers() & Qt.KeyboardModifier.AltModifier):
            self.pick_object(self.widget_to_image(pos))
            return
        tool = self.active_tool
        if tool is not None and self._doc is not None:
            tool.press(self.widget_to_image(pos), event.button(), event.modifiers())
            return
        if event.button() == Qt.MouseButton.LeftButton and self._doc is not None:
            if self._doc.read_only:
                self.paint_refused.emit(self._doc.read_only)
                return
            self._last_img = self.widget_to_image(pos)
            self._doc.begin_stroke("Eraser" if self.tool == "eraser" else "Brush",
                                   self._stroke_object(self._last_img))
            self._dab_to(self._last_img)

    # -- objects ---------------------------------------------------------------------------
    def object_under(self, pt: tuple[float, float]) -> int:
        return object_ops.object_at(self._doc.objects if self._doc else None, *pt)

    def _stroke_object(self, pt: tuple[float, float] | None) -> int | None:
        """The object a stroke continues (continue mode), or None: a new object."""
        doc = self._doc
        if (doc is None or not self.continue_object or self.tool == "eraser"
                or not doc.is_object_class(self.class_value)):
            return None
        if pt is not None:
            oid = self.object_under(pt)
            if oid and doc.mask[int(pt[0]), int(pt[1])] == self.class_value:
                return oid
        if self.picked_object is not None and self.picked_object[1] == self.class_value:
            return self.picked_object[0]
        return None

    def pick_object(self, pt: tuple[float, float]) -> int:
        """Alt+click: the object under the cursor becomes the picked (and selected) one."""
        oid = self.object_under(pt)
        if not oid:
            self.picked_object = None
            self.set_selected_objects([])
            self.object_message.emit("No object under the cursor")
            return 0
        cls = int(self._doc.mask[int(pt[0]), int(pt[1])])
        self.picked_object = (oid, cls)
        self.set_selected_objects([oid])
        self.object_picked.emit(oid, cls)
        self.object_message.emit(f"Object {oid} (class {cls}) picked")
        return oid

    def select_object_at(self, pt: tuple[float, float], add: bool = False) -> list[int]:
        oid = self.object_under(pt)
        chosen = [int(i) for i in self.selected_objects] if add else []
        if oid and oid in chosen:
            chosen.remove(oid)
        elif oid:
            chosen.append(oid)
        self.set_selected_objects(chosen)
        self.object_message.emit(f"Selected object(s): {', '.join(map(str, chosen))}" if chosen
                                 else "No object selected")
        return chosen

    def _object_edit(self, fn, *args):
        """Run an edit.objects function on the document as one undo step; None if refused."""
        if self._doc is None:
            return None
        if self._doc.read_only:
            self.paint_refused.emit(self._doc.read_only)
            return None
        try:
            result = fn(self._doc, *args)
        except object_ops.ObjectEditError as e:
            self.object_message.emit(str(e))
            return None
        if result:
            self.stroke_finished.emit()
        return result

    def split_along(self, p0: tuple[float, float], p1: tuple[float, float]) -> int:
        """Cut in two the selected object, or else the one the line crosses most."""
        doc = self._doc
        if doc is None or doc.objects is None:
            self.object_message.emit("This image has no objects to cut")
            return 0
        a, b = (p0[0] - 0.5, p0[1] - 0.5), (p1[0] - 0.5, p1[1] - 0.5)     # pixel centres
        selected = [int(i) for i in self.selected_objects]
        sources = [selected[0]] if len(selected) == 1 else []
        sources.append(object_ops.most_crossed(doc.objects, a, b))
        for source in dict.fromkeys(s for s in sources if s):
            new = self._object_edit(object_ops.split_object, a, b, source)
            if new:
                self.set_selected_objects([source, new])
                self.object_message.emit(f"Object {source} cut in two: new object {new}")
                return new
        self.object_message.emit("The line does not cut an object in two")
        return 0

    def merge_selected(self) -> int:
        ids = [int(i) for i in self.selected_objects]
        if len(ids) < 2:
            self.object_message.emit("Select two or more objects to merge (Shift+click)")
            return 0
        kept = self._object_edit(object_ops.merge_objects, ids) or 0
        if kept:
            self.set_selected_objects([kept])
            self.object_message.emit(f"Merged into object {kept}")
        return kept

    def delete_selected(self) -> int:
        ids = [int(i) for i in self.selected_objects]
        if not ids:
            self.object_message.emit("Select the objects to delete first")
            return 0
        n = self._object_edit(object_ops.delete_objects, ids) or 0
        if n:
            self.set_selected_objects([])
            self.object_message.emit(f"Deleted {n} object(s)")
        return n

    def _dab_to(self, pt: tuple[float, float]) -> None:
        assert self._doc is not None and self._last_img is not None
        value, only_over = self._painting_value()
        a = (self._last_img[0] - 0.5, self._last_img[1] - 0.5)
        b = (pt[0] - 0.5, pt[1] - 0.5)
        allowed = self._in_paint_range if self.paint_range is not None and \
            self.tool == "brush" else None
        self._doc.paint_segment(a, b, self.brush_radius, value, only_over, allowed)
        self._last_img = pt

    def _in_paint_range(self, rect) -> np.ndarray:
        """The pixels of `rect` whose value is in the paint range (colour: the mean)."""
        lo, hi = self.paint_range
        values = np.asarray(self.image_data[rect.slices])
        if values.ndim == 3:
            values = values[..., :3].mean(axis=2)
        return (values >= lo) & (values <= hi)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = event.position()
        if self._pan_from is not None:
            d = pos - self._pan_from
            self._pan_from = pos
            self.pan_by(d.x(), d.y())
            return
        self._move_cursor(pos)
        y, x = self.widget_to_image(pos)
        shape = self.image_shape
        if shape is not None and 0 <= y < shape[0] and 0 <= x < shape[1]:
            self.hovered.emit(int(y), int(x))
        else:
            self.hovered.emit(-1, -1)
        tool = self.active_tool
        if tool is not None and self._doc is not None:
            tool.move((y, x), event.buttons())
            return
        if (event.buttons() & Qt.MouseButton.LeftButton and self._doc is not None
                and self._doc.in_stroke and self._last_img is not None):
            self._dab_to((y, x))

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is not None and event.button() in (Qt.MouseButton.MiddleButton,
                                                              Qt.MouseButton.LeftButton):
            self._pan_from = None
            self.unsetCursor()
            return
        tool = self.active_tool
        if tool is not None and self._doc is not None:
            tool.release(self.widget_to_image(event.position()), event.button())
            return
        if event.button() == Qt.MouseButton.LeftButton and self._doc is not None and self._doc.in_stroke:
            self._doc.end_stroke()          # one stroke = one undo step
            self._last_img = None
            self.stroke_finished.emit()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        tool = self.active_tool
        if tool is not None and self._doc is not None and event.button() == Qt.MouseButton.LeftButton:
            tool.double_click(self.widget_to_image(event.position()))

    def leaveEvent(self, event) -> None:
        self._move_cursor(None)
        self.hovered.emit(-1, -1)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        owner = self.proposal_owner
        if owner is not None and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter,
                                                 Qt.Key.Key_Escape):
            if event.key() == Qt.Key.Key_Escape:
                owner.drop_proposal()
            else:
                owner.accept_proposal()
            event.accept()
            return
        tool = self.active_tool
        if tool is not None and tool.key(event):
            event.accept()
            return
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            self.setCursor(Qt.CursorShape.OpenHandCursor)
            return
        if self.in_volume and event.key() in (Qt.Key.Key_Up, Qt.Key.Key_Down) \
                and not event.modifiers():
            self.slice_step.emit(1 if event.key() == Qt.Key.Key_Down else -1)
            return
        step = 80
        moves = {Qt.Key.Key_Left: (step, 0), Qt.Key.Key_Right: (-step, 0),
                 Qt.Key.Key_Up: (0, step), Qt.Key.Key_Down: (0, -step)}
        if event.key() in moves and not event.modifiers():
            self.pan_by(*moves[event.key()])
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self._pan_from = None
            self.unsetCursor()
            return
        super().keyReleaseEvent(event)

