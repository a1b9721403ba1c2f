"""Application start: build_main_window (tests call it) apart from run_app (exec).

No Qt at module level: `qt_platform_problem` runs before the QApplication exists (and in
`segstudio-cli doctor`, which runs where PySide6 is not installed).
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from segstudio.io.project import Project, ProjectError

log = logging.getLogger(__name__)

# How long a thread may hold the GIL while another waits (Python's default is 5 ms). The GUI
# thread gives the GIL up on nearly every Qt call and must win it back from a worker busy in
# Python (importing torch, sampling patches) each time: at 5 ms per hand-back a few Qt calls
# made one event-loop pass 40-90 ms late. gui_responsiveness.py --case project-ops on 2 cores
# (benchmarks/results/gui_responsiveness.jsonl): the longest stall after opening and starting
# training 19-50 ms at 5 ms (ae5f7ca, 3 runs), 18-26 ms at 1 ms (46ff803, 3 runs).
GUI_SWITCH_INTERVAL_S = 0.001


def build_main_window(project: Project | None = None, **kwargs):
    from segstudio.ui.main_window import MainWindow

    sys.setswitchinterval(min(sys.getswitchinterval(), GUI_SWITCH_INTERVAL_S))
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


# What Qt's xcb platform plugin links beyond libxcb itself (ldd libqxcb.so / libQt6XcbQpa.so.6),
# with the package that ships each: (soname, Debian/Ubuntu package, Fedora package). PySide6
# wheels bundle Qt but not these; without one, Qt aborts with "could not load the Qt platform
# plugin xcb", which does not say what to install.
XCB_LIBRARIES: tuple[tuple[str, str, str], ...] = (
    ("libxcb-cursor.so.0", "libxcb-cursor0", "xcb-util-cursor"),
    ("libxcb-icccm.so.4", "libxcb-icccm4", "xcb-util-wm"),
    ("libxcb-keysyms.so.1", "libxcb-keysyms1", "xcb-util-keysyms"),
    ("libxcb-image.so.0", "libxcb-image0", "xcb-util-image"),
    ("libxcb-render-util.so.0", "libxcb-render-util0", "xcb-util-renderutil"),
    ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0", "libxkbcommon-x11"),
)
SKIP_CHECK_ENV = "SEGSTUDIO_SKIP_QT_CHECK"     # "1": start even if the check below objects


def missing_libraries(libraries: Sequence[tuple[str, str, str]] | None = None
                      ) -> list[tuple[str, str, str]]:
    """The entries (default: XCB_LIBRARIES) whose library the loader cannot load (a real dlopen)."""
    missing = []
    for entry in XCB_LIBRARIES if libraries is None else libraries:
        try:
            ctypes.CDLL(entry[0])
        except OSError:
            missing.append(entry)
    return missing


def _uses_xcb(env: Mapping[str, str]) -> bool:
    """Whether Qt will try its xcb plugin: QT_QPA_PLATFORM unset (outside Wayland) or xcb."""
    wanted = env.get("QT_QPA_PLATFORM", "")
    if wanted:
        return wanted.split(";")[0].split(":")[0] == "xcb"
    return not (env.get("WAYLAND_DISPLAY") and env.get("XDG_SESSION_TYPE") == "wayland")


def qt_platform_problem(env: Mapping[str, str] | None = None, system: str | None = None,
                        libraries: Sequence[tuple[str, str, str]] | None = None) -> str | None:
    """What to install when Qt's xcb plugin would fail to load, checked before Qt starts.

    Only on Linux with an X display and xcb as the platform; None when all is well or the
    check does not apply.
    """
    env = os.environ if env is None else env
    if (system or platform.system()) != "Linux" or not env.get("DISPLAY") or not _uses_xcb(env):
        return None
    missing = missing_libraries(libraries)
    if not missing:
        return None
    debs = " ".join(dict.fromkeys(m[1] for m in missing))
    rpms = " ".join(dict.fromkeys(m[2] for m in missing))
    noun = "package" if len(missing) == 1 else "packages"
    return (f"Qt needs the system {noun} {debs} (Debian/Ubuntu: sudo apt-get install {debs}; "
            f"Fedora: sudo dnf install {rpms}) to open a window; missing: "
            f"{', '.join(m[0] for m in missing)}")


def window_report(env: Mapping[str, str] | None = None) -> str:
    """One line for `segstudio-cli doctor`: can this machine open the window?"""
    env = os.environ if env is None else env
    if platform.system() != "Linux":
        return "Window (Qt): not checked on this system"
    problem = qt_platform_problem(env)
    if problem:
        return f"Window (Qt): {problem}"
    if not _uses_xcb(env):
        return f"Window (Qt): platform {env.get('QT_QPA_PLATFORM') or 'wayland'}; xcb not checked"
    if not env.get("DISPLAY"):
        return ("Window (Qt): no X display (DISPLAY is unset): the window needs a desktop "
                "session; every other command works without one")
    return f"Window (Qt): ok (the xcb platform libraries load; DISPLAY={env['DISPLAY']})"


def run_app(project: Path | None = None, sample: bool = False) -> int:
    problem = None if os.environ.get(SKIP_CHECK_ENV) == "1" else qt_platform_problem()
    if problem:      # before the QApplication: Qt would abort without saying what to install
        sys.stderr.write(f"segstudio: error: {problem}\n"
                         f"(set {SKIP_CHECK_ENV}=1 to start anyway)\n")
        return 1
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("SegStudio")
    app.setOrganizationName("SegStudio")
    chosen, problem = choose_project(project, sample)
    try:
        window = build_main_window(chosen)
    except Exception as e:     # never a start that crashes every time on the same project
        if chosen is None:
            raise
        log.exception("opening %s failed", chosen.root)
        window = build_main_window(None)
        problem = f"{chosen.root} could not be opened ({type(e).__name__}: {e})"
    window.show()
    if problem:
        window.report_error("Cannot open project", problem)
    return app.exec()
