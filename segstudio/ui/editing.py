"""Editing: the Tools and Mask menus' work, the tool bar, and each image's undo history.

It works on a canvas and the document shown there and knows nothing of the window: problems go
to `report_error`, notes to `show_message`, the open project and image come from `image`, and
`flush` puts pending strokes on disk before a mask is read back. So it is built and tested
with a bare MaskCanvas (tests/ui/test_editing.py).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from PySide6.QtGui import QActionGroup
from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QInputDialog, QLabel, QSpinBox, QToolBar, QWidget

from segstudio.core.document import ImageDocument
from segstudio.core.history import History
from segstudio.edit import maskops
from segstudio.io.project import ImageEntry, Project
from segstudio.ui.actions import Action, ActionRegistry
from segstudio.ui.canvas import CANVAS_KEYS, MaskCanvas
from segstudio.ui.click_tool import ClickTool
from segstudio.ui.tools import tool_entries

HISTORY_BUDGET = 256 * 2**20     # all images' undo histories together

MASK_OPS = (("fill_holes", "Fill Holes in Class", ("Ctrl+Shift+H",)),
            ("remove_islands", "Remove Small Islands of Class…", ()),
            ("dilate", "Dilate Class…", ()),
            ("erode", "Erode Class…", ()),
            ("unlabeled_to_background", "Fill Unlabeled as Background", ()),
            ("clear_class", "Clear Class", ()))

EDITING_ACTIONS = (
    *(Action(f"tools.{name}", text, (key,), menu="Tools", toolbar=True, checkable=True, tip=hint)
      for name, text, key, hint in (*tool_entries(), ClickTool.entry())),
    Action("tools.smaller_brush", "Smaller Brush", ("[",), menu="Tools", separator=True),
    Action("tools.larger_brush", "Larger Brush", ("]",), menu="Tools"),
    Action("tools.protect", "Protect Other Classes", ("P",), menu="Tools", toolbar=True,
           checkable=True, tip="Paint only over unlabeled pixels or the selected class"),
    *(Action(f"mask.{op}", text, keys, menu="Mask", separator=op == "unlabeled_to_background")
      for op, text, keys in MASK_OPS),
    Action("mask.copy_previous", "Copy Mask from Previous Image", menu="Mask"),
    *CANVAS_KEYS,
)

# objects of classes marked "objects" (the Objects tool, X, selects and cuts them)
OBJECT_ACTIONS = (
    Action("objects.continue", "Continue Object Under Cursor", ("J",), menu="Tools",
           toolbar=True, checkable=True, separator=True,
           tip="Off: each stroke of an object class is a new object (touching ones stay apart). "
               "On: a stroke adds to the object under the cursor, else to the one Alt+clicked"),
    Action("objects.merge", "Merge Selected Objects", ("Ctrl+J",), menu="Mask", separator=True,
           tip="The objects selected with the Objects tool (Shift+click) become one"),
    Action("objects.delete", "Delete Selected Objects", ("Del",), menu="Mask",
           tip="The selected objects' pixels become unlabeled"),
    Action("view.object_edges", "Show Object Edges", ("Shift+O",), menu="View", checkable=True,
           tip="Draw each object's boundary over its colour"),
)


class Editing:
    """Declares the editing actions in `actions`, binds them, and builds the tool bar."""

    def __init__(self, canvas: MaskCanvas, actions: ActionRegistry, *,
                 report_error: Callable[[str, str], None],
                 show_message: Callable[[str, int], None] = lambda text, ms: None,
                 image: Callable[[], tuple[Project | None, ImageEntry | None]] = lambda: (None, None),
                 flush: Callable[[], object] = lambda: True,
                 document: Callable[[], ImageDocument | None] | None = None,
                 parent: QWidget | None = None) -> None:
        self.canvas = canvas
        self.actions = actions
        self.report_error = report_error
        self.show_message = show_message
        self.image = image
        self.flush = flush
        self.document = document or (lambda: canvas.document)
        self.parent = parent or canvas
        self.histories: dict[str, History] = {}
        actions.add(*EDITING_ACTIONS, *OBJECT_ACTIONS)
        self._bind_tools()
        self._bind_mask_ops()
        self._bind_objects()
        self.toolbar = self._build_toolbar()

    # -- tools -----------------------------------------------------------------------------
    def _bind_tools(self) -> None:
        bind = self.actions.bind
        group = QActionGroup(self.parent)
        self.tool_actions = {}
        for name, *_ in (*tool_entries(), ClickTool.entry()):
            act = self.tool_actions[name] = bind(f"tools.{name}", partial(self.set_tool, name))
            group.addAction(act)
        self.tool_actions["brush"].setChecked(True)
        bind("tools.smaller_brush", lambda: self.set_brush_radius(self.canvas.brush_radius / 1.25))
        bind("tools.larger_brush", lambda: self.set_brush_radius(self.canvas.brush_radius * 1.25))
        self.protect_action = bind("tools.protect", self._on_protect_toggled)

    def _build_toolbar(self) -> QToolBar:
        """The tools, then their options, then Protect (the registry's tool-bar actions)."""
        bar = QToolBar("Tools")
        bar.setObjectName("toolbarTools")
        self.actions.fill_toolbar(bar)
        self.size_spin = QSpinBox()
        self.size_spin.setRange(1, 500)
        self.size_spin.setPrefix("size ")
        self.size_spin.setToolTip("Brush radius in image pixels ([ and ], Ctrl+wheel)")
        self.size_spin.setValue(int(self.canvas.brush_radius))
        self.size_spin.valueChanged.connect(lambda v: self.set_brush_radius(float(v)))
        self.size_spin.valueChanged.connect(lambda _v: self._show_mm())
        self._pixel_mm: float | None = None
        # the same radius in millimetres, shown (and settable) where the spacing is known
        self.mm_spin = QDoubleSpinBox()
        self.mm_spin.setRange(0.1, 5000.0)
        self.mm_spin.setDecimals(1)
        self.mm_spin.setSingleStep(0.5)
        self.mm_spin.setPrefix("= ")
        self.mm_spin.setSuffix(" mm")
        self.mm_spin.setToolTip("Brush radius in millimetres (the mean of the row and column "
                                "spacing); typing here sets it")
        self.mm_spin.valueChanged.connect(self._on_mm_changed)
        self.canvas.brush_changed.connect(self._on_canvas_brush_changed)
        self.tolerance_spin = QDoubleSpinBox()
        self.tolerance_spin.setRange(0, 65535)
        self.tolerance_spin.setValue(self.canvas.tools["wand"].tolerance)
        self.tolerance_spin.setPrefix("tolerance ")
        self.tolerance_spin.setToolTip("Magic wand: how far from the clicked value a pixel may be")
        self.tolerance_spin.valueChanged.connect(self._on_tolerance_changed)
        self.connect8 = QCheckBox("8-connected fill")
        self.connect8.setToolTip("Fill through diagonal neighbours too")
        self.connect8.toggled.connect(self._on_connectivity_toggled)
        before = self.protect_action
        bar.insertSeparator(before)
        for widget in (self.size_spin, self.mm_spin, self.tolerance_spin, self.connect8):
            action = bar.insertWidget(before, widget)
            if widget is self.mm_spin:
                self._mm_action = action
                action.setVisible(False)
        self.hint_label = QLabel("")
        bar.addWidget(self.hint_label)
        return bar

    def set_tool(self, name: str) -> None:
        self.canvas.set_tool(name)
        self.tool_actions[name].setChecked(True)
        tool = self.canvas.tools.get(name)
        self.hint_label.setText(f"  {tool.hint}" if tool else "")
        self.canvas.setFocus()

    def set_brush_radius(self, radius: float) -> None:
        self.canvas.set_brush_radius(radius)

    def _on_canvas_brush_changed(self, radius: float) -> None:
        self.size_spin.blockSignals(True)
        self.size_spin.setValue(int(round(radius)))
        self.size_spin.blockSignals(False)
        self._show_mm()

    def _on_protect_toggled(self, on: bool) -> None:
        self.canvas.protect_others = bool(on)

    def _on_tolerance_changed(self, value: float) -> None:
        self.canvas.tools["wand"].tolerance = float(value)

    def _on_connectivity_toggled(self, on: bool) -> None:
        self.canvas.tools["fill"].connectivity = 8 if on else 4

    # -- objects ---------------------------------------------------------------------------
    def _bind_objects(self) -> None:
        bind = self.actions.bind
        self.continue_action = bind("objects.continue", self._on_continue_toggled)
        bind("objects.merge", self.canvas.merge_selected)
        bind("objects.delete", self.canvas.delete_selected)
        self.object_edges_action = bind("view.object_edges", self.canvas.set_object_edges)
        self.canvas.object_message.connect(lambda text: self.show_message(text, 4000))

    def _on_continue_toggled(self, on: bool) -> None:
        self.canvas.continue_object = bool(on)
        self.show_message("Strokes continue the object under the cursor" if on
                          else "Each stroke starts a new object", 3000)

    # -- mask operations -------------------------------------------------------------------
    def _bind_mask_ops(self) -> None:
        for op, *_ in MASK_OPS:
            self.actions.bind(f"mask.{op}", partial(self.run_op, op))
        self.actions.bind("mask.copy_previous", self.copy_previous_mask)

    def _ask_int(self, title: str, label: str, value: int) -> int | None:
        n, ok = QInputDialog.getInt(self.parent, title, label, value, 1, 10_000)
        return n if ok else None

    def run_op(self, op: str, amount: int | None = None) -> bool:
        """Apply a mask operation to the selected class; True if the mask changed."""
        doc = self.document()
        if doc is None:
            return False
        if doc.read_only:
            self.report_error("This mask is read-only", doc.read_only)
            return False
        c = self.canvas.class_value
        asks = {"remove_islands": ("Remove small islands", "Smallest island to keep (pixels):", 50),
                "dilate": ("Dilate class", "Grow by (pixels):", 2),
                "erode": ("Erode class", "Shrink by (pixels):", 2)}
        if op in asks and amount is None:
            amount = self._ask_int(*asks[op])
            if amount is None:
                return False
        fns = {"fill_holes": lambda m: maskops.fill_holes(m, c),
               "remove_islands": lambda m: maskops.remove_islands(m, c, amount),
               "dilate": lambda m: maskops.dilate(m, c, amount),
               "erode": lambda m: maskops.erode(m, c, amount),
               "unlabeled_to_background": maskops.unlabeled_to_background,
               "clear_class": lambda m: maskops.clear_class(m, c)}
        edit = doc.apply(fns[op](doc.mask), op.replace("_", " ").capitalize())
        if edit is None:
            self.show_message("Nothing to change", 3000)
            return False
        return True

    def copy_previous_mask(self) -> bool:
        """The previous image's saved mask becomes this one's, as one undo step."""
        doc = self.document()
        project, current = self.image()
        if doc is None or project is None or current is None:
            return False
        i = project.index_of(current.id)
        if i == 0:
            self.report_error("No previous image", f"{current.display_name} is the first image")
            return False
        prev = project.images[i - 1]
        try:
            self.flush()
            mask, objects = project.load_layers(prev, doc.shape)
        except Exception as e:   # MaskError: another size, or an unreadable file
            self.report_error("Mask not copied", f"{prev.display_name}: {e}")
            return False
        # its objects come too (ids are per image: the copy's replace this image's)
        if doc.apply(mask, "Copy previous mask", objects) is None:
            self.show_message("The masks are the same already", 3000)
            return False
        return True

    # -- undo history per image ------------------------------------------------------------
    def history_for(self, image_id: str) -> History:
        """Each image keeps its history while the user switches; oldest dropped past the budget."""
        history = self.histories.pop(image_id, None)
        if history is None:         # not `or`: a History with only redo steps has len() 0
            history = History()
        self.histories[image_id] = history          # most recently used last
        total = sum(h.nbytes for h in self.histories.values())
        for other in list(self.histories):
            if total <= HISTORY_BUDGET or other == image_id:
                break
            total -= self.histories.pop(other).nbytes
        return history

    def forget_histories(self, keep: str | None = None) -> None:
        """After an edit outside the documents (class deleted in every mask), old steps no longer apply."""
        for image_id in list(self.histories):
            if image_id != keep:
                del self.histories[image_id]

    def set_pixel_size(self, mm: float | None) -> None:
        """The pixel size of the image shown (a volume's spacing), for the brush size in mm."""
        self._pixel_mm = mm if mm and mm > 0 else None
        self._show_mm()

    def _show_mm(self) -> None:
        mm = self._pixel_mm
        self.size_spin.setSuffix(" px" if mm else "")
        self._mm_action.setVisible(mm is not None)
        if mm is not None:
            self.mm_spin.blockSignals(True)
            self.mm_spin.setValue(self.canvas.brush_radius * mm)
            self.mm_spin.blockSignals(False)

    def _on_mm_changed(self, value: float) -> None:
        if self._pixel_mm:
            self.set_brush_radius(max(1.0, value / self._pixel_mm))
