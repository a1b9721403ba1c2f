"""ClassControl: the Classes panel's work — pick the class to paint, rename, add, delete.

Deleting a class rewrites every saved mask on a worker; the open image changes at once, as one
undo step, and other images wait (`open_after`) until the rewrite is done. It is given the
panel, the canvas and callables, not the window.
"""

from __future__ import annotations

from collections.abc import Callable

from segstudio.core.classes import LabelClass
from segstudio.edit.maskops import clear_class
from segstudio.io.project import ImageEntry, Project, ProjectError
from segstudio.ui.canvas import MaskCanvas
from segstudio.ui.panels.class_panel import ClassPanel
from segstudio.workers.job import Job

CLEARING = "Removing the class from every mask"


class ClassControl:
    """Keeps the project's classes, the panel and the canvas in step."""

    def __init__(self, panel: ClassPanel, canvas: MaskCanvas, *,
                 project: Callable[[], Project | None],
                 current: Callable[[], ImageEntry | None],
                 start_job: Callable[..., Job],
                 open_after: Callable[[Job, str], None],
                 forget_histories: Callable[..., None],
                 report_error: Callable[..., None],
                 show_message: Callable[[str, int], None] = lambda text, ms: None) -> None:
        self.panel = panel
        self.canvas = canvas
        self._project = project
        self._current = current
        self._start_job = start_job
        self._open_after = open_after
        self._forget_histories = forget_histories
        self._report_error = report_error
        self._show_message = show_message
        panel.class_selected.connect(self._on_panel_class_selected)
        panel.classes_edited.connect(self.set_classes)
        panel.class_deleted.connect(self.delete)
        canvas.object_picked.connect(self._on_canvas_object_picked)

    def show_project(self, project: Project) -> None:
        self.panel.set_classes(project.classes)
        self.canvas.set_classes(project.classes)

    def _on_panel_class_selected(self, class_id: int) -> None:
        self.canvas.class_value = class_id
        project = self._project()
        c = project.class_by_id(class_id) if project else None
        if c is not None:
            self._show_message(f"Painting '{c.name}'", 1500)

    def _on_canvas_object_picked(self, object_id: int, class_id: int) -> None:
        """Alt+click on an object: its class becomes the one painted."""
        self.panel.select_id(class_id)

    def set_classes(self, classes: list[LabelClass]) -> None:
        """The panel's edit becomes the project's classes, or is refused with the reason."""
        project = self._project()
        if project is None:
            return
        try:
            project.set_classes(classes)
        except ProjectError as e:
            self._report_error("Classes not changed", str(e))
            self.panel.set_classes(project.classes)
            return
        self.canvas.set_classes(classes)

    def add(self, new: list[LabelClass]) -> None:
        """Ids found in a mask become classes (the image opener's offer)."""
        project = self._project()
        if project is None:
            return
        self.set_classes([*project.classes, *new])
        self.panel.set_classes(project.classes)

    def delete(self, class_id: int) -> None:
        """The deleted class's pixels become unlabeled, on screen and in every saved mask."""
        project = self._project()
        if project is None:
            return
        if project.read_only:
            self._report_error("Class not deleted", f"Read-only: {project.read_only}")
            self.panel.set_classes(project.classes)
            return
        doc = self.canvas.document
        if doc is not None and not doc.read_only:      # the open image: one undoable step
            doc.apply(clear_class(doc.mask, class_id), "Delete class")
        # every other saved mask on a worker, each rewritten under the mask store's lock; other
        # images wait until it is done (a mask loaded half-way would bring the class back)
        current = self._current()
        skip = {current.id} if current else set()
        job = Job(project.clear_class_from_masks, class_id, skip=skip, name=CLEARING)
        job.signals.succeeded.connect(self._on_class_cleared)
        self._open_after(job, f"{CLEARING}; the image opens when that is done")
        self._start_job(job, visible=True)

    def _on_class_cleared(self, changed: int) -> None:
        current = self._current()
        self._forget_histories(keep=current.id if current else None)
        self._show_message(f"Class removed from {changed} saved mask(s)", 4000)
