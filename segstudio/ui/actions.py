"""Every command of the window declared once, as data.

The menus, the tool bar and the shortcuts dialog (F1) are built from one `ActionRegistry`, so
they cannot disagree: a key added here is in the menu and in the dialog. Callbacks are bound by
id when the window (or a controller such as `Editing`) is built, never declared beside the text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QMenuBar, QToolBar, QWidget

MENUS = ("File", "Edit", "Tools", "Mask", "Volume", "Model", "View", "Help")   # menu bar order


@dataclass(frozen=True)
class Action:
    """One command: what it is called, its keys, where it is shown."""

    id: str                            # "tools.brush"
    text: str                          # "Brush"
    shortcuts: tuple[str, ...] = ()    # Qt's portable key text ("Ctrl+Shift+T", "PgDown", "[")
    menu: str = ""                     # one of MENUS; "" for keys with no menu item
    toolbar: bool = False
    checkable: bool = False
    tip: str = ""
    standard: str = ""                 # a QKeySequence.StandardKey name: the platform's keys
    separator: bool = False            # a separator above it in its menu
    section: str = ""                  # the dialog's heading when it has no menu
    canvas: bool = False               # read by the canvas itself: listed, never a QAction
    numbered: bool = False             # one binding per key; the callback gets the key's index
    gesture: str = ""                  # a mouse gesture listed with the keys ("Ctrl+wheel")

    @property
    def heading(self) -> str:
        return self.menu or self.section or "Other"


def key_sequences(action: Action) -> list[QKeySequence]:
    """The keys that trigger `action` on this platform, the primary one first."""
    seqs = [QKeySequence(s) for s in action.shortcuts]
    if action.standard:
        std = QKeySequence.keyBindings(getattr(QKeySequence.StandardKey, action.standard))
        seqs = [*std, *(s for s in seqs if s not in std)]
    return seqs


def key_texts(action: Action) -> list[str]:
    """The keys as the dialog shows them, leaving out the platform's aliases on keys that only
    some keyboards have (Qt's 'Undo', 'Open' and 'Help' keys)."""
    return [seq.toString(QKeySequence.SequenceFormat.NativeText)
            for seq in key_sequences(action) if seq.count() and seq[0].key() < Qt.Key.Key_Help]


def keys_label(action: Action) -> str:
    """'Ctrl+Shift+Z / Ctrl+Y', '0 … 9', 'Space+drag, middle drag / Left / …'."""
    keys = key_texts(action)
    if action.numbered and len(keys) > 2:
        keys = [f"{keys[0]} … {keys[-1]}"]
    return " / ".join([action.gesture, *keys] if action.gesture else keys)


class ActionRegistry:
    """The declared actions in order, their callbacks (bound by id) and their QActions.

    `owner` (the window) receives every QAction, so its key works even where no menu shows it.
    """

    def __init__(self, actions: Iterable[Action] = (), owner: QWidget | None = None) -> None:
        self.owner = owner
        self._actions: dict[str, Action] = {}
        self._qactions: dict[str, list[QAction]] = {}
        self.add(*actions)

    # -- declarations ----------------------------------------------------------------------
    def add(self, *actions: Action) -> None:
        """Declare actions; an id or a key already declared is refused (one key, one action).

        The same declaration twice is one: a controller may add its actions where the window
        already did."""
        for action in actions:
            if self._actions.get(action.id) == action:
                continue
            if action.id in self._actions:
                raise ValueError(f"action {action.id!r} is declared twice, differently")
            for key in action.shortcuts:
                other = self.find_key(key)
                if other is not None:
                    raise ValueError(f"{action.id!r} and {other.id!r} both use the key {key!r}; "
                                     f"give one of them another key")
            self._actions[action.id] = action

    def find_key(self, key: str) -> Action | None:
        seq = QKeySequence(key)
        for action in self._actions.values():
            if any(QKeySequence(s) == seq for s in action.shortcuts):
                return action
        return None

    def conflicts(self) -> list[tuple[str, str, str]]:
        """(key, first id, second id) for each key two actions share, the platform's standard
        keys resolved (they need a running QGuiApplication)."""
        seen: dict[str, str] = {}
        shared = []
        for action in self:
            for seq in key_sequences(action):
                key = seq.toString(QKeySequence.SequenceFormat.PortableText)
                if seen.setdefault(key, action.id) != action.id:
                    shared.append((key, seen[key], action.id))
        return shared

    def find(self, menu: str, text: str) -> Action | None:
        """The action shown as `text` in `menu` (for code that still names actions by text)."""
        return next((a for a in self._actions.values() if a.menu == menu and a.text == text), None)

    def __getitem__(self, action_id: str) -> Action:
        try:
            return self._actions[action_id]
        except KeyError:
            raise KeyError(f"no action {action_id!r}; declared: {sorted(self._actions)}") from None

    def __contains__(self, action_id: object) -> bool:
        return action_id in self._actions

    def __iter__(self) -> Iterator[Action]:
        return iter(list(self._actions.values()))

    # -- Qt --------------------------------------------------------------------------------
    def bind(self, action_id: str, callback: Callable) -> QAction:
        """Connect `callback` to the action; returns its QAction (the first, when numbered)."""
        action = self[action_id]
        if action.canvas:
            raise ValueError(f"{action_id!r} is read by the canvas itself; it takes no callback")
        acts = self.qactions(action_id)
        for i, act in enumerate(acts):
            act.triggered.connect(partial(callback, i) if action.numbered else callback)
        return acts[0]

    def qaction(self, action_id: str) -> QAction:
        return self.qactions(action_id)[0]

    def qactions(self, action_id: str) -> list[QAction]:
        """The QAction(s) of an action, made on first use (one per key when numbered)."""
        if action_id not in self._qactions:
            action = self[action_id]
            seqs = key_sequences(action)
            groups = [[s] for s in seqs] if action.numbered else [seqs]
            acts = []
            for keys in groups:
                act = QAction(action.text, self.owner)
                act.setShortcuts(keys)
                act.setCheckable(action.checkable)
                if action.tip:
                    act.setStatusTip(action.tip)
                if self.owner is not None:
                    self.owner.addAction(act)
                acts.append(act)
            self._qactions[action_id] = acts
        return self._qactions[action_id]

    def is_bound(self, action_id: str) -> bool:
        return action_id in self._qactions

    def build_menus(self, bar: QMenuBar) -> dict[str, QMenu]:
        """One menu per name in MENUS, holding the bound actions declared for it, in order."""
        menus: dict[str, QMenu] = {}
        for name in MENUS:
            items = [a for a in self if a.menu == name and self.is_bound(a.id)]
            if not items:
                continue
            menu = menus[name] = bar.addMenu(f"&{name}")
            for action in items:
                if action.separator and not menu.isEmpty():
                    menu.addSeparator()
                menu.addActions(self.qactions(action.id))
        return menus

    def fill_toolbar(self, bar: QToolBar) -> None:
        for action in self:
            if action.toolbar and self.is_bound(action.id):
                bar.addActions(self.qactions(action.id))


# -- the window's own actions ---------------------------------------------------------------
# (Editing declares the Tools and Mask menus in editing.py; the canvas its own keys in canvas.py)
WINDOW_ACTIONS = (
    Action("file.new", "New Project from Folder…", ("Ctrl+Shift+N",), menu="File"),
    Action("file.open", "Open Project…", standard="Open", menu="File"),
    Action("file.sample", "Open Sample Project", menu="File"),
    Action("file.add_images", "Add Images…", ("Ctrl+I",), menu="File", separator=True),
    Action("file.add_folder", "Add Folder…", ("Ctrl+Shift+O",), menu="File",
           tip="Every image under a folder; a DICOM series or a NIfTI volume is one item"),
    Action("file.import_masks", "Import Masks…", ("Ctrl+Shift+I",), menu="File",
           tip="Masks from a folder, COCO, YOLO-seg or labelme"),
    Action("file.export", "Export Dataset…", ("Ctrl+E",), menu="File",
           tip="Indexed PNG, COCO, YOLO-seg, VOC, NIfTI or DICOM-SEG"),
    Action("file.save", "Save", standard="Save", menu="File",
           tip="Everything is saved after each stroke; this waits until it is on disk"),
    # Ctrl+Q everywhere: the platform's Quit key is none at all on Windows
    Action("file.quit", "Quit", ("Ctrl+Q",), menu="File", separator=True),
    Action("edit.undo", "Undo", standard="Undo", menu="Edit"),
    Action("edit.redo", "Redo", ("Ctrl+Shift+Z", "Ctrl+Y"), menu="Edit"),
    Action("view.zoom_in", "Zoom In", standard="ZoomIn", menu="View"),
    Action("view.zoom_out", "Zoom Out", standard="ZoomOut", menu="View"),
    Action("view.fit", "Fit to Window", ("Ctrl+0",), menu="View"),
    Action("view.actual_size", "Actual Size", ("Ctrl+1",), menu="View"),
    Action("view.mask", "Show Mask", ("M",), menu="View", checkable=True),
    Action("view.outline", "Outline Only", ("O",), menu="View", checkable=True),
    Action("view.reset_layout", "Reset Layout", menu="View",
           tip="Put the panels back where they started"),
    Action("view.next_image", "Next Image", ("PgDown",), menu="View", separator=True),
    Action("view.previous_image", "Previous Image", ("PgUp",), menu="View"),
    Action("view.reviewed", "Mark Image as Reviewed", ("Ctrl+R",), menu="View",
           tip="Reviewed images are shown as such in the image list"),
    Action("volume.interpolate", "Interpolate Between Labelled Slices", ("I",), menu="Volume",
           tip="Propose a fill of the unlabeled slices between labelled ones (yellow)"),
    Action("volume.apply_interpolation", "Apply Interpolation", menu="Volume",
           tip="Write the proposed interpolation (Return on the canvas); one undo step"),
    Action("volume.drop_interpolation", "Drop Interpolation", menu="Volume",
           tip="Forget the proposed interpolation (Esc on the canvas)"),
    Action("volume.copy_next", "Copy Mask to Next Slice", ("Ctrl+Shift+C",), menu="Volume",
           tip="This slice's labels on the next slice, where it is unlabeled"),
    Action("help.shortcuts", "Keyboard Shortcuts", standard="HelpContents", menu="Help"),
    Action("help.about", "About SegStudio", menu="Help"),
    Action("classes.select", "Select the class with that id", tuple("0123456789"),
           section="Tools", numbered=True),
)

# The Model menu. ModelLoop binds these by id: registry.bind("model.train", self.start_training).
MODEL_ACTIONS = (
    Action("model.train", "Train", ("Ctrl+T",), menu="Model"),
    Action("model.cancel_training", "Cancel Training", menu="Model"),
    Action("model.retrain", "Retrain from Active Run", ("Ctrl+Shift+T",), menu="Model"),
    Action("model.predict", "Predict Image", ("Ctrl+P",), menu="Model", separator=True),
    Action("model.predict_all", "Predict All Images", menu="Model"),
    Action("model.predict_volume", "Predict Volume", ("Ctrl+Shift+P",), menu="Model",
           tip="Every slice of the volume open, as one job"),
    Action("model.accept", "Accept Prediction", ("A",), menu="Model"),
    Action("model.measure", "Measure (Metrics)", ("Ctrl+M",), menu="Model", separator=True),
    Action("model.rank", "Rank Images to Label", menu="Model"),
    Action("model.next_to_label", "Next Image to Label", ("N",), menu="Model"),
    Action("model.export", "Export Model…", menu="Model", separator=True,
           tip="The active run's checkpoint, model card and an ONNX file"),
    Action("model.doctor", "Device Doctor…", menu="Model"),
)

# Which model answers the Click tool (K). ui/click_models.py binds these and puts them at the
# end of the Model menu; the choice itself is the "Click model" tool bar's list.
CLICK_MODEL_ACTIONS = (
    Action("model.train_click", "Train Click Model", menu="Model", separator=True,
           tip="Learn the Click tool from this project's labelled objects (a background job)"),
    Action("model.add_sam_files", "Add SAM Model File…", menu="Model",
           tip="A Segment-Anything-style ONNX encoder + decoder pair (pick both files)"),
    Action("model.add_sam_folder", "Add SAM Model Folder…", menu="Model",
           tip="A folder holding a SAM-style encoder and decoder .onnx (X-AnyLabeling's layout)"),
)
