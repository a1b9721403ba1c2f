"""One image's label mask with its undo history; every change is a tile diff."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from psygnal import Signal

from segstudio.core.classes import UNLABELED
from segstudio.core.geometry import Rect
from segstudio.core.history import DEFAULT_HISTORY_BYTES, History, MaskEdit, StrokeRecorder
from segstudio.core.paint import segment_rect, segment_stencil

Tiles = tuple[tuple[Rect, np.ndarray], ...]


class ReadOnlyError(RuntimeError):
    """The document cannot be changed (its mask file could not be read safely)."""


class ImageDocument:
    """A mask being edited. Mutate it on the GUI thread only: slots run in the emitting thread."""

    changed = Signal(object)          # Rect that needs a repaint
    edited = Signal(object)           # Tiles: the tiles' new contents after a step, undo or redo
    history_changed = Signal(bool, bool)

    def __init__(self, mask: np.ndarray, *, history_bytes: int = DEFAULT_HISTORY_BYTES,
                 read_only: str | None = None, history: History | None = None) -> None:
        if mask.ndim != 2 or mask.dtype != np.uint8:
            raise ValueError(f"a mask is a 2-D uint8 array, got {mask.ndim}-D {mask.dtype}")
        self.mask = mask
        self.read_only = read_only    # None, or why the mask may not be edited
        # a history handed in survives image switches: undo still works after coming back
        self.history = history if history is not None else History(history_bytes)
        self.history.history_changed.connect(self.history_changed.emit)
        self._recorder: StrokeRecorder | None = None
        self._stroke_label = ""
        self._stroke_dirty: Rect | None = None

    @classmethod
    def blank(cls, height: int, width: int, fill: int = UNLABELED, **kw) -> ImageDocument:
        return cls(np.full((height, width), fill, np.uint8), **kw)

    @property
    def shape(self) -> tuple[int, int]:
        return self.mask.shape  # type: ignore[return-value]

    @property
    def in_stroke(self) -> bool:
        return self._recorder is not None

    # -- strokes -------------------------------------------------------------------------
    def begin_stroke(self, label: str = "Brush") -> None:
        if self.read_only:
            raise ReadOnlyError(self.read_only)
        if self._recorder is not None:
            self.end_stroke()
        self._recorder = StrokeRecorder(self.mask)
        self._stroke_label = label

    def paint_segment(self, p0: tuple[float, float], p1: tuple[float, float], radius: float,
                      value: int, only_over: Iterable[int] | None = None) -> Rect | None:
        """Paint a round brush dragged from p0 to p1 (y, x); returns the dirty rect."""
        rect = segment_rect(p0, p1, radius).clip(self.mask.shape)
        if rect.empty:
            return None
        stencil = segment_stencil(p0, p1, radius, rect)
        return self.write(rect, stencil, value, only_over)

    def dab(self, y: float, x: float, radius: float, value: int,
            only_over: Iterable[int] | None = None) -> Rect | None:
        return self.paint_segment((y, x), (y, x), radius, value, only_over)

    def write(self, rect: Rect, where: np.ndarray, value: int | np.ndarray,
              only_over: Iterable[int] | None = None) -> Rect | None:
        """Set mask[rect][where] = value inside the current stroke."""
        if self._recorder is None:
            raise RuntimeError("write() outside a stroke: call begin_stroke() first")
        rect = rect.clip(self.mask.shape)
        if rect.empty:
            return None
        region = self.mask[rect.slices]
        if only_over is not None:
            where = where & np.isin(region, np.fromiter(only_over, np.uint8))
        if not where.any():
            return None
        self._recorder.will_write(rect)
        if isinstance(value, np.ndarray):
            region[where] = value[where]
        else:
            region[where] = value
        self._stroke_dirty = rect.union(self._stroke_dirty)
        self.changed.emit(rect)
        return rect

    def end_stroke(self) -> MaskEdit | None:
        """Close the stroke: the tiles that changed become one undo step."""
        if self._recorder is None:
            return None
        edit = self._recorder.finish(self._stroke_label)
        self._recorder = None
        self._stroke_dirty = None
        if edit is not None:
            self.history.push(edit)
            self.edited.emit(tuple((p.rect, self.mask[p.rect.slices].copy()) for p in edit.patches))
        return edit

    def replace(self, rect: Rect, values: np.ndarray | int, label: str,
                where: np.ndarray | None = None,
                only_over: Iterable[int] | None = None) -> MaskEdit | None:
        """One undoable step that writes `values` into `rect` (fill, accept prediction, ...)."""
        if where is None:
            where = np.ones((rect.height, rect.width), bool)
        self.begin_stroke(label)
        self.write(rect, where, values, only_over)
        return self.end_stroke()

    def apply(self, new_mask: np.ndarray | None, label: str) -> MaskEdit | None:
        """Make `new_mask` the mask as one undoable step (only changed tiles are kept)."""
        if new_mask is None:
            return None
        full = Rect(0, 0, *self.shape)
        return self.replace(full, new_mask, label, where=new_mask != self.mask)

    # -- history -------------------------------------------------------------------------
    def undo(self) -> Rect | None:
        return self._step(self.history.undo)

    def redo(self) -> Rect | None:
        return self._step(self.history.redo)

    def _step(self, fn) -> Rect | None:
        if self.read_only:
            raise ReadOnlyError(self.read_only)
        if self._recorder is not None:
            self.end_stroke()
        edit = fn(self.mask)
        if edit is None:
            return None
        self.edited.emit(tuple((p.rect, self.mask[p.rect.slices].copy()) for p in edit.patches))
        dirty = edit.bounds
        self.changed.emit(dirty)
        return dirty
