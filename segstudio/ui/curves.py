"""CurvePlot: a light line chart for live training curves (QPainter; no plotting library)."""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget


class CurvePlot(QWidget):
    """Named series of (x, y) points, each drawn against its own y range (shown in the legend)."""

    def __init__(self, title: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.colors: dict[str, QColor] = {}
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def clear(self) -> None:
        self.series.clear()
        self.update()

    def add_series(self, name: str, color: str) -> None:
        self.series.setdefault(name, [])
        self.colors[name] = QColor(color)

    def append(self, name: str, x: float, y: float) -> None:
        if y is None or not math.isfinite(y):
            return
        self.series.setdefault(name, []).append((float(x), float(y)))
        self.update()

    def last(self, name: str) -> float | None:
        pts = self.series.get(name)
        return pts[-1][1] if pts else None

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor(252, 252, 252))
        area = QRectF(8, 22, self.width() - 16, self.height() - 30)
        p.setPen(QPen(QColor(200, 200, 200), 1))
        p.drawRect(area)
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1))
        p.setFont(font)
        p.setPen(QColor(60, 60, 60))
        p.drawText(QPointF(10, 15), self.title)
        xs = [x for pts in self.series.values() for x, _ in pts]
        if not xs:
            p.drawText(area, Qt.AlignmentFlag.AlignCenter, "no data yet")
            p.end()
            return
        x0, x1 = min(xs), max(xs)
        x1 = x1 if x1 > x0 else x0 + 1
        legend_x = 10 + p.fontMetrics().horizontalAdvance(self.title) + 16
        for name, pts in self.series.items():
            if not pts:
                continue
            ys = [y for _, y in pts]
            y0, y1 = min(ys), max(ys)
            if y1 - y0 < 1e-9:
                y0, y1 = y0 - 0.5, y1 + 0.5
            poly = QPolygonF([QPointF(area.left() + (x - x0) / (x1 - x0) * area.width(),
                                      area.bottom() - (y - y0) / (y1 - y0) * area.height())
                              for x, y in pts])
            color = self.colors.get(name, QColor(0, 114, 178))
            p.setPen(QPen(color, 1.6))
            if len(pts) == 1:
                p.drawEllipse(poly[0], 2.5, 2.5)
            else:
                p.drawPolyline(poly)
            label = f"{name} {pts[-1][1]:.3g}  [{y0:.3g}–{y1:.3g}]"
            p.drawText(QPointF(legend_x, 15), label)
            legend_x += p.fontMetrics().horizontalAdvance(label) + 14
        p.end()
