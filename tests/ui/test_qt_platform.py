"""Qt's xcb plugin needs system libraries PySide6 does not ship: say which package to install
before Qt aborts with a message that does not. Real dlopen failures, no fake Qt."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from segstudio import cli
from segstudio.ui import app

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Qt's xcb plugin is Linux only")

REPO = Path(__file__).resolve().parents[2]
NOT_THERE = ("libsegstudio-no-such-xcb-cursor.so.0", "libxcb-cursor0", "xcb-util-cursor")
X11 = {"DISPLAY": ":0"}


def test_a_library_that_does_not_exist_is_missing():
    assert app.missing_libraries([NOT_THERE]) == [NOT_THERE]
    libc = ("libc.so.6", "libc6", "glibc")
    assert app.missing_libraries([libc]) == []


def test_the_problem_says_what_to_install():
    problem = app.qt_platform_problem(X11, "Linux", [NOT_THERE])
    assert problem.startswith("Qt needs the system package libxcb-cursor0 (Debian/Ubuntu: "
                              "sudo apt-get install libxcb-cursor0; Fedora: sudo dnf install "
                              "xcb-util-cursor)")
    assert NOT_THERE[0] in problem
    # only where Qt would use xcb on an X display
    assert app.qt_platform_problem({}, "Linux", [NOT_THERE]) is None
    assert app.qt_platform_problem({**X11, "QT_QPA_PLATFORM": "offscreen"}, "Linux",
                                   [NOT_THERE]) is None
    assert app.qt_platform_problem({**X11, "QT_QPA_PLATFORM": "xcb"}, "Linux", [NOT_THERE])
    assert app.qt_platform_problem(X11, "Darwin", [NOT_THERE]) is None


def test_segstudio_stops_before_qt_with_the_package_to_install(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE",
                        app.SKIP_CHECK_ENV)}
    env.update(DISPLAY=":0", SEGSTUDIO_CONFIG_DIR=str(tmp_path / "c"),
               SEGSTUDIO_DATA_DIR=str(tmp_path / "d"))
    code = (f"import sys; from segstudio.ui import app; app.XCB_LIBRARIES = ({NOT_THERE!r},); "
            "sys.argv = ['segstudio']; from segstudio import cli; rc = cli.gui_main(); "
            "assert 'PySide6.QtWidgets' not in sys.modules, 'Qt was started'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "Qt needs the system package libxcb-cursor0 (Debian/Ubuntu: sudo apt-get install " \
           "libxcb-cursor0" in proc.stderr


def test_doctor_lists_the_window_check(monkeypatch, capsys):
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setattr(app, "XCB_LIBRARIES", (NOT_THERE,))
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "Window (Qt): Qt needs the system package libxcb-cursor0 (Debian/Ubuntu: sudo apt-get " \
           "install libxcb-cursor0" in out
