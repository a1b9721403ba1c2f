"""CanvasView: draws the visible region of an image, its label overlay and a prediction.

Only the visible region is drawn, at the visible resolution: each view change gathers one
screen-sized sample of the image (a memory-mapped 16k x 16k TIFF is never read whole), and a
stroke recomputes the overlay of the screen rows and columns it touched, nothing more. Input
(painting, tools, pan and zoom by mouse and keys) is MaskCanvas's, in canvas.py.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent, QResizeEvent
from PySide6.QtWidgets import QWidget

from segstudio.core.classes import LabelClass, color_lut, object_class_ids
from segstudio.core.display import DisplayRange, default_range, to_display
from segstudio.core.document import ImageDocument
from segstudio.core.geometry import Rect
from segstudio.ui.layers import VIEW_MODES, PredictionLayer
from segstudio.ui.object_layer import render_objects

BACKDROP = (40, 40, 44)
_BACKDROP_COLOR = QColor(*BACKDROP)
MIN_ZOOM, MAX_ZOOM = 1e-3, 64.0


def _bgra_lut(classes: list[LabelClass], opacity: float) -> np.ndarray:
    lut = color_lut(classes, opacity)              # RGBA premultiplied
    return np.ascontiguousarray(lut[:, [2, 1, 0, 3]])  # QImage ARGB32 is B, G, R, A in memory



class CanvasView(QWidget):
    """The image, its mask and a prediction at a zoom and offset; repaints only what changed."""

    view_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setMinimumSize(200, 150)
        self._data: np.ndarray | None = None
        self._doc: ImageDocument | None = None
        self._range = DisplayRange(0, 255)
        self._classes: list[LabelClass] = []
        self._lut = _bgra_lut([], 0.5)
        self._opaque_rgb = self._lut[:, :3]
        self.opacity = 0.5
        self.mask_visible = True
        self.outline = False
        self.object_edges = False       # draw each object's boundary over its fill
        self.selected_objects = np.zeros(0, np.uint32)
        self.zoom = 1.0
        self.offset = QPointF(0, 0)     # widget position of the image's top-left corner
        self._ys = np.zeros(0, np.int64)
        self._xs = np.zeros(0, np.int64)
        self._ykey = self._ys
        self._xkey = self._xs
        self._base: QImage | None = None
        self._base_rect = QRect()
        self._base_buf: np.ndarray | None = None
        self._over_buf: np.ndarray | None = None
        self._over: QImage | None = None
        self.prediction = PredictionLayer()
        self._pred_buf: np.ndarray | None = None
        self._pred_img: QImage | None = None

    # -- content ---------------------------------------------------------------------------
    @property
    def document(self) -> ImageDocument | None:
        return self._doc

    @property
    def image_data(self) -> np.ndarray | None:
        return self._data

    @property
    def image_shape(self) -> tuple[int, int] | None:
        return None if self._data is None else self._data.shape[:2]

    def set_content(self, data: np.ndarray | None, doc: ImageDocument | None,
                    display: DisplayRange | None = None, keep_view: bool = False,
                    view: tuple[float, float, float] | None = None) -> None:
        """Show an image and its mask, fitted to the window; `keep_view`: at the zoom and
        position of the image shown before when it has the same size (the next slice);
        `view` (zoom, centre y, centre x): there instead (a restored view), drawn once."""
        same_size = (keep_view and data is not None and self._data is not None
                     and data.shape[:2] == self._data.shape[:2])
        if self._doc is not None:
            self._doc.changed.disconnect(self._on_doc_changed)
        self._data, self._doc = data, doc
        self.prediction.labels = self.prediction.uncertainty = None
        self.selected_objects = np.zeros(0, np.uint32)
        if doc is not None:
            doc.changed.connect(self._on_doc_changed)
            if self._classes:           # the canvas's classes say which carry objects
                doc.object_classes = object_class_ids(self._classes)
        if data is not None:
            self._range = display or default_range(data)
        if view is not None and data is not None:
            self.show_view(*view)
        elif same_size:
            self._render_all()
            self.update()
        else:
            self.fit()

    def set_display_range(self, rng: DisplayRange) -> None:
        self._range = rng
        self._render_base()
        self.update()

    @property
    def display_range(self) -> DisplayRange:
        return self._range

    def set_classes(self, classes: list[LabelClass]) -> None:
        self._classes = list(classes)
        if self._doc is not None and self._classes:
            self._doc.object_classes = object_class_ids(self._classes)
        self.prediction.set_classes(self._classes)
        self._refresh_overlay_lut()
        self._render_prediction(None)

    def set_opacity(self, opacity: float) -> None:
        self.opacity = opacity
        self._refresh_overlay_lut()

    def set_outline(self, outline: bool) -> None:
        self.outline = outline
        self._render_overlay(None)
        self.update()

    def set_object_edges(self, on: bool) -> None:
        self.object_edges = bool(on)
        self._render_overlay(None)
        self.update()

    def set_selected_objects(self, ids) -> None:
        """Objects drawn with a white edge (the Objects tool's selection)."""
        self.selected_objects = np.unique(np.asarray(list(ids), np.uint32))
        self._render_overlay(None)
        self.update()

    def set_mask_visible(self, visible: bool) -> None:
        self.mask_visible = visible
        self.update()

    def _refresh_overlay_lut(self) -> None:
        self._lut = _bgra_lut(self._classes, self.opacity)
        self._opaque_rgb = _bgra_lut(self._classes, 1.0)[:, :3]
        self._render_overlay(None)
        self.update()

    # -- view ------------------------------------------------------------------------------
    def fit(self) -> None:
        if self._data is None:
            self._render_all()
            return
        h, w = self._data.shape[:2]
        z = min(self.width() / w, self.height() / h) * 0.98
        self._set_view(z, QPointF((self.width() - w * z) / 2, (self.height() - h * z) / 2))

    def actual_size(self) -> None:
        self.zoom_to(1.0, QPointF(self.width() / 2, self.height() / 2))

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        self.zoom_to(self.zoom * factor, anchor)

    def zoom_to(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Zoom keeping the image point under `anchor` (widget coords) where it is."""
        anchor = anchor or QPointF(self.width() / 2, self.height() / 2)
        zoom = min(MAX_ZOOM, max(MIN_ZOOM, zoom))
        ix = (anchor.x() - self.offset.x()) / self.zoom
        iy = (anchor.y() - self.offset.y()) / self.zoom
        self._set_view(zoom, QPointF(anchor.x() - ix * zoom, anchor.y() - iy * zoom))

    def show_view(self, zoom: float, y: float, x: float) -> None:
        """Zoom to `zoom` with image point (y, x) at the centre, in one redraw."""
        zoom = min(MAX_ZOOM, max(MIN_ZOOM, zoom))
        self._set_view(zoom, QPointF(self.width() / 2 - x * zoom, self.height() / 2 - y * zoom))

    def center_on(self, y: float, x: float) -> None:
        self.show_view(self.zoom, y, x)

    def view_center(self) -> tuple[float, float]:
        return ((self.height() / 2 - self.offset.y()) / self.zoom,
                (self.width() / 2 - self.offset.x()) / self.zoom)

    def pan_by(self, dx: float, dy: float) -> None:
        self._set_view(self.zoom, QPointF(self.offset.x() + dx, self.offset.y() + dy))

    def _set_view(self, zoom: float, offset: QPointF) -> None:
        self.zoom, self.offset = zoom, offset
        self._render_all()
        self.update()
        self.view_changed.emit()

    def widget_to_image(self, p: QPointF) -> tuple[float, float]:
        return (p.y() - self.offset.y()) / self.zoom, (p.x() - self.offset.x()) / self.zoom

    def image_to_widget(self, y: float, x: float) -> QPointF:
        return QPointF(x * self.zoom + self.offset.x(), y * self.zoom + self.offset.y())

    # -- rendering -------------------------------------------------------------------------
    def _axis(self, n: int, off: float, limit: int) -> np.ndarray:
        idx = np.floor((np.arange(n) + 0.5 - off) / self.zoom).astype(np.int64)
        idx[(idx < 0) | (idx >= limit)] = -1
        return idx

    def _render_all(self) -> None:
        w, h = max(1, self.width()), max(1, self.height())
        if self._data is None:
            self._ys = np.full(h, -1, np.int64)
            self._xs = np.full(w, -1, np.int64)
        else:
            H, W = self._data.shape[:2]
            self._ys = self._axis(h, self.offset.y(), H)
            self._xs = self._axis(w, self.offset.x(), W)
        self._ykey = self._sort_key(self._ys)
        self._xkey = self._sort_key(self._xs)
        self._render_base()
        self._over_buf = np.zeros((h, w, 4), np.uint8)
        self._over = QImage(self._over_buf.data, w, h, w * 4, QImage.Format.Format_ARGB32_Premultiplied)
        self._pred_buf = np.zeros((h, w, 4), np.uint8)
        self._pred_img = QImage(self._pred_buf.data, w, h, w * 4, QImage.Format.Format_ARGB32_Premultiplied)
        self._render_overlay(None)
        self._render_prediction(None)

    def _visible(self) -> tuple[slice, slice] | None:
        rows = np.flatnonzero(self._ys >= 0)
        cols = np.flatnonzero(self._xs >= 0)
        if rows.size == 0 or cols.size == 0:
            return None
        return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)

    def _gather(self, array: np.ndarray, rs: slice, cs: slice) -> np.ndarray:
        ys, xs = self._ys[rs], self._xs[cs]
        y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
        if self.zoom >= 1.0:        # few source pixels: read the block once, then repeat
            block = np.asarray(array[y0:y1, x0:x1])
            # two 1-D takes: ~2x faster than one broadcast 2-D fancy index
            return np.take(np.take(block, ys - y0, axis=0), xs - x0, axis=1)
        # zoomed out: the rows first, then the columns of those rows (two takes, ~3x faster
        # than one 2-D fancy index over a 512 px slice)
        return np.take(np.take(array, ys, axis=0), xs, axis=1)

    def _render_base(self) -> None:
        """The image's visible part only, in its own format (grey stays one byte a pixel):
        the backdrop around it is a fill at paint time, not pixels written per change."""
        self._base = self._base_buf = None
        vis = self._visible() if self._data is not None else None
        if vis is None:
            return
        rs, cs = vis
        shown = np.ascontiguousarray(to_display(self._gather(self._data, rs, cs), self._range))
        h, w = shown.shape[:2]
        grey = shown.ndim == 2
        self._base_buf = shown
        self._base = QImage(shown.data, w, h, w * (1 if grey else 3),
                            QImage.Format.Format_Grayscale8 if grey else QImage.Format.Format_RGB888)
        self._base_rect = QRect(cs.start, rs.start, w, h)

    def _render_overlay(self, rows_cols: tuple[slice, slice] | None) -> None:
        """Recompute overlay pixels in a widget region (None: the whole visible part)."""
        if self._over_buf is None or self._doc is None:
            return
        region = self._clip_region(rows_cols)
        if region is None:
            return
        rs, cs = region
        vis = self._visible()
        if self._doc.objects is not None:
            self._render_objects(rs, cs, vis)
            return
        if not self.outline:
            # the 4 bytes of a pixel as one uint32: one lookup per pixel, not four
            lut32 = np.ascontiguousarray(self._lut).view(np.uint32).reshape(-1)
            over32 = self._over_buf.view(np.uint32).reshape(self._over_buf.shape[:2])
            over32[rs, cs] = lut32[self._gather(self._doc.mask, rs, cs)]
            return
        # outline: only screen pixels whose neighbour shows another class; one pixel of
        # margin so edges at the border of the updated region are right
        r0, r1 = max(rs.start - 1, vis[0].start), min(rs.stop + 1, vis[0].stop)
        c0, c1 = max(cs.start - 1, vis[1].start), min(cs.stop + 1, vis[1].stop)
        m = self._gather(self._doc.mask, slice(r0, r1), slice(c0, c1))
        edge = np.zeros(m.shape, bool)
        edge[:-1] |= m[:-1] != m[1:]
        edge[1:] |= m[1:] != m[:-1]
        edge[:, :-1] |= m[:, :-1] != m[:, 1:]
        edge[:, 1:] |= m[:, 1:] != m[:, :-1]
        lut = self._lut.copy()
        lut[:, 3] = np.where(lut[:, 3] > 0, 255, 0)
        lut[:, :3] = np.where(lut[:, 3:4] > 0, self._opaque_rgb, 0)
        colored = np.where(edge[..., None], lut[m], 0).astype(np.uint8)
        self._over_buf[rs, cs] = colored[rs.start - r0:rs.stop - r0, cs.start - c0:cs.stop - c0]

    def _render_objects(self, rs: slice, cs: slice, vis: tuple[slice, slice]) -> None:
        """The overlay where the image has an instance layer: objects in shades of their
        class, with a pixel of margin so edges at the region's border are right."""
        r0, r1 = max(rs.start - 1, vis[0].start), min(rs.stop + 1, vis[0].stop)
        c0, c1 = max(cs.start - 1, vis[1].start), min(cs.stop + 1, vis[1].stop)
        m = self._gather(self._doc.mask, slice(r0, r1), slice(c0, c1))
        o = self._gather(self._doc.objects, slice(r0, r1), slice(c0, c1))
        o = np.where(self._doc.is_object_class(m), o, 0)   # a class unmarked since: plain pixels
        out = render_objects(m, o, self._lut, self._opaque_rgb, outline=self.outline,
                             object_edges=self.object_edges, selected=self.selected_objects)
        self._over_buf[rs, cs] = out[rs.start - r0:rs.stop - r0, cs.start - c0:cs.stop - c0]

    def _widget_span(self, rect: Rect) -> tuple[slice, slice]:
        """Widget rows and columns that show image rect `rect`."""
        r0, r1 = np.searchsorted(self._ykey, [rect.y0, rect.y1], "left")
        c0, c1 = np.searchsorted(self._xkey, [rect.x0, rect.x1], "left")
        return slice(int(r0), int(r1)), slice(int(c0), int(c1))

    @staticmethod
    def _sort_key(idx: np.ndarray) -> np.ndarray:
        # -1 marks screen pixels off the image: before it they sort first, after it last
        key = idx.copy()
        valid = np.flatnonzero(idx >= 0)
        if valid.size:
            key[valid[-1] + 1:] = 1 << 40
        return key

    def _clip_region(self, rows_cols: tuple[slice, slice] | None) -> tuple[slice, slice] | None:
        vis = self._visible()
        if vis is None:
            return None
        if rows_cols is None:
            return vis
        rs = slice(max(rows_cols[0].start, vis[0].start), min(rows_cols[0].stop, vis[0].stop))
        cs = slice(max(rows_cols[1].start, vis[1].start), min(rows_cols[1].stop, vis[1].stop))
        return None if rs.stop <= rs.start or cs.stop <= cs.start else (rs, cs)

    def _render_prediction(self, rows_cols: tuple[slice, slice] | None) -> None:
        if self._pred_buf is None or self._doc is None:
            return
        if rows_cols is None:
            self._pred_buf[:] = 0
        region = self._clip_region(rows_cols)
        if region is None:
            return
        pixels = self.prediction.render(self._gather, self._doc.mask, *region)
        self._pred_buf[region] = 0 if pixels is None else pixels

    # -- prediction layer ------------------------------------------------------------------
    def set_prediction(self, labels: np.ndarray | None, uncertainty: np.ndarray | None = None) -> None:
        """Show a model's labels (and uncertainty) for the current image; None hides them."""
        if labels is not None and self._data is not None and labels.shape != self._data.shape[:2]:
            raise ValueError(f"prediction {labels.shape} does not fit the image {self._data.shape[:2]}")
        self.prediction.labels, self.prediction.uncertainty = labels, uncertainty
        self._render_prediction(None)
        self._render_overlay(None)
        self.update()

    def set_view_mode(self, mode: str) -> None:
        if mode not in VIEW_MODES:
            raise ValueError(f"unknown view {mode!r}; known: {list(VIEW_MODES)}")
        self.prediction.mode = mode
        self._render_prediction(None)
        self.update()

    def set_prediction_opacity(self, opacity: float) -> None:
        self.prediction.opacity = opacity
        self.prediction.set_classes(self._classes)
        self._render_prediction(None)
        self.update()

    def _on_doc_changed(self, rect: Rect) -> None:
        rs, cs = self._widget_span(rect)
        if rs.stop <= rs.start or cs.stop <= cs.start:
            return
        self._render_overlay((rs, cs))
        if self.prediction.active and self.prediction.mode == "disagreement":
            self._render_prediction((rs, cs))
        self.update(QRect(cs.start, rs.start, cs.stop - cs.start, rs.stop - rs.start))

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        r = event.rect()
        p.fillRect(r, _BACKDROP_COLOR)
        if self._base is not None:
            part = r.intersected(self._base_rect)
            if not part.isEmpty():
                p.drawImage(part, self._base, part.translated(-self._base_rect.topLeft()))
        if self.prediction.active and self._pred_img is not None:
            p.drawImage(r, self._pred_img, r)
        if (self.mask_visible and self.prediction.shows_mask and self._over is not None
                and self._doc is not None):
            p.drawImage(r, self._over, r)
        self._paint_above(p)
        p.end()

    def _paint_above(self, p: QPainter) -> None:
        """What input draws over the layers (proposals, tools, the brush ring)."""

    def resizeEvent(self, event: QResizeEvent) -> None:
        old: QSize = event.oldSize()
        if old.width() > 0 and self._data is not None:
            # keep the same image point at the centre
            cy = (old.height() / 2 - self.offset.y()) / self.zoom
            cx = (old.width() / 2 - self.offset.x()) / self.zoom
            self.offset = QPointF(self.width() / 2 - cx * self.zoom, self.height() / 2 - cy * self.zoom)
            self._render_all()
        else:
            self.fit()


def zoom_percent(zoom: float) -> str:
    return f"{zoom * 100:.0f}%" if zoom >= 0.1 else f"{zoom * 100:.1f}%"

