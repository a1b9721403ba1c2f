"""Brush latency in the real canvas: a 200-dab stroke (radius 20, spacing 10 px) on 4096² and
16384² images, processing events and the repaint after each dab.

Prints one JSON line {"results": {"4096": {"p50_ms", "p95_ms", "max_ms"}, "16384": {...}}}
plus, as a baseline in the same run, a plain QPainter raster canvas (QImage mask, drawEllipse,
update of the dab's rect) on the same path: `ratio_p95` = ours / plain at each size.
Runs offscreen unless QT_QPA_PLATFORM says otherwise.
"""

from __future__ import annotations

import json
import os
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from PySide6.QtCore import QPoint, QPointF, QRect, Qt  # noqa: E402
from PySide6.QtGui import QColor, QImage, QPainter  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402

from segstudio.core.classes import LabelClass  # noqa: E402
from segstudio.core.document import ImageDocument  # noqa: E402
from segstudio.ui.canvas import MaskCanvas  # noqa: E402

DABS, RADIUS, SPACING = 200, 20, 10
VIEW = (1280, 820)


def path_points() -> list[QPoint]:
    """A zig-zag of 200 points 10 px apart that stays inside the view."""
    pts, x, y, dx = [], 100, 100, SPACING
    for _ in range(DABS):
        pts.append(QPoint(x, y))
        if not 60 <= x + dx <= VIEW[0] - 60:
            dx = -dx
            y += 3 * SPACING
        x += dx
    return pts


def stats(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3),
            "p95_ms": round(float(np.percentile(a, 95)), 3), "max_ms": round(float(a.max()), 3)}


def time_stroke(widget: QWidget, app: QApplication) -> list[float]:
    pts = path_points()
    times = []
    QTest.mousePress(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pts[0])
    app.processEvents()
    for p in pts[1:]:
        t = time.perf_counter()
        QTest.mouseMove(widget, p)
        app.processEvents()   # delivers the move and the repaint it scheduled
        times.append((time.perf_counter() - t) * 1000)
    QTest.mouseRelease(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pts[-1])
    app.processEvents()
    return times


class PlainCanvas(QWidget):
    """The baseline: a mask QImage the size of the image, painted with QPainter ellipses."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.mask = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        self.mask.fill(0)
        self.setMouseTracking(True)

    def mouseMoveEvent(self, e) -> None:
        if e.buttons() & Qt.MouseButton.LeftButton:
            p = e.position()
            qp = QPainter(self.mask)
            qp.setPen(Qt.PenStyle.NoPen)
            qp.setBrush(QColor(230, 159, 0, 128))
            qp.drawEllipse(p, RADIUS, RADIUS)
            qp.end()
            self.update(QRect(int(p.x()) - RADIUS - 1, int(p.y()) - RADIUS - 1, 2 * RADIUS + 3, 2 * RADIUS + 3))

    def paintEvent(self, e) -> None:
        qp = QPainter(self)
        qp.drawImage(e.rect(), self.mask, e.rect())
        qp.end()


def main() -> None:
    app = QApplication.instance() or QApplication([])
    results, baseline, peak_history = {}, {}, {}
    for size in (4096, 16384):
        image = np.zeros((size, size), np.uint8)
        image[::64] = 120
        doc = ImageDocument.blank(size, size)
        canvas = MaskCanvas()
        canvas.resize(*VIEW)
        canvas.show()
        canvas.set_classes([LabelClass(0, "background", "#56B4E9"), LabelClass(1, "fg", "#E69F00")])
        canvas.set_content(image, doc)
        canvas.zoom_to(1.0, QPointF(0, 0))
        canvas.brush_radius = RADIUS
        canvas.class_value = 1
        app.processEvents()
        time_stroke(canvas, app)          # warm-up stroke
        results[str(size)] = stats(time_stroke(canvas, app))
        peak_history[str(size)] = doc.history.nbytes
        canvas.close()
        plain = PlainCanvas(size)
        plain.resize(*VIEW)
        plain.show()
        app.processEvents()
        time_stroke(plain, app)
        baseline[str(size)] = stats(time_stroke(plain, app))
        plain.close()
        del canvas, plain, doc, image
    print(json.dumps({
        "benchmark": "paint_latency", "dabs": DABS, "radius": RADIUS, "spacing": SPACING,
        "results": results, "baseline": "plain QPainter raster canvas", "baseline_results": baseline,
        "ratio_p95": {k: round(results[k]["p95_ms"] / max(baseline[k]["p95_ms"], 1e-6), 2) for k in results},
        "history_bytes_after_two_strokes": peak_history, "napari": "not measured here",
        "targets_p95_ms": {"4096": 4, "16384": 8}, "platform": os.environ["QT_QPA_PLATFORM"]}))


if __name__ == "__main__":
    main()
