"""MainWindow: image list, canvas, classes, display; starts jobs and draws, nothing more."""

from __future__ import annotations

import logging
from functools import partial

import numpy as np
from PySide6.QtCore import QThreadPool, QTimer, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent
from PySide6.QtWidgets import (QDockWidget, QLabel, QMainWindow, QMenu, QMessageBox,
                               QStackedWidget, QVBoxLayout, QWidget)

from segstudio.core.classes import UNLABELED, LabelClass, default_color
from segstudio.core.display import CT_PRESETS, DisplayRange, auto_range, full_range, sample_pixels
from segstudio.core.document import ImageDocument, ReadOnlyError
from segstudio.io.images import LoadedImage
from segstudio.io.masks import MaskError
from segstudio.io.project import ImageEntry, Project, ProjectError, labelled_fraction
from segstudio.io.userdirs import add_recent_project, data_dir, recent_projects
from segstudio.edit.maskops import clear_class
from segstudio.ui.actions import MODEL_ACTIONS, WINDOW_ACTIONS, Action, ActionRegistry
from segstudio.ui.canvas import MaskCanvas, zoom_percent
from segstudio.ui.dialogs import ShortcutsDialog, error_box
from segstudio.ui.editing import Editing
from segstudio.ui.file_menu import FileMenuMixin
from segstudio.ui.jobs_view import JobsIndicator
from segstudio.ui.logging_setup import install_file_log
from segstudio.ui.model_loop import ModelLoop
from segstudio.ui.saving import ProjectSaver
from segstudio.ui.settings import app_settings, value
from segstudio.ui.welcome import HintBanner, WelcomePage
from segstudio.ui.panels.class_panel import ClassPanel
from segstudio.ui.panels.display_panel import AUTO, FULL, HEADER, MANUAL, DisplayPanel
from segstudio.ui.panels.image_list import ImageListPanel, make_thumbnails
from segstudio.workers.job import Job, plain_error  # noqa: F401 (tests import it here)

log = logging.getLogger(__name__)


def load_item(project: Project, entry: ImageEntry, *, on_progress=None, cancel=None):
    """Job body: the image's pixels, its saved mask (or why it is unusable), and the ids in the
    mask that no class of the project has (a mask written by another tool)."""
    loaded = project.read_image(entry)
    shape = loaded.data.shape[:2]
    try:
        mask, problem = project.load_mask(entry, shape), None
    except (MaskError, OSError) as e:
        mask, problem = np.full(shape, UNLABELED, np.uint8), str(e)
    present = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
    known = {c.id for c in project.classes} | {UNLABELED}
    return loaded, mask, problem, [int(i) for i in present if int(i) not in known]


def default_preset(loaded: LoadedImage) -> str:
    """Colour photos as they are; grey, 16-bit and float data stretched to be visible."""
    data = loaded.data
    if loaded.info.window:
        return HEADER
    if data.dtype == np.uint8 and data.ndim == 3 and data.shape[2] >= 3 and not _is_grey(data):
        return FULL
    return AUTO


def _is_grey(data: np.ndarray) -> bool:
    s = sample_pixels(data, 4096)
    return bool(np.array_equal(s[..., 0], s[..., 1]) and np.array_equal(s[..., 1], s[..., 2]))


class MainWindow(FileMenuMixin, QMainWindow):
    image_shown = Signal(str)            # after an image and its mask are on the canvas
    images_added = Signal(list)          # ids of images just added to the project

    def __init__(self, project: Project | None = None, *, autosave_delay: float = 0.05) -> None:
        super().__init__()
        self.setWindowTitle("SegStudio")
        self.setAcceptDrops(True)
        self.resize(1280, 820)
        self.project: Project | None = None
        self.current: ImageEntry | None = None
        self.loaded: LoadedImage | None = None
        self.errors: list[str] = []
        self.saver = ProjectSaver(self.report_error, autosave_delay=autosave_delay)
        self.saver.saved.connect(self._on_saver_saved)
        self.saver.changed.connect(self._on_saver_changed)
        self._jobs: set[Job] = set()
        self._load_generation = 0
        self._class_job: Job | None = None
        self._waiting_image: str | None = None
        self._restore_view: dict | None = None
        self._preset: str | None = None   # None: chosen per image (natural colour or auto contrast)
        self._message_boxes: list = []

        self.log_path = install_file_log()
        self.settings = app_settings()
        self.canvas = MaskCanvas()
        self.hint = HintBanner()
        self.hint.dismissed.connect(lambda: self.settings.setValue("hint_dismissed", True))
        self.hint.hide()
        canvas_page = QWidget()
        column = QVBoxLayout(canvas_page)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.hint)
        column.addWidget(self.canvas, 1)
        self.welcome = WelcomePage()
        self.welcome.sample_requested.connect(self.open_sample)
        self.welcome.new_requested.connect(self.new_project_dialog)
        self.welcome.open_requested.connect(self.open_project_dialog)
        self.welcome.recent_requested.connect(self.open_project_path)
        self.pages = QStackedWidget()
        self.pages.addWidget(self.welcome)
        self.pages.addWidget(canvas_page)
        self.setCentralWidget(self.pages)
        self.images = ImageListPanel()
        self.class_panel = ClassPanel()
        self.display_panel = DisplayPanel()
        left = self._dock("Images", self.images, Qt.DockWidgetArea.LeftDockWidgetArea)
        right = self._dock("Classes", self.class_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        display = self._dock("Display", self.display_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self._docks_to_size = (left, right, display)
        self._build_status_bar()
        self._build_actions()

        self.images.image_activated.connect(self.show_image)
        self.images.split_chosen.connect(self.set_split)
        self.images.reviewed_toggled.connect(self.set_reviewed)
        self.class_panel.class_selected.connect(self._on_class_selected)
        self.class_panel.classes_edited.connect(self._on_classes_edited)
        self.class_panel.class_deleted.connect(self._on_class_deleted)
        self.display_panel.preset_chosen.connect(self.apply_preset)
        self.display_panel.range_edited.connect(self._on_range_edited)
        self.display_panel.opacity_changed.connect(self.canvas.set_opacity)
        self.canvas.hovered.connect(self._on_canvas_hovered)
        self.canvas.view_changed.connect(self._on_canvas_view_changed)
        self.canvas.stroke_finished.connect(self._on_canvas_stroke_finished)
        self.canvas.paint_refused.connect(self._on_canvas_paint_refused)
        self._last_refusal = ""
        self._status_timer = QTimer(self, singleShot=True, interval=600)
        self._status_timer.timeout.connect(self._refresh_current_status)
        left, right, display = self._docks_to_size
        # the canvas gets the room: side panels start narrow (the user can drag them wider)
        self.resizeDocks([left, right], [220, 400], Qt.Orientation.Horizontal)
        self.resizeDocks([right, display, self.model_loop.docks[0]], [120, 140, 520],
                         Qt.Orientation.Vertical)
        self._default_layout = self.saveState()
        self._restore_settings()
        if project is not None:
            self.open_project(project)
        else:
            self.show_welcome()

    # -- layout ----------------------------------------------------------------------------
    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock{title}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_status_bar(self) -> None:
        self.jobs_view = JobsIndicator()
        self.statusBar().addPermanentWidget(self.jobs_view)
        self.position_label = QLabel("")
        self.value_label = QLabel("")
        self.class_label = QLabel("")
        self.zoom_label = QLabel("")
        # one persistent word on what is not on disk (or cannot be), instead of a box per stroke
        self.save_state_label = self.saver.label
        for w in (self.save_state_label, self.position_label, self.value_label,
                  self.class_label, self.zoom_label):
            self.statusBar().addPermanentWidget(w)

    def _build_actions(self) -> None:
        """The menus, the tool bar and the F1 dialog, all from one registry (segstudio/ui/actions.py)."""
        reg = self.action_registry = ActionRegistry((*WINDOW_ACTIONS, *MODEL_ACTIONS), owner=self)
        bind = reg.bind
        for action_id, slot in (
                ("file.new", self.new_project_dialog), ("file.open", self.open_project_dialog),
                ("file.sample", self.open_sample), ("file.add_images", self.add_images_dialog),
                ("file.import_masks", self.import_masks_dialog),
                ("file.export", self.export_dataset_dialog), ("file.save", self.save_now),
                ("file.quit", self.close),
                ("view.zoom_in", lambda: self.canvas.zoom_by(1.25)),
                ("view.zoom_out", lambda: self.canvas.zoom_by(0.8)),
                ("view.fit", self.canvas.fit), ("view.actual_size", self.canvas.actual_size),
                ("view.reset_layout", self.reset_layout),
                ("view.next_image", lambda: self.step_image(1)),
                ("view.previous_image", lambda: self.step_image(-1)),
                ("view.reviewed", self._toggle_current_reviewed),
                ("help.shortcuts", self.show_shortcuts), ("help.about", self._about),
                ("classes.select", self.class_panel.select_id)):
            bind(action_id, slot)
        self.undo_action = bind("edit.undo", self.undo)
        self.redo_action = bind("edit.redo", self.redo)
        self.undo_action.setEnabled(False)
        self.redo_action.setEnabled(False)
        self.mask_action = bind("view.mask", self.canvas.set_mask_visible)
        self.mask_action.setChecked(True)
        self.outline_action = bind("view.outline", self.canvas.set_outline)
        # the Tools and Mask menus' work and the tool bar
        self.editing = Editing(self.canvas, reg, report_error=self.report_error,
                               show_message=self.statusBar().showMessage,
                               image=lambda: (self.project, self.current),
                               flush=self.saver.flush, parent=self)
        self.tool_actions = self.editing.tool_actions
        self.size_spin = self.editing.size_spin
        self.model_loop = ModelLoop.for_window(self)  # Model actions, Training/Prediction/Metrics
        menus = reg.build_menus(self.menuBar())
        self.recent_menu = QMenu("Open Recent", self)
        menus["File"].insertMenu(reg.qaction("file.sample"), self.recent_menu)
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self.addToolBar(self.editing.toolbar)

    def _action(self, menu, text: str, slot, shortcut=None, checkable=False, tip="") -> QAction:
        """For ModelLoop, which still builds its own Model menu: binds `slot` to the action
        declared with this menu and text (the declaration's keys win) and hides `menu`, since
        the registry builds the real one. A ModelLoop that calls `action_registry.bind(id, slot)`
        needs none of this."""
        title = menu.title().replace("&", "")
        menu.menuAction().setVisible(False)
        action = self.action_registry.find(title, text)
        if action is None:      # not declared: declare it, so the F1 dialog still lists it
            keys = shortcut if isinstance(shortcut, list) else [shortcut] if isinstance(shortcut, str) else []
            action = Action(f"{title.lower()}.{text.lower()}", text, tuple(keys), menu=title,
                            checkable=checkable, tip=tip)
            self.action_registry.add(action)
        return self.action_registry.bind(action.id, slot)

    # -- project ---------------------------------------------------------------------------
    def show_welcome(self) -> None:
        self.welcome.set_recent(recent_projects())
        self.pages.setCurrentWidget(self.welcome)

    def open_project(self, project: Project) -> None:
        self.close_project()
        self.project = project
        self.pages.setCurrentIndex(1)
        is_sample = project.root == (data_dir() / "sample-project").resolve()
        self.hint.setVisible(is_sample and not value(self.settings, "hint_dismissed", False, bool))
        self.saver.attach(project)
        if project.read_only:
            self.statusBar().showMessage(f"Read-only: {project.read_only}", 15000)
        self.class_panel.set_classes(project.classes)
        self.canvas.set_classes(project.classes)
        self.images.set_entries(project.images)
        try:
            add_recent_project(project.root)
        except OSError as e:
            log.warning("could not update the recent projects list: %s", e)
        for problem in project.problems:
            self.report_error("Some files were skipped", problem)
        self._start_thumbnails(project.images)
        self.model_loop.project_opened(project)
        view = project.load_view()
        ids = [e.id for e in project.images]
        target = view.get("image") if view.get("image") in ids else (ids[0] if ids else None)
        self._restore_view = view if target == view.get("image") else None
        if target is not None:
            self.show_image(target)
        else:
            self.canvas.set_content(None, None)
            self.statusBar().showMessage("Empty project: add images with File ▸ Add Images… or drop them here")

    def close_project(self) -> None:
        if self.project is None:
            return
        self._leave_current()
        self._save_view()
        self.saver.detach()
        self.project = None
        self.current = None
        self.loaded = None

    def _start_thumbnails(self, entries: list[ImageEntry]) -> None:
        assert self.project is not None
        items = [(e.id, partial(self.project.read_image, e)) for e in entries]
        job = self._start_job(Job(make_thumbnails, items, name="thumbnails"))
        job.signals.succeeded.connect(self._on_thumbnails_succeeded)

    def _on_thumbnails_succeeded(self, result: dict) -> None:
        for image_id, thumb in result.items():
            if isinstance(thumb, np.ndarray):
                self.images.set_thumbnail(image_id, thumb)

    def _start_job(self, job: Job, report_failure: bool = True, visible: bool = False) -> Job:
        """Run a job on the pool; `visible` ones show progress and Cancel in the status bar."""
        self._jobs.add(job)   # keep it alive until it finishes
        if visible:
            self.jobs_view.track(job)
        job.signals.finished.connect(lambda: self._jobs.discard(job))
        if report_failure:
            job.signals.failed.connect(partial(self._on_job_failed, job.name))
        QThreadPool.globalInstance().start(job)
        return job

    def _on_job_failed(self, name: str, details: str) -> None:
        self.report_error(f"{name} failed", plain_error(details), details)

    # -- images ----------------------------------------------------------------------------
    def show_image(self, image_id: str) -> None:
        if self.project is None:
            return
        if self._class_job is not None:     # masks are being rewritten: open it afterwards
            self._waiting_image = image_id
            self.statusBar().showMessage("Removing the class from every mask; the image opens "
                                         "when that is done", 4000)
            return
        if self.current is not None and self.current.id == image_id and self.loaded is not None:
            return
        self._leave_current()
        entry = self.project.entry(image_id)
        self._load_generation += 1
        generation = self._load_generation
        self.statusBar().showMessage(f"Opening {entry.display_name}…")
        self.canvas.set_loading(f"Opening {entry.display_name}…")
        # strokes not on disk yet (a full disk): the reloaded mask gets them back on top
        unsaved = self.saver.pending(entry.id)
        job = Job(load_item, self.project, entry, name=f"Opening {entry.display_name}")
        job.signals.succeeded.connect(partial(self._on_item_loaded, generation, entry.id, unsaved))
        job.signals.failed.connect(partial(self._on_item_failed, generation, entry))
        self._start_job(job, report_failure=False)
        self.images.select(image_id, emit=False)

    def _on_item_failed(self, generation: int, entry: ImageEntry, details: str) -> None:
        if generation != self._load_generation:
            return
        self.report_error(f"Cannot open {entry.display_name}", plain_error(details), details)
        self.canvas.set_content(None, None)
        self.current, self.loaded = None, None

    def _on_item_loaded(self, generation: int, image_id: str, unsaved: list, result) -> None:
        if generation != self._load_generation or self.project is None:
            return  # the user moved on to another image meanwhile
        try:
            self._show_item(image_id, unsaved, result)
        except Exception as e:      # e.g. pixels no display can show: say so, keep running
            log.exception("showing %s failed", image_id)
            entry = self.project.entry(image_id)
            self.report_error(f"Cannot show {entry.display_name}", str(e) or type(e).__name__)
            self.canvas.set_content(None, None)
            self.current, self.loaded = None, None

    def _show_item(self, image_id: str, unsaved: list, result) -> None:
        loaded, mask, problem, stray = result
        entry = self.project.entry(image_id)
        for tiles in unsaved:       # replaying absolute tiles in order is idempotent
            for rect, values in tiles:
                mask[rect.slices] = values
        if self.project.read_only and not problem:
            read_only = f"Read-only: {self.project.read_only}"
        else:
            read_only = problem and (f"{problem}. The mask file was left untouched; fix or "
                                     f"remove it to paint on this image.")
        doc = ImageDocument(mask, history=self.editing.history_for(entry.id), read_only=read_only)
        doc.history_changed.connect(self._on_doc_history_changed)
        doc.edited.connect(partial(self._on_doc_edited, entry.id, mask.shape))
        self.current, self.loaded = entry, loaded
        preset = self._preset or default_preset(loaded)
        rng = self._range_for(preset, loaded)
        self.canvas.set_content(loaded.data, doc, rng)
        self.display_panel.show_range(rng, preset)
        self._on_doc_history_changed(doc.history.can_undo, doc.history.can_redo)
        view = self._restore_view
        if view and view.get("image") == image_id and "zoom" in view:
            try:
                self.canvas.zoom_to(float(view["zoom"]))
                cy, cx = view.get("center", self.canvas.view_center())
                self.canvas.center_on(float(cy), float(cx))
            except (TypeError, ValueError):
                pass
        self._restore_view = None
        h, w = loaded.data.shape[:2]
        self.statusBar().showMessage(f"{entry.display_name}: {w} x {h}, {loaded.data.dtype}", 4000)
        if problem:
            self.report_error("Mask not loaded", doc.read_only or problem)
        for note in self.project.masks.take_problems(image_id):
            self.report_error("Part of the mask's journal could not be read", note)
        if stray and not doc.read_only:
            self._offer_stray_ids(entry, stray)
        self.image_shown.emit(image_id)

    def _offer_stray_ids(self, entry: ImageEntry, stray: list[int]) -> QMessageBox:
        """A mask with class ids the project lacks: say so and offer to add or clear them."""
        ids = ", ".join(map(str, stray))
        box = QMessageBox(QMessageBox.Icon.Warning, "Unknown class ids in the mask",
                          f"The mask of {entry.display_name} holds class id(s) {ids} that the "
                          f"project has no class for. Add them as classes, or make those pixels "
                          f"unlabeled (one undo step)?", QMessageBox.StandardButton.NoButton, self)
        add = box.addButton("Add as classes", QMessageBox.ButtonRole.AcceptRole)
        clear = box.addButton("Make unlabeled", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton("Leave as is", QMessageBox.ButtonRole.RejectRole)
        add.clicked.connect(partial(self._add_stray_classes, stray))
        clear.clicked.connect(partial(self._clear_stray_ids, entry.id, stray))
        box.setModal(False)
        box.show()
        self._message_boxes.append(box)
        log.warning("mask of %s holds unknown class ids %s", entry.id, ids)
        return box

    def _add_stray_classes(self, stray: list[int]) -> None:
        if self.project is None:
            return
        have = {c.id for c in self.project.classes}
        new = [LabelClass(i, f"class {i}", default_color(i)) for i in stray if i not in have]
        self._on_classes_edited([*self.project.classes, *new])
        self.class_panel.set_classes(self.project.classes)

    def _clear_stray_ids(self, image_id: str, stray: list[int]) -> None:
        doc = self.canvas.document
        if doc is None or self.current is None or self.current.id != image_id:
            return
        new = doc.mask.copy()
        new[np.isin(new, stray)] = UNLABELED
        doc.apply(new, "Unknown class ids to unlabeled")

    def _leave_current(self) -> None:
        """Finish the stroke, fold the image's journal into its PNG, update its status."""
        doc = self.canvas.document
        if doc is None or self.current is None or self.project is None:
            return
        if doc.in_stroke:
            doc.end_stroke()
        self._refresh_current_status()
        self.saver.flush_manifest()
        if self.saver.has_unsaved(self.current.id):
            state = self.saver.state
            self.statusBar().showMessage(
                f"{self.current.display_name}: {state.unsaved} stroke(s) are not on disk yet "
                f"({state.error}); they are kept and saved as soon as the disk allows", 10000)
        self.saver.compact(self.current.id, doc.shape)

    def step_image(self, delta: int) -> None:
        ids = self.images.visible_ids()
        if not ids:
            return
        i = ids.index(self.current.id) if self.current and self.current.id in ids else -delta
        self.show_image(ids[(i + delta) % len(ids)])

    def set_split(self, ids: list[str], split: str) -> None:
        self._update_entries(ids, split=split)

    def set_reviewed(self, ids: list[str], reviewed: bool) -> None:
        self._update_entries(ids, reviewed=reviewed)

    def _update_entries(self, ids: list[str], **changes) -> None:
        if self.project is None:
            return
        for image_id in ids:
            entry = self.project.update_entry(image_id, **changes)
            self.images.update_entry(entry)
            if self.current and self.current.id == image_id:
                self.current = entry
        self.saver.save_manifest()

    def _toggle_current_reviewed(self) -> None:
        if self.current is not None:
            self.set_reviewed([self.current.id], not self.current.reviewed)

    def _refresh_current_status(self) -> None:
        doc = self.canvas.document
        if doc is None or self.current is None or self.project is None:
            return
        frac = labelled_fraction(doc.mask)
        if abs(frac - self.current.labelled) > 1e-9:
            # a cached figure: written when leaving the image or saving, not after each stroke
            self.current = self.project.update_entry(self.current.id, labelled=frac)
            self.images.update_entry(self.current)
            self.saver.mark_manifest_dirty()

    # -- editing ---------------------------------------------------------------------------
    def _on_doc_edited(self, image_id: str, shape, tiles) -> None:
        self.saver.submit(image_id, shape, tiles)
        self._status_timer.start()

    def _on_saver_saved(self, image_id: str, n: int) -> None:
        if self.saver.state.ok:
            self.statusBar().showMessage(f"Saved {n} change(s) to {image_id}", 1500)

    def _on_saver_changed(self) -> None:
        if self.project is not None:
            flag = " (read-only)" if self.project.read_only else (
                " — NOT SAVED" if self.saver.describe() else "")
            self.setWindowTitle(f"{self.project.name}{flag} — SegStudio")

    def unsaved_summary(self) -> str | None:
        return self.saver.unsaved_summary()

    def _on_canvas_paint_refused(self, why: str) -> None:
        self.statusBar().showMessage(why, 8000)
        # a box once per reason: a read-only project must not answer every stroke with one
        if why != self._last_refusal and not why.startswith("Opening "):
            self._last_refusal = why
            self.report_error("This mask is read-only", why)

    def _on_doc_history_changed(self, can_undo: bool, can_redo: bool) -> None:
        self.undo_action.setEnabled(can_undo)
        self.redo_action.setEnabled(can_redo)

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
            self.report_error("This mask is read-only", str(e))

    def _on_canvas_stroke_finished(self) -> None:
        self._status_timer.start()

    def set_tool(self, name: str) -> None:
        self.editing.set_tool(name)

    def set_brush_radius(self, radius: float) -> None:
        self.editing.set_brush_radius(radius)

    def _on_class_selected(self, class_id: int) -> None:
        self.canvas.class_value = class_id
        c = self.project.class_by_id(class_id) if self.project else None
        if c is not None:
            self.statusBar().showMessage(f"Painting '{c.name}'", 1500)

    def _on_classes_edited(self, classes: list[LabelClass]) -> None:
        if self.project is None:
            return
        try:
            self.project.set_classes(classes)
        except ProjectError as e:
            self.report_error("Classes not changed", str(e))
            self.class_panel.set_classes(self.project.classes)
            return
        self.canvas.set_classes(classes)

    def _on_class_deleted(self, class_id: int) -> None:
        """The deleted class's pixels become unlabeled, on screen and in every saved mask."""
        if self.project is None:
            return
        if self.project.read_only:
            self.report_error("Class not deleted", f"Read-only: {self.project.read_only}")
            self.class_panel.set_classes(self.project.classes)
            return
        doc = self.canvas.document
        if doc is not None and not doc.read_only:      # the open image: one undoable step
            doc.apply(clear_class(doc.mask, class_id), "Delete class")
        # every other saved mask on a worker, each rewritten under the mask store's lock; other
        # images wait until it is done (a mask loaded half-way would bring the class back)
        skip = {self.current.id} if self.current else set()
        job = Job(self.project.clear_class_from_masks, class_id, skip=skip,
                  name="Removing the class from every mask")
        self._class_job = job
        job.signals.succeeded.connect(self._on_class_cleared)
        job.signals.finished.connect(self._on_class_job_finished)
        self._start_job(job, visible=True)

    def _on_class_cleared(self, changed: int) -> None:
        self.editing.forget_histories(keep=self.current.id if self.current else None)
        self.statusBar().showMessage(f"Class removed from {changed} saved mask(s)", 4000)

    def _on_class_job_finished(self) -> None:
        self._class_job = None
        waiting, self._waiting_image = self._waiting_image, None
        if waiting is not None:
            self.show_image(waiting)

    # -- display ---------------------------------------------------------------------------
    def _range_for(self, preset: str, loaded: LoadedImage) -> DisplayRange:
        data = loaded.data
        if preset == FULL:
            if data.dtype.kind == "f":
                s = sample_pixels(data)
                return DisplayRange(float(np.nanmin(s)), float(np.nanmax(s)) + 1e-6)
            return full_range(data.dtype)
        if preset == HEADER and loaded.info.window:
            return DisplayRange.from_window(*loaded.info.window)
        if preset in CT_PRESETS:
            return DisplayRange.from_window(*CT_PRESETS[preset])
        if preset == MANUAL:
            return self.canvas.display_range
        return auto_range(data)

    def apply_preset(self, preset: str) -> None:
        self._preset = preset
        if self.loaded is None:
            return
        if preset == HEADER and not self.loaded.info.window:
            self.statusBar().showMessage("This file's header has no window; using auto contrast", 4000)
        rng = self._range_for(preset, self.loaded)
        self.canvas.set_display_range(rng)
        self.display_panel.show_range(rng)

    def _on_range_edited(self, rng: DisplayRange) -> None:
        self._preset = MANUAL
        self.canvas.set_display_range(rng)

    # -- status bar ------------------------------------------------------------------------
    def _on_canvas_hovered(self, y: int, x: int) -> None:
        if y < 0 or self.loaded is None or self.canvas.document is None:
            self.position_label.setText("")
            self.value_label.setText("")
            self.class_label.setText("")
            return
        v = np.asarray(self.loaded.data[y, x])
        value = ", ".join(f"{t:.4g}" if v.dtype.kind == "f" else str(int(t)) for t in v.ravel()[:4])
        cid = int(self.canvas.document.mask[y, x])
        c = self.project.class_by_id(cid) if self.project else None
        self.position_label.setText(f"y {y}, x {x}")
        self.value_label.setText(f"value {value}")
        self.class_label.setText("unlabeled" if cid == UNLABELED else (c.name if c else f"class {cid}"))

    def _on_canvas_view_changed(self) -> None:
        self.zoom_label.setText(zoom_percent(self.canvas.zoom))

    def _save_view(self) -> None:
        if self.project is None or self.current is None:
            return
        cy, cx = self.canvas.view_center()
        try:
            self.project.save_view({"image": self.current.id, "zoom": self.canvas.zoom, "center": [cy, cx]})
        except OSError as e:
            log.warning("could not save the view state: %s", e)

    # -- dialogs and files -----------------------------------------------------------------
    def report_error(self, title: str, message: str, details: str = "") -> None:
        """Every problem reaches the user: a non-modal box, the status bar and the log file."""
        log.error("%s: %s%s", title, message, f"\n{details}" if details else "")
        self.errors.append(message)
        self.statusBar().showMessage(f"{title}: {message}", 8000)
        self._message_boxes = [b for b in self._message_boxes if b.isVisible()][-4:]
        self._message_boxes.append(error_box(self, title, message, details))

    def show_shortcuts(self) -> ShortcutsDialog:
        dlg = ShortcutsDialog(self.action_registry, self)
        dlg.show()
        return dlg

    def _about(self) -> None:
        from segstudio import __version__
        QMessageBox.about(self, "About SegStudio", f"SegStudio {__version__}\nBSD-3-Clause licence.")

    def save_now(self) -> bool:
        """Write everything now (retrying what failed) and say truthfully whether it worked."""
        if self.project is None:
            return True
        if self.project.read_only:
            self.statusBar().showMessage(f"Read-only: {self.project.read_only}; nothing to save", 6000)
            return False
        self._refresh_current_status()
        if self.saver.save_now():
            self._save_view()
            self.statusBar().showMessage("All changes are on disk", 3000)
            return True
        self.statusBar().showMessage(f"Not saved: {self.unsaved_summary()}", 10000)
        return False

    # -- settings --------------------------------------------------------------------------
    def _restore_settings(self) -> None:
        st = self.settings
        geometry, state = st.value("window/geometry"), st.value("window/state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        tool = value(st, "tools/tool", "brush", str)
        if tool in self.tool_actions:
            self.set_tool(tool)
        self.set_brush_radius(value(st, "tools/brush_radius", self.canvas.brush_radius, float))
        opacity = value(st, "view/opacity", 0.5, float)
        self.display_panel.opacity.setValue(int(round(opacity * 100)))
        self.canvas.set_opacity(opacity)
        device = value(st, "train/device", "auto", str)
        if device in [self.model_loop.train_panel.device.itemText(i)
                      for i in range(self.model_loop.train_panel.device.count())]:
            self.model_loop.train_panel.device.setCurrentText(device)
        self.outline_action.setChecked(value(st, "view/outline", False, bool))
        self.canvas.set_outline(self.outline_action.isChecked())

    def _save_settings(self) -> None:
        st = self.settings
        st.setValue("window/geometry", self.saveGeometry())
        st.setValue("window/state", self.saveState())
        st.setValue("tools/tool", self.canvas.tool)
        st.setValue("tools/brush_radius", self.canvas.brush_radius)
        st.setValue("view/opacity", self.canvas.opacity)
        st.setValue("view/outline", self.canvas.outline)
        st.setValue("train/device", self.model_loop.train_panel.device.currentText())
        st.sync()

    def reset_layout(self) -> None:
        self.restoreState(self._default_layout)
        for dock in self.findChildren(QDockWidget):
            dock.show()

    def closeEvent(self, event: QCloseEvent) -> None:
        if (self.project is not None and not self.project.read_only and not self.save_now()
                and self.unsaved_summary()):
            lose = self.unsaved_summary()
            answer = QMessageBox.warning(
                self, "Close without saving?",
                f"{lose}.\n\nFree some disk space and choose Retry, or close and lose them.",
                QMessageBox.StandardButton.Retry | QMessageBox.StandardButton.Discard
                | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Retry)
            if answer == QMessageBox.StandardButton.Cancel or (
                    answer == QMessageBox.StandardButton.Retry and not self.save_now()):
                event.ignore()
                return
        self._save_settings()
        self.close_project()
        for job in list(self._jobs):
            job.token.cancel()
        QThreadPool.globalInstance().waitForDone(5000)
        super().closeEvent(event)
