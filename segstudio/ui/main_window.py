"""MainWindow: lays out the parts and wires their signals; each part does its own work.

The parts take collaborators (getters, callables, widgets), not the window: `JobRunner` (jobs),
`ProjectSaver` (what is on disk), `ImageOpener` (the open image, its document and history),
`DisplayControl` (display range, hover labels), `ClassControl` (the Classes panel's work),
`FileMenu` (open, add, export, import), `Editing` (tools and mask operations), `ModelLoop`
(train, predict, measure) and `WindowSettings` (what persists). The window keeps the project,
lays out the panels and keeps thin delegates under the names tests and scripts use.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (QDockWidget, QMainWindow, QMenu, QMessageBox, QStackedWidget,
                               QVBoxLayout, QWidget)

from segstudio.io.images import LoadedImage
from segstudio.io.entries import row_faces
from segstudio.io.project import ImageEntry, Project
from segstudio.io.userdirs import add_recent_project, data_dir, recent_projects
from segstudio.ui.actions import MODEL_ACTIONS, WINDOW_ACTIONS, ActionRegistry
from segstudio.ui.canvas import MaskCanvas
from segstudio.ui.dialogs import ShortcutsDialog, error_box
from segstudio.ui.display_control import DisplayControl, default_preset  # noqa: F401 (was here)
from segstudio.ui.class_control import ClassControl
from segstudio.ui.click_models import attach_to_window
from segstudio.ui.editing import Editing
from segstudio.ui.file_menu import FileMenu
from segstudio.ui.image_opener import ImageOpener, load_item  # noqa: F401 (was here)
from segstudio.ui.job_runner import JobRunner
from segstudio.ui.jobs_view import JobsIndicator
from segstudio.ui.logging_setup import install_file_log
from segstudio.ui.model_loop import ModelLoop
from segstudio.ui.saving import ProjectSaver
from segstudio.ui.slice_nav import SliceBar
from segstudio.ui.volume_edits import VolumeEdits
from segstudio.ui.settings import app_settings, value
from segstudio.ui.welcome import HintBanner, WelcomePage
from segstudio.ui.window_settings import WindowSettings
from segstudio.ui.panels.class_panel import ClassPanel
from segstudio.ui.panels.display_panel import DisplayPanel
from segstudio.ui.panels.image_list import ImageListPanel, make_thumbnails
from segstudio.workers.job import Job, plain_error  # noqa: F401 (tests import it here)

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    image_shown = Signal(str)            # after an image and its mask are on the canvas
    images_added = Signal(list)          # ids of images just added to the project

    def __init__(self, project: Project | None = None, *, autosave_delay: float = 0.05) -> None:
        super().__init__()
        self.setWindowTitle("SegStudio")
        self.setAcceptDrops(True)
        self.resize(1280, 820)
        self.project: Project | None = None
        self.errors: list[str] = []
        self._message_boxes: list = []
        self.saver = ProjectSaver(self.report_error, autosave_delay=autosave_delay)
        self.saver.saved.connect(self._on_saver_saved)
        self.saver.changed.connect(self._on_saver_changed)
        self.jobs_view = JobsIndicator()
        self.runner = JobRunner(self.report_error, self.jobs_view)

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
        self.slices = SliceBar()                 # shown for the slices of a volume
        column.addWidget(self.slices)
        self.slices.slice_chosen.connect(self.show_image)
        self.canvas.slice_step.connect(self.slices.step)
        self.files = FileMenu(
            self, project=lambda: self.project, open_project=self.open_project,
            report_error=self.report_error, start_job=self.runner.start, saver=self.saver,
            canvas=self.canvas, show_message=self._show_message,
            refresh_status=lambda: self.opener.refresh_status(),
            images_joined=self._on_images_joined,
            forget_histories=lambda: self.editing.forget_histories())
        self.welcome = WelcomePage()
        self.welcome.sample_requested.connect(self.files.open_sample)
        self.welcome.new_requested.connect(self.files.new_project_dialog)
        self.welcome.open_requested.connect(self.files.open_project_dialog)
        self.welcome.recent_requested.connect(self.files.open_project_path)
        self.pages = QStackedWidget()
        self.pages.addWidget(self.welcome)
        self.pages.addWidget(canvas_page)
        self.setCentralWidget(self.pages)
        self.images = ImageListPanel()
        self.class_panel = ClassPanel()
        self.display_panel = DisplayPanel()
        left = self.add_dock("Images", self.images, Qt.DockWidgetArea.LeftDockWidgetArea)
        right = self.add_dock("Classes", self.class_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        display = self.add_dock("Display", self.display_panel, Qt.DockWidgetArea.RightDockWidgetArea)

        self.display = DisplayControl(
            self.canvas, self.display_panel, loaded=lambda: self.opener.loaded,
            class_by_id=lambda cid: self.project.class_by_id(cid) if self.project else None,
            show_message=self._show_message, volume_place=lambda: self.slices.place())
        self.opener = ImageOpener(
            self.canvas, self.saver, project=lambda: self.project, start_job=self.runner.start,
            report_error=self.report_error, show_message=self._show_message,
            history_for=lambda image_id: self.editing.history_for(image_id),
            show_content=self.display.show, add_classes=lambda new: self.classes.add(new),
            select=self._on_opening, parent=self)
        self.opener.image_shown.connect(self.image_shown)
        self.opener.history_changed.connect(self._on_history_changed)
        self.opener.entry_changed.connect(self.images.update_entry)
        self.opener.entry_changed.connect(lambda e: self._show_slice_bar(e.id))
        self._build_status_bar()
        self._build_actions()

        self.images.image_activated.connect(self.show_image)
        self.images.split_chosen.connect(self.set_split)
        self.images.reviewed_toggled.connect(self.set_reviewed)
        self.classes = ClassControl(
            self.class_panel, self.canvas, project=lambda: self.project,
            current=lambda: self.current, start_job=self.runner.start,
            open_after=self.opener.open_after, forget_histories=self.editing.forget_histories,
            report_error=self.report_error, show_message=self._show_message)
        self.canvas.stroke_finished.connect(self._on_canvas_stroke_finished)
        self.canvas.paint_refused.connect(self._on_canvas_paint_refused)
        self._last_refusal = ""
        # the canvas gets the room: side panels start narrow (the user can drag them wider)
        self.resizeDocks([left, right], [220, 400], Qt.Orientation.Horizontal)
        self.resizeDocks([right, display, self.model_loop.docks[0]], [120, 140, 520],
                         Qt.Orientation.Vertical)
        self.window_settings = WindowSettings(
            self.settings, self, self.canvas, tools=lambda: self.tool_actions,
            set_tool=self.set_tool, set_brush_radius=self.set_brush_radius,
            opacity=self.display_panel.opacity, device=self.model_loop.train_panel.device,
            outline_action=self.outline_action)
        self.window_settings.restore()
        if project is not None:
            self.open_project(project)
        else:
            self.show_welcome()

    # -- the parts' state, under the names tests and scripts use ---------------------------
    @property
    def current(self) -> ImageEntry | None:
        return self.opener.current

    @current.setter
    def current(self, entry: ImageEntry | None) -> None:
        self.opener.current = entry

    @property
    def loaded(self) -> LoadedImage | None:
        return self.opener.loaded

    @property
    def _jobs(self) -> set[Job]:
        return self.runner.jobs

    @property
    def _class_job(self) -> Job | None:
        return self.opener.blocking_job

    def _start_job(self, job: Job, report_failure: bool = True, visible: bool = False) -> Job:
        """Run a job on the pool; `visible` ones show progress and Cancel in the status bar."""
        return self.runner.start(job, report_failure=report_failure, visible=visible)

    def _show_message(self, text: str, ms: int = 0) -> None:
        self.statusBar().showMessage(text, ms)

    # -- layout ----------------------------------------------------------------------------
    def add_dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock{title}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_status_bar(self) -> None:
        self.statusBar().addPermanentWidget(self.jobs_view)
        # one persistent word on what is not on disk (or cannot be), instead of a box per stroke
        self.save_state_label = self.saver.label
        self.position_label, self.value_label, self.class_label, self.zoom_label = self.display.labels
        for w in (self.save_state_label, *self.display.labels):
            self.statusBar().addPermanentWidget(w)

    def _build_actions(self) -> None:
        """The menus, the tool bar and the F1 dialog, all from one registry (segstudio/ui/actions.py)."""
        reg = self.action_registry = ActionRegistry((*WINDOW_ACTIONS, *MODEL_ACTIONS), owner=self)
        bind = reg.bind
        for action_id, slot in (
                ("file.new", self.files.new_project_dialog),
                ("file.open", self.files.open_project_dialog),
                ("file.sample", self.files.open_sample),
                ("file.add_images", self.files.add_images_dialog),
                ("file.add_folder", self.files.add_folder_dialog),
                ("file.import_masks", self.files.import_masks_dialog),
                ("file.export", self.files.export_dataset_dialog), ("file.save", self.save_now),
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
        self.volume_edits = VolumeEdits.for_window(self)   # Volume menu, undo across slices
        self.size_spin = self.editing.size_spin
        self.model_loop = ModelLoop.for_window(self)  # Model actions, Training/Prediction/Metrics
        menus = reg.build_menus(self.menuBar())
        self.recent_menu = QMenu("Open Recent", self)
        menus["File"].insertMenu(reg.qaction("file.sample"), self.recent_menu)
        self.recent_menu.aboutToShow.connect(partial(self.files.fill_recent, self.recent_menu))
        self.addToolBar(self.editing.toolbar)
        # which model answers the Click tool: its Model menu entries, tool bar and embeddings
        click = self.canvas.tools["click"]
        click.models = attach_to_window(click, self)

    # -- project ---------------------------------------------------------------------------
    def show_welcome(self) -> None:
        self.welcome.set_recent(recent_projects())
        self.pages.setCurrentWidget(self.welcome)

    def open_project(self, project: Project) -> None:
        self.close_project()
        self.project = project
        click = self.canvas.tools["click"]      # the project's click runs answer first
        click.project_root, click.backend = project.root, None
        self.pages.setCurrentIndex(1)
        is_sample = project.root == (data_dir() / "sample-project").resolve()
        self.hint.setVisible(is_sample and not value(self.settings, "hint_dismissed", False, bool))
        self.saver.attach(project)
        if project.read_only:
            self.statusBar().showMessage(f"Read-only: {project.read_only}", 15000)
        self.classes.show_project(project)
        self.images.set_entries(project.images, series=project.series)
        try:
            add_recent_project(project.root)
        except OSError as e:
            log.warning("could not update the recent projects list: %s", e)
        for problem in project.problems:
            self.report_error("Some files were skipped", problem)
        self._start_thumbnails(project.images)
        self.model_loop.project_opened(project)
        self.opener.show_first()

    def close_project(self) -> None:
        if self.project is None:
            return
        self.opener.leave_current()
        self.opener.save_view()
        self.saver.detach()
        self.project = None
        self.opener.forget()

    def _start_thumbnails(self, entries: list[ImageEntry]) -> None:
        assert self.project is not None
        # one thumbnail per row: a volume's shows its middle slice
        items = [(e.id, partial(self.project.read_image, e)) for e in row_faces(entries)]
        job = self.runner.start(Job(make_thumbnails, items, name="thumbnails"))
        job.signals.succeeded.connect(self._on_thumbnails_succeeded)

    def _on_thumbnails_succeeded(self, result: dict) -> None:
        for image_id, thumb in result.items():
            if isinstance(thumb, np.ndarray):
                self.images.set_thumbnail(image_id, thumb)

    # -- images ----------------------------------------------------------------------------
    def show_image(self, image_id: str) -> None:
        self.opener.show_image(image_id)

    def _on_opening(self, image_id: str) -> None:
        """An image is being opened: its row in the list, and the slice bar for a slice."""
        self.images.select(image_id, emit=False)
        self._show_slice_bar(image_id)

    def _show_slice_bar(self, image_id: str) -> None:
        """The slice bar for a slice of a volume (hidden for an image), the brush size in mm."""
        record = self.slices.follow(self.project, image_id) if self.project else None
        self.canvas.in_volume = self.slices.active
        self.editing.set_pixel_size(record.pixel_mm if record else None)

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

    def _on_images_joined(self, added: list[ImageEntry]) -> None:
        if self.project is None:
            return
        self.images.set_entries(self.project.images, self.current.id if self.current else None,
                                series=self.project.series)
        self._start_thumbnails(added)
        if added and self.current is None:
            self.show_image(added[0].id)
        self.statusBar().showMessage(f"Added {len(added)} image(s)", 4000)
        self.images_added.emit([e.id for e in added])

    # -- files (the FileMenu part), under the names tests and scripts use ------------------
    def open_project_path(self, path: Path) -> bool:
        return self.files.open_project_path(path)

    def create_project(self, images: Path, root: Path, *, copy: bool = False):
        return self.files.create_project(images, root, copy=copy)

    def add_images(self, paths: list[Path], copy: bool = False):
        return self.files.add_images(paths, copy=copy)

    def add_images_dialog(self) -> None:
        self.files.add_images_dialog()

    def run_export(self, out: Path, options):
        return self.files.run_export(out, options)

    def run_import(self, src: Path, options):
        return self.files.run_import(src, options)

    @property
    def last_export(self):
        return self.files.last_export

    @last_export.setter
    def last_export(self, result) -> None:
        self.files.last_export = result

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        self.files.drop([Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()])

    # -- editing ---------------------------------------------------------------------------
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

    def _on_history_changed(self, can_undo: bool, can_redo: bool) -> None:
        self.undo_action.setEnabled(can_undo)
        self.redo_action.setEnabled(can_redo)

    def undo(self) -> None:
        if not self.volume_edits.step(redo=False):    # a step across slices: all of them
            self.opener.undo()

    def redo(self) -> None:
        if not self.volume_edits.step(redo=True):
            self.opener.redo()

    def volume_entry_changed(self, entry: ImageEntry) -> None:
        """A step across slices rewrote this slice's mask: its status in the list and bar."""
        if self.current is not None and self.current.id == entry.id:
            self.current = entry
        self.images.update_entry(entry)
        self._show_slice_bar(self.current.id if self.current else entry.id)
        self.saver.save_manifest()

    def _on_canvas_stroke_finished(self) -> None:
        self.opener.note_edit()

    def set_tool(self, name: str) -> None:
        self.editing.set_tool(name)

    def set_brush_radius(self, radius: float) -> None:
        self.editing.set_brush_radius(radius)

    # -- display ---------------------------------------------------------------------------
    def apply_preset(self, preset: str) -> None:
        self.display.apply_preset(preset)

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

    def prepare_for_job(self) -> None:
        """Before a job reads the project from disk: the cheap GUI-side part of saving (the
        strokes are waited for on the job's own thread, ProjectSaver.flushed)."""
        self.opener.refresh_status()
        self.saver.flush_manifest()

    def save_now(self) -> bool:
        """Write everything now (retrying what failed) and say truthfully whether it worked."""
        if self.project is None:
            return True
        if self.project.read_only:
            self.statusBar().showMessage(f"Read-only: {self.project.read_only}; nothing to save", 6000)
            return False
        self.opener.refresh_status()
        if self.saver.save_now():
            self.opener.save_view()
            self.statusBar().showMessage("All changes are on disk", 3000)
            return True
        self.statusBar().showMessage(f"Not saved: {self.unsaved_summary()}", 10000)
        return False

    def reset_layout(self) -> None:
        self.window_settings.reset_layout()

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
        self.window_settings.save()
        self.close_project()
        self.runner.cancel_all()
        super().closeEvent(event)
