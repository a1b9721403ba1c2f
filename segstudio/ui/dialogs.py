"""Small dialogs: shortcuts help, error reports."""

from __future__ import annotations

import logging

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QMessageBox, QTextBrowser, QVBoxLayout, QWidget

log = logging.getLogger(__name__)

SHORTCUTS = [
    ("File", [("Ctrl+Shift+N", "New project from a folder of images"), ("Ctrl+O", "Open project"),
              ("Ctrl+I", "Add images"), ("Ctrl+S", "Save now (everything is saved automatically)"),
              ("Ctrl+Q", "Quit")]),
    ("Edit", [("Ctrl+Z", "Undo"), ("Ctrl+Shift+Z / Ctrl+Y", "Redo")]),
    ("Mask", [("Ctrl+Shift+H", "Fill holes in the selected class"),
              ("Mask menu", "Remove islands, dilate, erode, fill unlabeled, clear class, copy previous")]),
    ("Tools", [("B", "Brush"), ("E", "Eraser"), ("G", "Fill a region (click)"),
               ("L", "Polygon: click corners, double-click or Enter closes; drag for a lasso"),
               ("R", "Rectangle (drag)"), ("W", "Magic wand (click; tolerance in the tool bar)"),
               ("C", "GrabCut (drag a box around an object)"),
               ("S", "Watershed (left-click object seeds, right-click background seeds)"),
               ("T", "Threshold in a box (Shift: dark pixels)"),
               ("Enter / Esc", "Keep / drop a smart tool's proposal"),
               ("[ / ]", "Smaller / larger brush"),
               ("Ctrl+wheel", "Brush size"), ("0 … 9", "Select the class with that id"),
               ("P", "Protect other classes (paint only over unlabeled or the same class)")]),
    ("View", [("Wheel", "Zoom at the cursor"), ("Ctrl++ / Ctrl+-", "Zoom in / out"),
              ("Ctrl+0", "Fit the image to the window"), ("Ctrl+1", "Actual size (1:1)"),
              ("Space+drag, middle drag, arrows", "Pan"), ("M", "Show / hide the mask"), ("O", "Outline only"),
              ("Page Down / Page Up", "Next / previous image"),
              ("Ctrl+R", "Mark the image as reviewed (right-click the list for more)")]),
    ("Help", [("F1", "This list")]),
]


def shortcuts_html() -> str:
    rows = []
    for group, items in SHORTCUTS:
        rows.append(f"<tr><td colspan=2><b>{group}</b></td></tr>")
        rows += [f"<tr><td><code>{k}</code>&nbsp;&nbsp;</td><td>{v}</td></tr>" for k, v in items]
    return "<table>" + "".join(rows) + "</table>"


class ShortcutsDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.text = QTextBrowser()
        self.text.setHtml(shortcuts_html())
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
        self.resize(460, 520)


def error_box(parent: QWidget | None, title: str, message: str, details: str = "") -> QMessageBox:
    """A non-modal message: the window stays usable while it is open."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, parent)
    if details:
        box.setDetailedText(details)
    box.setModal(False)
    box.show()
    return box
