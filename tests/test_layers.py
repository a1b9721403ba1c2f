"""core, io and ml never pull in Qt; core and io never pull in torch (they run headless)."""

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
                         cwd=REPO, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_core_and_io_import_without_qt_or_torch():
    mods = _modules_after(
        "import segstudio.core.document, segstudio.core.display, segstudio.core.history, "
        "segstudio.core.jobs, segstudio.io.project, segstudio.io.images, segstudio.io.masks, "
        "segstudio.io.autosave, segstudio.io.userdirs, segstudio.edit.regions, segstudio.edit.maskops, "
        "segstudio.cli")
    assert "segstudio.io.project" in mods
    assert not any(m.split(".")[0] in ("PySide6", "shiboken6", "torch") for m in mods)


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports", path=str(REPO / ".venv" / "bin")) or shutil.which("lint-imports")
    if exe is None:
        pytest.fail("import-linter is a dev dependency: `pip install -e .[dev]`")
    out = subprocess.run([exe], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 3 kept, 0 broken" in out.stdout


def test_window_starts_without_torch(sample_copy, tmp_path):
    """Start-up never loads torch on the GUI thread: the event loop runs until the first image
    is shown and the first model job (prediction with the starter model) has imported torch,
    and that import must have happened on a worker thread."""
    code = (
        "import os, sys, threading; os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
        "seen = {}\n"
        "class Spy:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name in ('torch', 'pyqtgraph') and name not in seen:\n"
        "            seen[name] = threading.current_thread().name\n"
        "        return None\n"
        "sys.meta_path.insert(0, Spy())\n"
        "from PySide6.QtCore import QTimer\n"
        "from PySide6.QtWidgets import QApplication\n"
        "from segstudio.io.project import Project\n"
        "from segstudio.ui.app import build_main_window\n"
        f"app = QApplication([]); w = build_main_window(Project.open({str(sample_copy)!r}))\n"
        "shown = []\n"
        "w.image_shown.connect(lambda i: shown.append(('torch' in seen, 'pyqtgraph' in seen)))\n"
        "w.show()\n"
        "def poll():\n"
        "    if shown and 'torch' in seen: app.quit()\n"
        "t = QTimer(interval=20); t.timeout.connect(poll); t.start()\n"
        "QTimer.singleShot(90_000, app.quit)\n"
        "app.exec()\n"
        "print('RESULT', shown[:1], seen.get('torch'), threading.main_thread().name)\n"
        "os._exit(0)\n")
    env = {**__import__("os").environ, "SEGSTUDIO_DATA_DIR": str(tmp_path / "data"),
           "SEGSTUDIO_CONFIG_DIR": str(tmp_path / "config")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env=env, timeout=120)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")), "")
    assert line, out.stdout + out.stderr
    # a worker may import torch before the first image shows (the warm-up on a slow machine),
    # the GUI thread never; pyqtgraph never comes with start-up
    assert line.startswith("RESULT [(") and ", False)]" in line, f"pyqtgraph was loaded: {line}"
    torch_thread, main = line.split()[-2:]
    assert torch_thread != "None", f"no model job imported torch within 90 s: {line}"
    assert torch_thread != main, f"torch was imported on the GUI thread: {line}"


def test_no_slot_imports_torch_on_the_gui_thread():
    """Model jobs import segstudio.ml on their worker: the first torch import takes ~1 s."""
    import ast
    for path in (REPO / "segstudio" / "ui").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for item in ast.walk(node):
                    if isinstance(item, ast.ImportFrom) and (item.module or "").startswith("segstudio.ml"):
                        raise AssertionError(f"{path.name}:{item.lineno} imports {item.module} in a "
                                             f"method (GUI thread); import it in the job body")
