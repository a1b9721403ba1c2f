"""FileMenu: the File menu's work — open, create and add, recent projects, drag and drop,
export and import. A part of the window that is given callables, not the window."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMenu, QMessageBox, QWidget

from segstudio.io.images import image_file_filter, is_supported
from segstudio.io.project import MANIFEST, ImageEntry, Project, ProjectError
from segstudio.io.userdirs import recent_projects, sample_project
from segstudio.ui.canvas import MaskCanvas
from segstudio.ui.saving import ProjectSaver
from segstudio.workers.job import Job, plain_error


class FileMenu:
    """Open, create, add, export and import for a window, given the few things it needs.

    `project()` is the open project; `open_project(project)` shows one; `images_joined(entries)`
    is told which images a scan added (the window lists them and shows the first); jobs go to
    `start_job`, problems to `report_error`, notes to `show_message`. Dialogs open over `parent`.
    """

    def __init__(self, parent: QWidget, *, project: Callable[[], Project | None],
                 open_project: Callable[[Project], None],
                 report_error: Callable[..., None],
                 start_job: Callable[..., Job],
                 saver: ProjectSaver,
                 canvas: MaskCanvas,
                 show_message: Callable[[str, int], None] = lambda text, ms: None,
                 refresh_status: Callable[[], None] = lambda: None,
                 images_joined: Callable[[list[ImageEntry]], None] = lambda added: None,
                 forget_histories: Callable[[], None] = lambda: None) -> None:
        self.parent = parent
        self._project = project
        self._open_project = open_project
        self._report_error = report_error
        self._start_job = start_job
        self.saver = saver
        self.canvas = canvas
        self._show_message = show_message
        self._refresh_status = refresh_status
        self._images_joined = images_joined
        self._forget_histories = forget_histories
        self.last_export = None         # the last ExportResult (tests wait for it)

    def open_project_path(self, path: Path) -> bool:
        try:
            project = Project.open(path)
        except ProjectError as e:
            self._report_error("Cannot open project", str(e))
            return False
        self._open_project(project)
        return True

    def open_project_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.parent, "Open project folder")
        if folder:
            self.open_project_path(Path(folder))

    def open_sample(self) -> None:
        try:
            self.open_project_path(sample_project())
        except OSError as e:
            self._report_error("Cannot open the sample project", str(e))

    def new_project_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.parent, "Folder of images for the new project")
        if not folder:
            return
        copy = QMessageBox.question(
            self.parent, "New project", "Copy the images into the project folder?\n"
            "No: the project refers to them where they are.") == QMessageBox.StandardButton.Yes
        self.create_project(Path(folder), Path(folder) / "segstudio-project", copy=copy)

    def create_project(self, images: Path, root: Path, *, copy: bool = False):
        """Create a project on a worker (probing and copying a folder takes a while), then open it."""

        job = Job(_create_project, images, root, copy, name="Creating the project")
        job.signals.succeeded.connect(self._open_project)
        job.signals.failed.connect(
            lambda details: self._report_error("Cannot create the project", plain_error(details)))
        return self._start_job(job, report_failure=False, visible=True)

    def add_images_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self.parent, "Add images", "", image_file_filter())
        if files:
            self.add_images([Path(f) for f in files])

    def add_images(self, paths: list[Path], copy: bool = False):
        """Probe (and copy) the files on a worker; they join the project when it is done."""

        project = self._project()
        if project is None:
            return None
        if project.read_only:
            self._report_error("Images not added", f"Read-only: {project.read_only}")
            return None
        job = Job(project.scan_images, list(paths), copy=copy, known=project.known_files(),
                  name=f"Adding {len(paths)} image(s)")
        job.signals.succeeded.connect(partial(self._on_images_scanned, project))
        return self._start_job(job, visible=True)

    def _on_images_scanned(self, project: Project, scan) -> list[ImageEntry]:
        if project is not self._project():
            return []           # another project was opened meanwhile
        try:
            added = project.add_scanned(scan)
        except (OSError, ProjectError) as e:
            self._report_error("Images not added", str(e))
            return []
        for problem in scan.problems:
            self._report_error("Some files were skipped", problem)
        if scan.notes:       # added anyway: one message for all of them
            self._report_error("Volumes added, with notes", "\n".join(scan.notes))
        self._images_joined(added)
        return added

    def fill_recent(self, menu: QMenu) -> None:
        menu.clear()
        for path in recent_projects():
            act = menu.addAction(str(path))
            act.triggered.connect(partial(self.open_project_path, path))
        if menu.isEmpty():
            menu.addAction("(none yet)").setEnabled(False)

    def drop(self, paths: list[Path]) -> None:
        """Dropped on the window: a project folder (or its project.json) opens, files are added."""
        projects = [p for p in paths if (p / MANIFEST).exists() or p.name == MANIFEST]
        if projects:
            self.open_project_path(projects[0])
            return
        self.add_images(files_under(paths))

    def add_folder_dialog(self) -> None:
        """Every image under a folder; DICOM files come in as series (volumes)."""
        folder = QFileDialog.getExistingDirectory(self.parent, "Add the images under a folder")
        if folder:
            self.add_images(files_under([Path(folder)]))

    # -- datasets in and out ---------------------------------------------------------------
    def export_dataset_dialog(self) -> None:
        from segstudio.ui.export_dialogs import ExportDialog

        project = self._project()
        if project is None:
            return
        from segstudio.io.export import label_status

        dlg = ExportDialog([c.name for c in project.classes],
                           project.root.parent / f"{project.root.name}-dataset", self.parent,
                           label_status=label_status(project))
        if dlg.exec():
            self.run_export(*dlg.options())

    def run_export(self, out: Path, options):
        """Export on a worker with progress and Cancel; says where the result is."""
        from segstudio.io.export import export_dataset

        from segstudio.io.outdir import OutputFolderError, check_output_folder

        project = self._project()
        if project is None:
            return None
        try:        # at once, before any work: the same rule the export itself applies
            check_output_folder(out, protect=[project.root], overwrite=options.overwrite,
                                marker="export.json", marker_key="format", what="dataset export")
        except OutputFolderError as e:
            self._report_error("Export refused", str(e))
            return None
        self._refresh_status()
        self.saver.flush_manifest()
        job = Job(self.saver.flushed(export_dataset), Project.open(project.root), out, options,
                  name=f"Exporting {options.format}")
        job.signals.succeeded.connect(self._on_export_succeeded)
        job.signals.cancelled.connect(
            lambda: self._show_message("Export cancelled; nothing was written", 6000))
        return self._start_job(job, visible=True)

    def _on_export_succeeded(self, result) -> None:
        counts = ", ".join(f"{k} {v}" for k, v in result.counts.items() if v)
        self.last_export = result
        self._show_message(f"Exported {result.format} ({counts}) to {result.out}", 12000)
        for s in result.skipped:
            self._report_error("Export: some images were skipped", s)

    def import_masks_dialog(self) -> None:
        from segstudio.io.imports import preview_import
        from segstudio.ui.export_dialogs import ImportDialog

        project = self._project()
        if project is None:
            return
        root = project.root
        dlg = ImportDialog([c.name for c in project.classes],
                           lambda src, opts: preview_import(Project.open(root), src, opts), self.parent)
        if dlg.exec():
            self.run_import(*dlg.options())

    def run_import(self, src: Path, options):
        """Import on a worker; the project is reopened afterwards (its masks were replaced)."""
        from segstudio.io.imports import import_annotations

        project = self._project()
        if project is None:
            return None
        self._refresh_status()
        self.saver.flush_manifest()
        job = Job(self.saver.flushed(import_annotations), Project.open(project.root), src,
                  options, name="Importing masks")
        job.signals.succeeded.connect(self._on_import_succeeded)
        # the masks are replaced on disk: no painting meanwhile (the project reopens after)
        self.canvas.set_loading("Importing masks…")
        job.signals.finished.connect(lambda: self.canvas.loading and self.canvas.set_loading(None))
        return self._start_job(job, visible=True)

    def _on_import_succeeded(self, result) -> None:
        project = self._project()
        if project is not None:
            self._forget_histories()
            self._open_project(Project.open(project.root))
        added = f"; new classes: {', '.join(result.added_classes)}" if result.added_classes else ""
        self._show_message(f"Imported masks for {len(result.imported)} image(s){added}", 12000)
        for s in result.skipped:
            self._report_error("Import: some files were skipped", s)
        warnings = getattr(result, "warnings", [])
        if warnings:     # clipped shapes and the like: imported, but the user should know (one box)
            more = f"\n… and {len(warnings) - 10} more (see the log)" if len(warnings) > 10 else ""
            self._report_error(f"Import: {len(warnings)} warning(s)", "\n".join(warnings[:10]) + more)


def _create_project(images: Path, root: Path, copy: bool, *, on_progress=None, cancel=None) -> Project:
    return Project.from_folder(images, root, copy=copy)


def _may_be_image(path: Path) -> bool:
    """By the name alone (no file is read here): a known image suffix, or the suffixes DICOM
    files from scanners carry (none, .IMA), which the scan on a worker then checks."""
    return is_supported(path) or path.suffix.lower() in ("", ".ima")


def files_under(paths: list[Path]) -> list[Path]:
    """Files given, and the files under folders given that may be images (hidden ones left
    out); the scan on a worker decides (DICOM slices often have no suffix)."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(q for q in p.rglob("*") if q.is_file() and _may_be_image(q)
                            and not any(part.startswith(".") for part in q.relative_to(p).parts))
        else:
            files.append(p)
    return files
