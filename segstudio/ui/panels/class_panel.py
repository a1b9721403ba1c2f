"""ClassPanel: the project's classes — add, rename, recolour, reorder, delete, select."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (QColorDialog, QGridLayout, QInputDialog, QListWidget,
                               QListWidgetItem, QMenu, QMessageBox, QPushButton, QVBoxLayout,
                               QWidget)

from segstudio.core.classes import BACKGROUND, LabelClass, default_color, next_class_id


def swatch(color: str, size: int = 14) -> QIcon:
    pm = QPixmap(size, size)
    pm.fill(QColor(color))
    return QIcon(pm)


OBJECTS_TIP = ("Objects: each pixel of this class also belongs to one object (a nucleus, a cell), "
               "so touching objects stay apart; each stroke paints a new object")


class ClassPanel(QWidget):
    """Edits a list of LabelClass; emits the whole new list (the window saves it)."""

    class_selected = Signal(int)           # class id
    classes_edited = Signal(object)        # list[LabelClass]
    class_deleted = Signal(int)            # class id whose pixels must become unlabeled

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._classes: list[LabelClass] = []
        self.list = QListWidget()
        self.list.setObjectName("classList")
        self.list.currentRowChanged.connect(self._on_list_row_changed)
        self.list.itemDoubleClicked.connect(lambda _i: self.rename_current())
        self.list.itemChanged.connect(self._on_list_item_changed)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._on_list_context_menu)
        buttons = QGridLayout()     # two rows: keeps the panel narrow
        self.add_button = QPushButton("Add")
        self.rename_button = QPushButton("Rename")
        self.color_button = QPushButton("Colour")
        self.up_button = QPushButton("▲")
        self.down_button = QPushButton("▼")
        self.delete_button = QPushButton("Delete")
        self.objects_button = QPushButton("Objects")
        self.objects_button.setCheckable(True)
        for i, (b, tip) in enumerate(((self.add_button, "Add a class"),
                                      (self.rename_button, "Rename (double-click)"),
                                      (self.color_button, "Change the colour"),
                                      (self.up_button, "Move up"), (self.down_button, "Move down"),
                                      (self.delete_button, "Delete the class"),
                                      (self.objects_button, OBJECTS_TIP))):
            b.setToolTip(tip)
            buttons.addWidget(b, i // 3, i % 3)
        self.objects_button.clicked.connect(lambda on: self.set_current_objects(bool(on)))
        self.add_button.clicked.connect(self.add_class)
        self.rename_button.clicked.connect(self.rename_current)
        self.color_button.clicked.connect(self.recolor_current)
        self.up_button.clicked.connect(lambda: self.move_current(-1))
        self.down_button.clicked.connect(lambda: self.move_current(1))
        self.delete_button.clicked.connect(self.delete_current)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.list)
        layout.addLayout(buttons)

    @property
    def classes(self) -> list[LabelClass]:
        return list(self._classes)

    def set_classes(self, classes: list[LabelClass], select: int | None = None) -> None:
        current = self.current_id() if select is None else select
        self._classes = list(classes)
        self.list.blockSignals(True)
        self.list.clear()
        for c in self._classes:
            key = f"  [{c.id}]" if c.id <= 9 else ""
            kind = "  · objects" if c.objects else ""
            item = QListWidgetItem(swatch(c.color), f"{c.name}{key}{kind}")
            item.setData(Qt.ItemDataRole.UserRole, c.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if c.visible else Qt.CheckState.Unchecked)
            what = ("objects: each stroke paints a new object" if c.objects
                    else "right-click to mark it as objects")
            item.setToolTip(f"class id {c.id}; key {c.id} selects it; untick to hide it; {what}")
            self.list.addItem(item)
        self.list.blockSignals(False)
        ids = [c.id for c in self._classes]
        if current in ids:
            self.list.setCurrentRow(ids.index(current))
        elif self._classes:
            self.list.setCurrentRow(min(1, len(self._classes) - 1))
        self._sync_objects_button()

    def current_id(self) -> int | None:
        item = self.list.currentItem()
        return None if item is None else int(item.data(Qt.ItemDataRole.UserRole))

    def select_id(self, class_id: int) -> bool:
        for row, c in enumerate(self._classes):
            if c.id == class_id:
                self.list.setCurrentRow(row)
                return True
        return False

    def _on_list_row_changed(self, row: int) -> None:
        if 0 <= row < len(self._classes):
            self._sync_objects_button()
            self.class_selected.emit(self._classes[row].id)

    def _sync_objects_button(self) -> None:
        row = self.list.currentRow()
        c = self._classes[row] if 0 <= row < len(self._classes) else None
        self.objects_button.setChecked(bool(c and c.objects))
        self.objects_button.setEnabled(c is not None and c.id != BACKGROUND)

    def set_current_objects(self, on: bool) -> None:
        """Mark the current class as objects (instances) or back to plain pixels."""
        row = self.list.currentRow()
        if row < 0:
            return
        c = self._classes[row]
        if c.id == BACKGROUND:
            self._sync_objects_button()
            return
        if c.objects != on:
            self._edit([*self._classes[:row], replace(c, objects=on), *self._classes[row + 1:]])
        self._sync_objects_button()

    def _on_list_context_menu(self, pos: QPoint) -> None:
        item = self.list.itemAt(pos)
        if item is None:
            return
        self.list.setCurrentItem(item)
        c = self._classes[self.list.row(item)]
        menu = QMenu(self)
        act = menu.addAction("Objects (instances)")
        act.setCheckable(True)
        act.setChecked(c.objects)
        act.setEnabled(c.id != BACKGROUND)
        act.setToolTip(OBJECTS_TIP)
        act.toggled.connect(self.set_current_objects)
        menu.exec(self.list.viewport().mapToGlobal(pos))

    def _on_list_item_changed(self, item: QListWidgetItem) -> None:
        row = self.list.row(item)
        visible = item.checkState() == Qt.CheckState.Checked
        if 0 <= row < len(self._classes) and self._classes[row].visible != visible:
            c = self._classes[row]
            self._edit([*self._classes[:row], replace(c, visible=visible),
                        *self._classes[row + 1:]])

    def _edit(self, classes: list[LabelClass], select: int | None = None) -> None:
        self.set_classes(classes, select)
        self.classes_edited.emit(list(classes))

    def add_class(self, name: str | None = None) -> LabelClass | None:
        if not name:
            name, ok = QInputDialog.getText(self, "Add class", "Name of the new class:")
            if not ok or not name.strip():
                return None
        name = name.strip()
        if any(c.name.casefold() == name.casefold() for c in self._classes):
            QMessageBox.warning(self, "Add class", f"A class named '{name}' exists already.")
            return None
        cid = next_class_id(self._classes)
        cls = LabelClass(cid, name, default_color(cid))
        self._edit([*self._classes, cls], select=cid)
        return cls

    def rename_current(self, name: str | None = None) -> None:
        row = self.list.currentRow()
        if row < 0:
            return
        c = self._classes[row]
        if name is None:
            name, ok = QInputDialog.getText(self, "Rename class", "New name:", text=c.name)
            if not ok:
                return
        name = name.strip()
        if not name or any(o.name.casefold() == name.casefold() and o.id != c.id for o in self._classes):
            QMessageBox.warning(self, "Rename class", f"'{name}' is empty or used by another class.")
            return
        self._edit([*self._classes[:row], replace(c, name=name), *self._classes[row + 1:]])

    def recolor_current(self, color: str | None = None) -> None:
        row = self.list.currentRow()
        if row < 0:
            return
        c = self._classes[row]
        if color is None:
            picked = QColorDialog.getColor(QColor(c.color), self, f"Colour of '{c.name}'")
            if not picked.isValid():
                return
            color = picked.name()
        self._edit([*self._classes[:row], replace(c, color=color), *self._classes[row + 1:]])

    def move_current(self, delta: int) -> None:
        row = self.list.currentRow()
        new = row + delta
        if row < 0 or not 0 <= new < len(self._classes):
            return
        classes = list(self._classes)
        classes[row], classes[new] = classes[new], classes[row]
        self._edit(classes, select=classes[new].id)

    def delete_current(self, confirm: bool = True) -> None:
        row = self.list.currentRow()
        if row < 0:
            return
        c = self._classes[row]
        if c.id == BACKGROUND:
            QMessageBox.information(self, "Delete class", "The background class cannot be deleted.")
            return
        if confirm:
            answer = QMessageBox.question(
                self, "Delete class",
                f"Delete '{c.name}'? Its pixels become unlabeled in every mask. "
                "This cannot be undone.")
            if answer != QMessageBox.StandardButton.Yes:
                return
        self._edit([o for o in self._classes if o.id != c.id])
        self.class_deleted.emit(c.id)
