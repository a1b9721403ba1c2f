"""The File menu's work: open, create and add, recent projects, drag and drop."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QFileDialog, QMessageBox

from segstudio.io.images import image_file_filter, is_supported
from segstudio.io.project import MANIFEST, ImageEntry, Project, ProjectError
from segstudio.io.userdirs import recent_projects, sample_project
from segstudio.workers.job import Job, plain_error


class FileMenuMixin:
    """Mixed into MainWindow: needs open_project, report_error, project, images, current,
    runner (a JobRunner), opener (an ImageOpener), saver, canvas and editing."""

    def open_project_path(self, path: Path) -> bool:
        try:
            project = Project.open(path)
        except ProjectError as e:
            self.report_error("Cannot open project", str(e))
            return False
        self.open_project(project)
        return True

    def open_project_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open project folder")
        if folder:
            self.open_project_path(Path(folder))

    def open_sample(self) -> None:
        try:
            self.open_project_path(sample_project())
        except OSError as e:
            self.report_error("Cannot open the sample project", str(e))

    def new_project_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of images for the new project")
        if not folder:
            return
        copy = QMessageBox.question(
            self, "New project", "Copy the images into the project folder?\n"
            "No: the project refers to them where they are.") == QMessageBox.StandardButton.Yes
        self.create_project(Path(folder), Path(folder) / "segstudio-project", copy=copy)

    def create_project(self, images: Path, root: Path, *, copy: bool = False):
        """Create a project on a worker (probing and copying a folder takes a while), then open it."""

        job = Job(_create_project, images, root, copy, name="Creating the project")
        job.signals.succeeded.connect(self.open_project)
        job.signals.failed.connect(
            lambda details: self.report_error("Cannot create the project", plain_error(details)))
        return self.runner.start(job, report_failure=False, visible=True)

    def add_images_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self, "Add images", "", image_file_filter())
        if files:
            self.add_images([Path(f) for f in files])

    def add_images(self, paths: list[Path], copy: bool = False):
        """Probe (and copy) the files on a worker; they join the project when it is done."""

        if self.project is None:
            return None
        if self.project.read_only:
            self.report_error("Images not added", f"Read-only: {self.project.read_only}")
            return None
        project = self.project
        job = Job(project.scan_images, list(paths), copy=copy, known=project.known_files(),
                  name=f"Adding {len(paths)} image(s)")
        job.signals.succeeded.connect(partial(self._on_images_scanned, project))
        return self.runner.start(job, visible=True)

    def _on_images_scanned(self, project: Project, scan) -> list[ImageEntry]:
        if project is not self.project:
            return []           # another project was opened meanwhile
        try:
            added = project.add_scanned(scan)
        except (OSError, ProjectError) as e:
            self.report_error("Images not added", str(e))
            return []
        for problem in scan.problems:
            self.report_error("Some files were skipped", problem)
        self.images.set_entries(self.project.images, self.current.id if self.current else None)
        self._start_thumbnails(added)
        if added and self.current is None:
            self.show_image(added[0].id)
        self.statusBar().showMessage(f"Added {len(added)} image(s)", 4000)
        self.images_added.emit([e.id for e in added])
        return added

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in recent_projects():
            act = self.recent_menu.addAction(str(path))
            act.triggered.connect(partial(self.open_project_path, path))
        if self.recent_menu.isEmpty():
            self.recent_menu.addAction("(none yet)").setEnabled(False)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        projects = [p for p in paths if (p / MANIFEST).exists() or p.name == MANIFEST]
        if projects:
            self.open_project_path(projects[0])
            return
        files = []
        for p in paths:
            files += sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        self.add_images([f for f in files if is_supported(f)] or files)

    # -- datasets in and out ---------------------------------------------------------------
    def export_dataset_dialog(self) -> None:
        from segstudio.ui.export_dialogs import ExportDialog

        if self.project is None:
            return
        dlg = ExportDialog([c.name for c in self.project.classes],
                           self.project.root.parent / f"{self.project.root.name}-dataset", self)
        if dlg.exec():
            self.run_export(*dlg.options())

    def run_export(self, out: Path, options):
        """Export on a worker with progress and Cancel; says where the result is."""
        from segstudio.io.export import export_dataset

        from segstudio.io.outdir import OutputFolderError, check_output_folder

        if self.project is None:
            return None
        try:        # at once, before any work: the same rule the export itself applies
            check_output_folder(out, protect=[self.project.root], overwrite=options.overwrite,
                                marker="export.json", marker_key="format", what="dataset export")
        except OutputFolderError as e:
            self.report_error("Export refused", str(e))
            return None
        self.opener.refresh_status()
        self.saver.flush_manifest()
        job = Job(self.saver.flushed(export_dataset), Project.open(self.project.root), out, options,
                  name=f"Exporting {options.format}")
        job.signals.succeeded.connect(self._on_export_succeeded)
        job.signals.cancelled.connect(
            lambda: self.statusBar().showMessage("Export cancelled; nothing was written", 6000))
        return self.runner.start(job, visible=True)

    def _on_export_succeeded(self, result) -> None:
        counts = ", ".join(f"{k} {v}" for k, v in result.counts.items() if v)
        self.last_export = result
        self.statusBar().showMessage(f"Exported {result.format} ({counts}) to {result.out}", 12000)
        for s in result.skipped:
            self.report_error("Export: some images were skipped", s)

    def import_masks_dialog(self) -> None:
        from segstudio.io.imports import preview_import
        from segstudio.ui.export_dialogs import ImportDialog

        if self.project is None:
            return
        root = self.project.root
        dlg = ImportDialog([c.name for c in self.project.classes],
                           lambda src, opts: preview_import(Project.open(root), src, opts), self)
        if dlg.exec():
            self.run_import(*dlg.options())

    def run_import(self, src: Path, options):
        """Import on a worker; the project is reopened afterwards (its masks were replaced)."""
        from segstudio.io.imports import import_annotations

        if self.project is None:
            return None
        self.opener.refresh_status()
        self.saver.flush_manifest()
        job = Job(self.saver.flushed(import_annotations), Project.open(self.project.root), src,
                  options, name="Importing masks")
        job.signals.succeeded.connect(self._on_import_succeeded)
        # the masks are replaced on disk: no painting meanwhile (the project reopens after)
        self.canvas.set_loading("Importing masks…")
        job.signals.finished.connect(lambda: self.canvas.loading and self.canvas.set_loading(None))
        return self.runner.start(job, visible=True)

    def _on_import_succeeded(self, result) -> None:
        root = self.project.root if self.project is not None else None
        if root is not None:
            self.editing.forget_histories()
            self.open_project(Project.open(root))
        added = f"; new classes: {', '.join(result.added_classes)}" if result.added_classes else ""
        self.statusBar().showMessage(f"Imported masks for {len(result.imported)} image(s){added}", 12000)
        for s in result.skipped:
            self.report_error("Import: some files were skipped", s)


def _create_project(images: Path, root: Path, copy: bool, *, on_progress=None, cancel=None) -> Project:
    return Project.from_folder(images, root, copy=copy)
