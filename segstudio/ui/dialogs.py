"""Small dialogs: the shortcuts help (from the action registry), error reports."""

from __future__ import annotations

import logging
from html import escape

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QMessageBox, QTextBrowser, QVBoxLayout, QWidget

from segstudio.ui.actions import MENUS, ActionRegistry, keys_label

log = logging.getLogger(__name__)


def shortcut_rows(actions: ActionRegistry) -> list[tuple[str, list[tuple[str, str]]]]:
    """(heading, [(keys, text), ...]) for every action with a key or a gesture, by menu.

    Menu items first in each heading, then the keys with no menu item (class ids, canvas keys).
    """
    headings = [*MENUS, *dict.fromkeys(a.heading for a in actions if a.heading not in MENUS)]
    groups = []
    for heading in headings:
        listed = [a for a in actions if a.heading == heading and (a.shortcuts or a.standard or a.gesture)]
        listed.sort(key=lambda a: not a.menu)
        rows = [(keys_label(a), a.text.rstrip("…")) for a in listed]
        rows = [(k, t) for k, t in rows if k]
        if rows:
            groups.append((heading, rows))
    return groups


def shortcuts_html(actions: ActionRegistry) -> str:
    rows = []
    for group, items in shortcut_rows(actions):
        rows.append(f"<tr><td colspan=2><b>{escape(group)}</b></td></tr>")
        rows += [f"<tr><td><code>{escape(k)}</code>&nbsp;&nbsp;</td><td>{escape(v)}</td></tr>"
                 for k, v in items]
    return "<table>" + "".join(rows) + "</table>"


class ShortcutsDialog(QDialog):
    """Every key of the window, generated from its action registry (so it cannot drift)."""

    def __init__(self, actions: ActionRegistry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.text = QTextBrowser()
        self.text.setHtml(shortcuts_html(actions))
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
