import os

# Before anything imports Qt: without a screen, creating the QApplication would abort.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "resources" / "sample_project"


@pytest.fixture(autouse=True)
def _private_user_dirs(tmp_path_factory, monkeypatch):
    """Recent projects, sample copies and logs go to a temporary folder, never the user's."""
    base = tmp_path_factory.mktemp("userdirs")
    monkeypatch.setenv("SEGSTUDIO_CONFIG_DIR", str(base / "config"))
    monkeypatch.setenv("SEGSTUDIO_DATA_DIR", str(base / "data"))


@pytest.fixture
def sample_copy(tmp_path) -> Path:
    """A writable copy of the bundled sample project."""
    import shutil

    dest = tmp_path / "sample project é"   # spaces and non-ASCII on purpose
    shutil.copytree(SAMPLE, dest)
    return dest


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def open_window(qtbot):
    """open_window(project_root) -> the real main window, shown, with its first image loaded."""
    def _open(root, size=(1300, 850), **kwargs):
        from segstudio.io.project import Project
        from segstudio.ui.app import build_main_window

        w = build_main_window(Project.open(root), **kwargs)
        qtbot.addWidget(w)
        w.resize(*size)
        w.show()
        qtbot.waitExposed(w)
        qtbot.waitUntil(lambda: w.canvas.document is not None, timeout=10_000)
        return w
    return _open


@pytest.fixture
def export_in_window(qtbot):
    """export_in_window(window, out, fmt): run the window's export job and wait for its result."""
    def _export(w, out, fmt):
        from segstudio.io.export import ExportOptions

        w.last_export = None
        w.run_export(out, ExportOptions(format=fmt))
        qtbot.waitUntil(lambda: w.last_export is not None and w.last_export.format == fmt,
                        timeout=60_000)
        return w.last_export
    return _export
