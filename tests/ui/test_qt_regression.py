"""PySide6 6.12.0 drops a reference to None at every processEvents(): after a few thousand
calls the interpreter aborts. This test fails (or crashes) on such a build."""

import sys

from PySide6.QtWidgets import QApplication


def test_process_events_many_times_keeps_none_alive(qtbot):
    app = QApplication.instance()
    before = sys.getrefcount(None)
    for _ in range(5000):
        app.processEvents()
    after = sys.getrefcount(None)
    assert after >= before - 100, f"None lost {before - after} references in 5000 processEvents()"
