"""Application start: build_main_window (tests call it) apart from run_app (exec)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from segstudio.io.project import Project, ProjectError

log = logging.getLogger(__name__)


def build_main_window(project: Project | None = None, **kwargs):
    from segstudio.ui.main_window import MainWindow

    return MainWindow(project, **kwargs)


def choose_project(path: Path | None, sample: bool) -> tuple[Project | None, str | None]:
    """The project to open first: the one asked for, the sample, or the last one; None shows
    the welcome page."""
    from segstudio.io.userdirs import recent_projects, sample_project

    if path is not None:
        try:
            return Project.open(path), None
        except ProjectError as e:
            return None, str(e)
    if not sample:
        for recent in recent_projects()[:1]:
            try:
                return Project.open(recent), None
            except ProjectError as e:
                log.warning("last project not opened: %s", e)
        return None, None
    try:
        return Project.open(sample_project()), None
    except (ProjectError, OSError) as e:
        return None, str(e)


def run_app(project: Path | None = None, sample: bool = False) -> int:
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("SegStudio")
    app.setOrganizationName("SegStudio")
    chosen, problem = choose_project(project, sample)
    window = build_main_window(chosen)
    window.show()
    if problem:
        window.report_error("Cannot open project", problem)
    return app.exec()
