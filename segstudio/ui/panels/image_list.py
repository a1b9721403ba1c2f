"""ImageListPanel: every image with a thumbnail and its labelling status, filterable.

A volume (a series of slices) is one row: its name, slice count, how many slices are labelled
and its voxel size; the row stands for the slice last shown (the middle one at first), and
choosing it for a split, for prediction or as reviewed acts on every slice.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import QComboBox, QListWidget, QListWidgetItem, QMenu, QVBoxLayout, QWidget

from segstudio.io.entries import SeriesRecord, list_rows, series_status
from segstudio.io.project import SPLITS, STATUSES, ImageEntry

THUMB = 64
STATUS_TEXT = {"unlabeled": "unlabeled", "partly": "partly labelled", "fully": "fully labelled",
               "predicted": "predicted", "reviewed": "reviewed"}
ALL = "All images"
SPLIT_TEXT = {"train": "training", "val": "validation", "test": "testing"}


def thumbnail_array(data: np.ndarray, size: int = THUMB) -> np.ndarray:
    """A small uint8 RGB preview read with strides (cheap on memory-mapped images)."""
    from segstudio.core.display import auto_range, to_display

    h, w = data.shape[:2]
    step = max(1, int(max(h, w) // size))
    small = np.asarray(data[::step, ::step])
    small = to_display(small, auto_range(small))
    if small.ndim == 2:
        small = np.repeat(small[..., None], 3, axis=2)
    return np.ascontiguousarray(small)


def make_thumbnails(items: list[tuple[str, object]], *, on_progress=None, cancel=None) -> dict:
    """Job body: (id, project-reader callable) -> {id: uint8 RGB array or error text}."""
    out: dict[str, object] = {}
    for image_id, read in items:
        if cancel is not None:
            cancel.raise_if_cancelled()
        try:
            out[image_id] = thumbnail_array(read().data)
        except Exception as e:  # a broken image gets a text mark, not a crash
            out[image_id] = str(e)
    return out


class ImageListPanel(QWidget):
    image_activated = Signal(str)
    split_chosen = Signal(object, str)       # image ids, "train" / "val" / "test"
    reviewed_toggled = Signal(object, bool)  # image ids, reviewed or not
    predict_requested = Signal(object)       # image ids

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.filter = QComboBox()
        self.filter.addItems([ALL, *(STATUS_TEXT[s] for s in STATUSES)])
        self.filter.currentIndexChanged.connect(lambda _i: self._apply_filter())
        self.list = QListWidget()
        self.list.setObjectName("imageList")
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setUniformItemSizes(True)
        self.list.currentItemChanged.connect(self._on_list_current_changed)
        self.list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._on_list_context_menu)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.filter)
        layout.addWidget(self.list)
        self._entries: dict[str, ImageEntry] = {}
        self._series: dict[str, SeriesRecord] = {}
        self._items: dict[str, QListWidgetItem] = {}      # row key -> item
        self._rows: dict[str, list[str]] = {}              # row key -> image ids (slice order)
        self._row_of: dict[str, str] = {}                  # image id -> row key
        self._shown: dict[str, str] = {}                   # row key -> the image it stands for
        self._icons: dict[str, QIcon] = {}

    def set_entries(self, entries: list[ImageEntry], current: str | None = None,
                    series: dict[str, SeriesRecord] | None = None) -> None:
        self.list.blockSignals(True)
        self.list.clear()
        self._entries = {e.id: e for e in entries}
        self._series = dict(series or {})
        self._items, self._rows, self._row_of = {}, {}, {}
        for key, members in list_rows(entries):
            key = f"series:{key}" if members[0].series is not None else key
            self._rows[key] = [e.id for e in members]
            for e in members:
                self._row_of[e.id] = key
            shown = self._shown.get(key) if len(members) > 1 or members[0].series else None
            if shown not in self._rows[key]:
                shown = self._rows[key][len(members) // 2]
            self._shown[key] = shown
            label = self._row_label(key)
            item = QListWidgetItem(label)
            item.setToolTip(label)
            item.setData(Qt.ItemDataRole.UserRole, shown)
            icon = next((self._icons[i] for i in (shown, *self._rows[key]) if i in self._icons),
                        None)
            if icon is not None:
                item.setIcon(icon)
            self.list.addItem(item)
            self._items[key] = item
        self.list.blockSignals(False)
        self._apply_filter()
        if current is not None:
            self.select(current, emit=False)

    @staticmethod
    def _label(e: ImageEntry) -> str:
        split = "" if e.split == "train" else f" · {e.split}"
        return f"{e.display_name}\n{STATUS_TEXT[e.status]}{split}"

    def _row_status(self, key: str) -> str:
        return series_status([self._entries[i] for i in self._rows[key]])

    def _row_label(self, key: str) -> str:
        ids = self._rows[key]
        first = self._entries[ids[0]]
        if first.series is None:
            return self._label(first)
        slices = [self._entries[i] for i in ids]
        labelled = sum(e.labelled > 0 for e in slices)
        record = self._series.get(first.series)
        about = record.summary if record is not None else f"{len(slices)} slices"
        split = "" if first.split == "train" else f" · {first.split}"
        return (f"{first.series} · {labelled}/{len(slices)} slices labelled\n"
                f"{about}{split}")

    def update_entry(self, e: ImageEntry) -> None:
        self._entries[e.id] = e
        key = self._row_of.get(e.id)
        item = self._items.get(key) if key is not None else None
        if item is not None:
            label = self._row_label(key)
            item.setText(label)
            item.setToolTip(label)
        self._apply_filter()

    def set_thumbnail(self, image_id: str, rgb: np.ndarray) -> None:
        h, w = rgb.shape[:2]
        qimg = QImage(rgb.data, w, h, w * 3, QImage.Format.Format_RGB888).copy()
        icon = QIcon(QPixmap.fromImage(qimg))
        self._icons[image_id] = icon
        key = self._row_of.get(image_id)
        if key in self._items:
            self._items[key].setIcon(icon)

    def _apply_filter(self) -> None:
        wanted = self.filter.currentText()
        for key, item in self._items.items():
            status = STATUS_TEXT[self._row_status(key)]
            item.setHidden(wanted != ALL and status != wanted)

    def select(self, image_id: str, emit: bool = True) -> None:
        key = self._row_of.get(image_id)
        item = self._items.get(key) if key is not None else None
        if item is None:
            return
        # the row of a volume stands for the slice shown last
        self._shown[key] = image_id
        item.setData(Qt.ItemDataRole.UserRole, image_id)
        if not emit:
            self.list.blockSignals(True)
        self.list.setCurrentItem(item)
        self.list.blockSignals(False)

    def visible_ids(self) -> list[str]:
        """One id per visible row (a volume: the slice it shows)."""
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())
                if not self.list.item(i).isHidden()]

    def selected_ids(self) -> list[str]:
        """Every image of the selected rows (a volume: all its slices)."""
        out: list[str] = []
        for item in self.list.selectedItems():
            key = self._row_of.get(item.data(Qt.ItemDataRole.UserRole))
            out += self._rows.get(key, [])
        return out

    def _on_list_context_menu(self, pos) -> None:
        ids = self.selected_ids()
        if not ids:
            return
        menu = QMenu(self)
        for split in SPLITS:
            act = menu.addAction(f"Use for {SPLIT_TEXT[split]}")
            act.triggered.connect(lambda _c=False, s=split: self.split_chosen.emit(ids, s))
        menu.addSeparator()
        rows = self.list.selectedItems()
        volume = len(rows) == 1 and len(ids) > 1       # one volume row: its slices
        menu.addAction(f"Predict this volume ({len(ids)} slices)" if volume
                       else f"Predict {len(ids)} selected image(s)").triggered.connect(
            lambda: self.predict_requested.emit(ids))
        reviewed = all(self._entries[i].reviewed for i in ids)
        act = menu.addAction("Mark as not reviewed" if reviewed else "Mark as reviewed")
        act.triggered.connect(lambda: self.reviewed_toggled.emit(ids, not reviewed))
        menu.popup(self.list.mapToGlobal(pos))
        self._menu = menu

    def _on_list_current_changed(self, current: QListWidgetItem | None, _prev) -> None:
        if current is not None:
            self.image_activated.emit(current.data(Qt.ItemDataRole.UserRole))
