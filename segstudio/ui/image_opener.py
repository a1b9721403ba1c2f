"""ImageOpener: the open image — its document, undo history and save state — and opening another.

An image opens on a worker (pixels, saved mask, ids no class has); the newest request wins. The
opener folds the image being left into its PNG, replays strokes not yet on disk onto the mask
read back, offers to fix unknown class ids, and says once per change what happened:
`image_shown(id)` when an image and its mask are on the canvas, `edited(id)` after each change
of its mask, `history_changed(can_undo, can_redo)`, `entry_changed(entry)` when the image's
cached label status moved. It is given the canvas, the saver, a job starter and a few callables,
not the window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from segstudio.core.classes import UNLABELED, LabelClass, default_color, object_class_ids
from segstudio.core.document import ImageDocument, ReadOnlyError
from segstudio.core.history import History
from segstudio.io.images import LoadedImage
from segstudio.io.masks import MaskError, apply_tiles
from segstudio.io.project import ImageEntry, Project, labelled_fraction
from segstudio.ui.canvas import MaskCanvas
from segstudio.ui.saving import ProjectSaver
from segstudio.workers.job import Job, plain_error

log = logging.getLogger(__name__)

STATUS_DELAY_MS = 600     # the labelled fraction is recomputed this long after the last edit


def load_item(project: Project, entry: ImageEntry, *, on_progress=None, cancel=None):
    """Job body: the image's pixels, its saved mask (or why it is unusable), the ids in the
    mask that no class of the project has (a mask written by another tool), and its instance
    layer (None if it has none)."""
    loaded = project.read_image(entry)
    shape = loaded.data.shape[:2]
    if not project.masks.has_mask(entry.id):       # nothing saved: all unlabeled, nothing to check
        return loaded, np.full(shape, UNLABELED, np.uint8), None, [], None
    try:
        (mask, objects), problem = project.load_layers(entry, shape), None
    except (MaskError, OSError) as e:
        return loaded, np.full(shape, UNLABELED, np.uint8), str(e), [], None
    present = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
    known = {c.id for c in project.classes} | {UNLABELED}
    return loaded, mask, problem, [int(i) for i in present if int(i) not in known], objects


class ImageOpener(QObject):
    """Opens images of `project()` onto `canvas` and keeps the open one's state."""

    image_shown = Signal(str)            # after an image and its mask are on the canvas
    edited = Signal(str)                 # the open image's mask changed (once per change)
    history_changed = Signal(bool, bool)     # can undo, can redo
    entry_changed = Signal(object)       # ImageEntry: the open image's cached status moved

    def __init__(self, canvas: MaskCanvas, saver: ProjectSaver, *,
                 project: Callable[[], Project | None],
                 start_job: Callable[..., Job],
                 report_error: Callable[..., None],
                 show_message: Callable[[str, int], None] = lambda text, ms: None,
                 history_for: Callable[[str], History] = lambda _id: History(),
                 show_content: Callable[..., None] | None = None,
                 add_classes: Callable[[list[LabelClass]], None] = lambda new: None,
                 select: Callable[[str], None] = lambda _id: None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.saver = saver
        self._project = project
        self._start_job = start_job
        self._report_error = report_error
        self._show_message = show_message
        self._history_for = history_for
        # show_content(loaded, doc, same_volume=...): same_volume when the image shown before
        # was a slice of the same volume (the view and the contrast then stay as they are)
        self._show_content = show_content or (
            lambda loaded, doc, same_volume=False, view=None: canvas.set_content(
                loaded.data, doc, keep_view=same_volume, view=view))
        self._shown_series: str | None = None
        self._add_classes = add_classes
        self._select = select
        self._parent = parent
        self.current: ImageEntry | None = None
        self.loaded: LoadedImage | None = None
        self.blocking_job: Job | None = None     # images open after it (masks being rewritten)
        self._blocked_message = ""
        self._waiting_image: str | None = None
        self._generation = 0
        self._restore_view: dict | None = None
        self._boxes: list[QMessageBox] = []      # non-modal offers, kept alive while shown
        self._status_timer = QTimer(self, singleShot=True, interval=STATUS_DELAY_MS)
        self._status_timer.timeout.connect(self.refresh_status)

    # -- opening ---------------------------------------------------------------------------
    def show_first(self) -> None:
        """After a project opens: the image it was left on (at that zoom), else the first."""
        project = self._project()
        if project is None:
            return
        view = project.load_view()
        ids = [e.id for e in project.images]
        first = project.images[0] if project.images else None
        if first is not None and first.series is not None:     # a volume opens mid-way
            slices = project.slices_of(first.series)
            first = slices[len(slices) // 2]
        target = view.get("image") if view.get("image") in ids else (first.id if first else None)
        self._restore_view = view if target == view.get("image") else None
        if target is not None:
            self.show_image(target)
        else:
            self.canvas.set_content(None, None)
            self._show_message("Empty project: add images with File ▸ Add Images… or drop them here", 0)

    def show_image(self, image_id: str) -> None:
        project = self._project()
        if project is None:
            return
        if self.blocking_job is not None:
            self._waiting_image = image_id
            self._show_message(self._blocked_message, 4000)
            return
        if self.current is not None and self.current.id == image_id and self.loaded is not None:
            return
        self.leave_current()
        entry = project.entry(image_id)
        self._generation += 1
        generation = self._generation
        self._show_message(f"Opening {entry.display_name}…", 0)
        self.canvas.set_loading(f"Opening {entry.display_name}…")
        # strokes not on disk yet (a full disk): the reloaded mask gets them back on top
        unsaved = self.saver.pending(entry.id)
        job = Job(load_item, project, entry, name=f"Opening {entry.display_name}")
        job.signals.succeeded.connect(partial(self._on_item_loaded, generation, entry.id, unsaved))
        job.signals.failed.connect(partial(self._on_item_failed, generation, entry))
        self._start_job(job, report_failure=False)
        self._select(image_id)

    def open_after(self, job: Job, message: str) -> None:
        """Images asked for while `job` runs wait for it (`message` says so); the last one opens."""
        self.blocking_job = job
        self._blocked_message = message
        job.signals.finished.connect(self._on_blocking_job_finished)

    def _on_blocking_job_finished(self) -> None:
        self.blocking_job = None
        waiting, self._waiting_image = self._waiting_image, None
        if waiting is not None:
            self.show_image(waiting)

    def _on_item_failed(self, generation: int, entry: ImageEntry, details: str) -> None:
        if generation != self._generation:
            return
        self._report_error(f"Cannot open {entry.display_name}", plain_error(details), details)
        self.canvas.set_content(None, None)
        self.current, self.loaded = None, None

    def _on_item_loaded(self, generation: int, image_id: str, unsaved: list, result) -> None:
        project = self._project()
        if generation != self._generation or project is None:
            return  # the user moved on to another image meanwhile
        try:
            self._show_item(project, image_id, unsaved, result)
        except Exception as e:      # e.g. pixels no display can show: say so, keep running
            log.exception("showing %s failed", image_id)
            entry = project.entry(image_id)
            self._report_error(f"Cannot show {entry.display_name}", str(e) or type(e).__name__)
            self.canvas.set_content(None, None)
            self.current, self.loaded = None, None

    def _show_item(self, project: Project, image_id: str, unsaved: list, result) -> None:
        loaded, mask, problem, stray, objects = result
        entry = project.entry(image_id)
        for tiles in unsaved:       # replaying absolute tiles in order is idempotent
            objects = apply_tiles(tiles, mask, objects)
        if project.read_only and not problem:
            read_only = f"Read-only: {project.read_only}"
        else:
            read_only = problem and (f"{problem}. The mask file was left untouched; fix or "
                                     f"remove it to paint on this image.")
        doc = ImageDocument(mask, history=self._history_for(entry.id), read_only=read_only,
                            objects=objects, object_classes=object_class_ids(project.classes))
        doc.history_changed.connect(self._on_doc_history_changed)
        doc.edited.connect(partial(self._on_doc_edited, entry.id, mask.shape))
        self.current, self.loaded = entry, loaded
        same_volume = entry.series is not None and entry.series == self._shown_series
        self._shown_series = entry.series
        # the view the project was left at, drawn once (not fitted, zoomed, then centred)
        self._show_content(loaded, doc, same_volume=same_volume,
                           view=_restored(self._restore_view, image_id, loaded.data.shape))
        self._on_doc_history_changed(doc.history.can_undo, doc.history.can_redo)
        self._restore_view = None
        h, w = loaded.data.shape[:2]
        self._show_message(f"{entry.display_name}: {w} x {h}, {loaded.data.dtype}", 4000)
        if problem:
            self._report_error("Mask not loaded", doc.read_only or problem)
        for note in project.masks.take_problems(image_id):
            self._report_error("Part of the mask's journal could not be read", note)
        if stray and not doc.read_only:
            self.offer_stray_ids(entry, stray)
        self.image_shown.emit(image_id)

    # -- unknown class ids -----------------------------------------------------------------
    def offer_stray_ids(self, entry: ImageEntry, stray: list[int]) -> QMessageBox:
        """A mask with class ids the project lacks: say so and offer to add or clear them."""
        ids = ", ".join(map(str, stray))
        box = QMessageBox(QMessageBox.Icon.Warning, "Unknown class ids in the mask",
                          f"The mask of {entry.display_name} holds class id(s) {ids} that the "
                          f"project has no class for. Add them as classes, or make those pixels "
                          f"unlabeled (one undo step)?", QMessageBox.StandardButton.NoButton,
                          self._parent)
        add = box.addButton("Add as classes", QMessageBox.ButtonRole.AcceptRole)
        clear = box.addButton("Make unlabeled", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton("Leave as is", QMessageBox.ButtonRole.RejectRole)
        add.clicked.connect(partial(self._add_stray_classes, stray))
        clear.clicked.connect(partial(self._clear_stray_ids, entry.id, stray))
        box.setModal(False)
        box.show()
        self._boxes = [b for b in self._boxes if b.isVisible()] + [box]
        log.warning("mask of %s holds unknown class ids %s", entry.id, ids)
        return box

    def _add_stray_classes(self, stray: list[int]) -> None:
        project = self._project()
        if project is None:
            return
        have = {c.id for c in project.classes}
        self._add_classes([LabelClass(i, f"class {i}", default_color(i)) for i in stray if i not in have])

    def _clear_stray_ids(self, image_id: str, stray: list[int]) -> None:
        doc = self.canvas.document
        if doc is None or self.current is None or self.current.id != image_id:
            return
        new = doc.mask.copy()
        new[np.isin(new, stray)] = UNLABELED
        doc.apply(new, "Unknown class ids to unlabeled")

    # -- the open image --------------------------------------------------------------------
    def leave_current(self) -> None:
        """Finish the stroke, fold the image's journal into its PNG, update its status."""
        doc = self.canvas.document
        if doc is None or self.current is None or self._project() is None:
            return
        if doc.in_stroke:
            doc.end_stroke()
        self.refresh_status()
        self.saver.flush_manifest_soon()
        if self.saver.has_unsaved(self.current.id):
            state = self.saver.state
            self._show_message(
                f"{self.current.display_name}: {state.unsaved} stroke(s) are not on disk yet "
                f"({state.error}); they are kept and saved as soon as the disk allows", 10000)
        self.saver.compact(self.current.id, doc.shape)

    def forget(self) -> None:
        """The project closed: no image is open."""
        self.current = None
        self.loaded = None

    def refresh_status(self) -> None:
        """Recompute the open image's labelled fraction; a cached figure, written to the
        manifest shortly after leaving the image, or on saving; not after each stroke."""
        doc = self.canvas.document
        project = self._project()
        if doc is None or self.current is None or project is None:
            return
        frac = labelled_fraction(doc.mask)
        if abs(frac - self.current.labelled) > 1e-9:
            self.current = project.update_entry(self.current.id, labelled=frac)
            self.entry_changed.emit(self.current)
            self.saver.mark_manifest_dirty()

    def note_edit(self) -> None:
        """A change of the mask that is done (a released stroke, an accepted prediction)."""
        self._status_timer.start()

    def save_view(self) -> None:
        """Which image was open, at what zoom: the project reopens there."""
        project = self._project()
        if project is None or self.current is None:
            return
        cy, cx = self.canvas.view_center()
        try:
            project.save_view({"image": self.current.id, "zoom": self.canvas.zoom, "center": [cy, cx]})
        except OSError as e:
            log.warning("could not save the view state: %s", e)

    def undo(self) -> None:
        self._history_step("undo")

    def redo(self) -> None:
        self._history_step("redo")

    def _history_step(self, which: str) -> None:
        doc = self.canvas.document
        if doc is None:
            return
        try:
            getattr(doc, which)()
        except ReadOnlyError as e:
            self._report_error("This mask is read-only", str(e))

    def _on_doc_edited(self, image_id: str, shape, tiles) -> None:
        self.saver.submit(image_id, shape, tiles)
        self._status_timer.start()
        self.edited.emit(image_id)

    def _on_doc_history_changed(self, can_undo: bool, can_redo: bool) -> None:
        self.history_changed.emit(can_undo, can_redo)


def _restored(view: dict | None, image_id: str, shape: tuple[int, ...]
              ) -> tuple[float, float, float] | None:
    """(zoom, centre y, centre x) of a remembered view of this image; None when there is none
    or it does not read (the image is then fitted)."""
    if not view or view.get("image") != image_id or "zoom" not in view:
        return None
    try:
        cy, cx = view.get("center", (shape[0] / 2, shape[1] / 2))
        return float(view["zoom"]), float(cy), float(cx)
    except (TypeError, ValueError):
        return None
