"""The Tools and Mask menus, the tool bar and tool options of the main window."""

from __future__ import annotations

from functools import partial

from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QInputDialog, QLabel, QSpinBox, QToolBar

from segstudio.core.history import History
from segstudio.edit import maskops

# name, menu text, shortcut
TOOL_ENTRIES = [("brush", "Brush", "B"), ("eraser", "Eraser", "E"), ("fill", "Fill", "G"),
                ("polygon", "Polygon / Lasso", "L"), ("rectangle", "Rectangle", "R"),
                ("wand", "Magic Wand", "W"), ("grabcut", "GrabCut", "C"),
                ("watershed", "Watershed", "S"), ("threshold", "Threshold", "T")]
HISTORY_BUDGET = 256 * 2**20     # all images' undo histories together


class Editing:
    """Builds and serves the editing actions; the window keeps one of these."""

    def __init__(self, window) -> None:
        self.w = window
        self.canvas = window.canvas
        self.histories: dict[str, History] = {}
        self._build_tools()
        self._build_mask_menu()

    # -- tools -----------------------------------------------------------------------------
    def _build_tools(self) -> None:
        w = self.w
        menu = w.menuBar().addMenu("&Tools")
        group = QActionGroup(w)
        self.tool_actions: dict[str, QAction] = {}
        for name, text, key in TOOL_ENTRIES:
            act = w._action(menu, text, partial(self.set_tool, name), key, checkable=True)
            tool = self.canvas.tools.get(name)
            if tool is not None:
                act.setStatusTip(tool.hint)
            group.addAction(act)
            self.tool_actions[name] = act
        self.tool_actions["brush"].setChecked(True)
        menu.addSeparator()
        w._action(menu, "Smaller Brush", lambda: self.set_brush_radius(self.canvas.brush_radius / 1.25), "[")
        w._action(menu, "Larger Brush", lambda: self.set_brush_radius(self.canvas.brush_radius * 1.25), "]")
        self.protect_action = w._action(menu, "Protect Other Classes", self._on_protect_toggled, "P",
                                        checkable=True,
                                        tip="Paint only over unlabeled pixels or the selected class")

        bar = QToolBar("Tools")
        bar.setObjectName("toolbarTools")
        for act in self.tool_actions.values():
            bar.addAction(act)
        bar.addSeparator()
        self.size_spin = QSpinBox()
        self.size_spin.setRange(1, 500)
        self.size_spin.setPrefix("size ")
        self.size_spin.setToolTip("Brush radius in image pixels ([ and ], Ctrl+wheel)")
        self.size_spin.setValue(int(self.canvas.brush_radius))
        self.size_spin.valueChanged.connect(lambda v: self.set_brush_radius(float(v)))
        bar.addWidget(self.size_spin)
        self.canvas.brush_changed.connect(self._on_canvas_brush_changed)
        self.tolerance_spin = QDoubleSpinBox()
        self.tolerance_spin.setRange(0, 65535)
        self.tolerance_spin.setValue(self.canvas.tools["wand"].tolerance)
        self.tolerance_spin.setPrefix("tolerance ")
        self.tolerance_spin.setToolTip("Magic wand: how far from the clicked value a pixel may be")
        self.tolerance_spin.valueChanged.connect(self._on_tolerance_changed)
        bar.addWidget(self.tolerance_spin)
        self.connect8 = QCheckBox("8-connected fill")
        self.connect8.setToolTip("Fill through diagonal neighbours too")
        self.connect8.toggled.connect(self._on_connectivity_toggled)
        bar.addWidget(self.connect8)
        bar.addAction(self.protect_action)
        self.hint_label = QLabel("")
        bar.addWidget(self.hint_label)
        w.addToolBar(bar)
        self.toolbar = bar

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

    def _on_protect_toggled(self, on: bool) -> None:
        self.canvas.protect_others = bool(on)

    def _on_tolerance_changed(self, value: float) -> None:
        self.canvas.tools["wand"].tolerance = float(value)

    def _on_connectivity_toggled(self, on: bool) -> None:
        self.canvas.tools["fill"].connectivity = 8 if on else 4

    # -- mask operations -------------------------------------------------------------------
    def _build_mask_menu(self) -> None:
        w = self.w
        menu = w.menuBar().addMenu("&Mask")
        w._action(menu, "Fill Holes in Class", lambda: self.run_op("fill_holes"), "Ctrl+Shift+H")
        w._action(menu, "Remove Small Islands of Class…", lambda: self.run_op("remove_islands"))
        w._action(menu, "Dilate Class…", lambda: self.run_op("dilate"))
        w._action(menu, "Erode Class…", lambda: self.run_op("erode"))
        menu.addSeparator()
        w._action(menu, "Fill Unlabeled as Background", lambda: self.run_op("unlabeled_to_background"))
        w._action(menu, "Clear Class", lambda: self.run_op("clear_class"))
        w._action(menu, "Copy Mask from Previous Image", self.copy_previous_mask)

    def _ask_int(self, title: str, label: str, value: int) -> int | None:
        n, ok = QInputDialog.getInt(self.w, title, label, value, 1, 10_000)
        return n if ok else None

    def run_op(self, op: str, amount: int | None = None) -> bool:
        """Apply a mask operation to the selected class; True if the mask changed."""
        doc = self.canvas.document
        if doc is None:
            return False
        if doc.read_only:
            self.w.report_error("This mask is read-only", doc.read_only)
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
            self.w.statusBar().showMessage("Nothing to change", 3000)
            return False
        self.w._on_canvas_stroke_finished()
        return True

    def copy_previous_mask(self) -> bool:
        w = self.w
        doc, project, current = self.canvas.document, w.project, w.current
        if doc is None or project is None or current is None:
            return False
        i = project.index_of(current.id)
        if i == 0:
            w.report_error("No previous image", f"{current.display_name} is the first image")
            return False
        prev = project.images[i - 1]
        try:
            w.saver.flush()
            mask = project.load_mask(prev, doc.shape)
        except Exception as e:   # MaskError: another size, or an unreadable file
            w.report_error("Mask not copied", f"{prev.display_name}: {e}")
            return False
        if doc.apply(mask, "Copy previous mask") is None:
            w.statusBar().showMessage("The masks are the same already", 3000)
            return False
        w._on_canvas_stroke_finished()
        return True

    # -- undo history per image ------------------------------------------------------------
    def history_for(self, image_id: str) -> History:
        """Each image keeps its history while the user switches; oldest dropped past the budget."""
        history = self.histories.pop(image_id, None) or History()
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

