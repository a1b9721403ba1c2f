"""Child for test_window_crash: the real window paints strokes with real mouse events and
prints `acked N` each time the window's saver confirms N strokes on disk, until killed."""

import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QPoint, Qt, QTimer  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

IMAGE = "nuclei_07"
STROKES = 60


def stroke_row(k: int) -> int:
    """Stroke k paints row 8 + 4k from x 40 to 200 (rows never overlap)."""
    return 8 + 4 * k


def main(root: str, first: int) -> None:
    from segstudio.io.project import Project
    from segstudio.ui.app import build_main_window

    app = QApplication.instance() or QApplication([])
    w = build_main_window(Project.open(root), autosave_delay=0.002)
    w.resize(900, 700)
    w.show()
    acked = [0]

    def on_saved(image_id: str, n: int) -> None:
        if image_id == IMAGE:
            acked[0] += n
            print(f"acked {acked[0]}", flush=True)

    w.saver.saved.connect(on_saved)
    state = {"k": first}

    def paint_next() -> None:
        c = w.canvas
        if w.current is None or w.current.id != IMAGE or c.document is None or c.loading:
            return
        k = state["k"]
        if k >= STROKES:
            return
        y = stroke_row(k)
        a, b = c.image_to_widget(y, 40), c.image_to_widget(y, 200)
        QTest.mousePress(c, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                         QPoint(int(a.x()), int(a.y())))
        for t in range(1, 5):
            QTest.mouseMove(c, QPoint(int(a.x() + (b.x() - a.x()) * t / 4), int(a.y())))
        QTest.mouseRelease(c, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                           QPoint(int(b.x()), int(b.y())))
        state["k"] = k + 1

    def start() -> None:
        w.show_image(IMAGE)
        w.class_panel.select_id(1)
        w.set_brush_radius(1)
        timer.start()

    timer = QTimer(interval=15)
    timer.timeout.connect(paint_next)
    QTimer.singleShot(0, start)
    app.exec()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
