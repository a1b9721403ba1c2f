"""One image's label mask with its undo history; every change is a tile diff.

Classes marked "objects" also carry an object id per pixel in `objects`, a uint32 layer beside
the mask (0 = no object; ids unique within the image), created the first time such a class is
painted. Invariant: objects[y, x] != 0 only where mask[y, x] is an object class; every write
keeps it, and one undo step restores both layers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

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
                 read_only: str | None = None, history: History | None = None,
                 objects: np.ndarray | None = None,
                 object_classes: Iterable[int] = ()) -> None:
        if mask.ndim != 2 or mask.dtype != np.uint8:
            raise ValueError(f"a mask is a 2-D uint8 array, got {mask.ndim}-D {mask.dtype}")
        if objects is not None and (objects.shape != mask.shape or objects.dtype != np.uint32):
            raise ValueError(f"an instance layer is a uint32 array of the mask's shape "
                             f"{mask.shape}, got {objects.shape} {objects.dtype}")
        self.mask = mask
        self.objects = objects        # None until an object class is painted (or loaded)
        self._object_lut = np.zeros(256, bool)
        self.object_classes = object_classes
        self._next_object = int(objects.max()) + 1 if objects is not None and objects.size else 1
        self._stroke_object: int | None = None
        self.stroke_object_id: int | None = None   # the object the last stroke painted
        self.read_only = read_only    # None, or why the mask may not be edited
        # a history handed in survives image switches: undo still works after coming back
        self.history = history if history is not None else History(history_bytes)
        self.history.history_changed.connect(self.history_changed.emit)
        self._recorder: StrokeRecorder | None = None
        self._stroke_label = ""
        self._stroke_group: str | None = None
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

    # -- objects ---------------------------------------------------------------------------
    @property
    def object_classes(self) -> frozenset[int]:
        """Ids of the classes whose pixels carry object ids (from the project's classes)."""
        return frozenset(int(i) for i in np.flatnonzero(self._object_lut))

    @object_classes.setter
    def object_classes(self, ids: Iterable[int]) -> None:
        lut = np.zeros(256, bool)
        lut[[int(i) for i in ids]] = True
        self._object_lut = lut

    def is_object_class(self, values: np.ndarray | int) -> np.ndarray | bool:
        return self._object_lut[values]

    def ensure_objects(self) -> np.ndarray:
        """The instance layer, created (all zeros) on first use."""
        if self.objects is None:
            self.objects = np.zeros(self.mask.shape, np.uint32)
            if self._recorder is not None:
                self._recorder.attach_objects(self.objects)
        return self.objects

    def new_object_id(self) -> int:
        """An id no object of this image has had in this session (never reused: undo stays
        consistent)."""
        oid = self._next_object
        self._next_object += 1
        return oid

    def _note_ids(self, values: np.ndarray | int) -> None:
        top = int(np.max(values)) if np.size(values) else 0
        if top >= self._next_object:
            self._next_object = top + 1

    # -- strokes -------------------------------------------------------------------------
    def begin_stroke(self, label: str = "Brush", object_id: int | None = None,
                     group: str | None = None) -> None:
        """Start one undo step. Painting an object class in it writes `object_id`, or by
        default a new object (allocated at the first such write): touching strokes stay two."""
        if self.read_only:
            raise ReadOnlyError(self.read_only)
        if self._recorder is not None:
            self.end_stroke()
        self._recorder = StrokeRecorder(self.mask, self.objects)
        self._stroke_label = label
        self._stroke_group = group
        self._stroke_object = object_id
        self.stroke_object_id = object_id

    def paint_segment(self, p0: tuple[float, float], p1: tuple[float, float], radius: float,
                      value: int, only_over: Iterable[int] | None = None,
                      allowed: Callable[[Rect], np.ndarray] | None = None) -> Rect | None:
        """Paint a round brush dragged from p0 to p1 (y, x); returns the dirty rect.
        `allowed(rect)`: which pixels of the rect may be painted (an intensity range)."""
        rect = segment_rect(p0, p1, radius).clip(self.mask.shape)
        if rect.empty:
            return None
        stencil = segment_stencil(p0, p1, radius, rect)
        if allowed is not None:
            stencil = stencil & allowed(rect)
        return self.write(rect, stencil, value, only_over)

    def dab(self, y: float, x: float, radius: float, value: int,
            only_over: Iterable[int] | None = None) -> Rect | None:
        return self.paint_segment((y, x), (y, x), radius, value, only_over)

    def write(self, rect: Rect, where: np.ndarray, value: int | np.ndarray,
              only_over: Iterable[int] | None = None, *,
              object_value: int | np.ndarray | None = None) -> Rect | None:
        """Set mask[rect][where] = value inside the current stroke.

        Object ids: `object_value` when given; else a scalar object class gets the stroke's
        object, and a pixel whose class changed loses its id. Pixels that end up in a class
        without objects always lose theirs.
        """
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
        scalar_object = (not isinstance(value, np.ndarray)
                         and bool(self._object_lut[int(value)]) and object_value is None)
        if scalar_object or (object_value is not None and np.any(object_value)):
            self.ensure_objects()            # all-zero ids need no layer where there is none
        self._recorder.will_write(rect)
        old = region.copy() if self.objects is not None and isinstance(value, np.ndarray) else None
        if isinstance(value, np.ndarray):
            region[where] = value[where]
        else:
            region[where] = value
        if self.objects is not None:
            self._write_objects(rect, where, region, old, scalar_object, object_value)
        self._stroke_dirty = rect.union(self._stroke_dirty)
        self.changed.emit(rect)
        return rect

    def _write_objects(self, rect: Rect, where: np.ndarray, region: np.ndarray,
                       old: np.ndarray | None, scalar_object: bool,
                       object_value: int | np.ndarray | None) -> None:
        objs = self.objects[rect.slices]
        if object_value is not None:
            values = object_value[where] if isinstance(object_value, np.ndarray) else object_value
            objs[where] = values
            self._note_ids(values)
        elif scalar_object:
            if self._stroke_object is None:
                self._stroke_object = self.new_object_id()
                self.stroke_object_id = self._stroke_object
            objs[where] = self._stroke_object
        elif old is not None:
            objs[where & (old != region)] = 0       # a pixel that changed class leaves its object
        objs[where & ~self._object_lut[region]] = 0

    def _tiles(self, edit: MaskEdit) -> Tiles:
        """The step's tiles as saved: (rect, mask) or, where ids changed, (rect, mask, objects)."""
        return tuple((p.rect, self.mask[p.rect.slices].copy(), self.objects[p.rect.slices].copy())
                     if p.has_objects else (p.rect, self.mask[p.rect.slices].copy())
                     for p in edit.patches)

    def end_stroke(self) -> MaskEdit | None:
        """Close the stroke: the tiles that changed become one undo step."""
        if self._recorder is None:
            return None
        edit = self._recorder.finish(self._stroke_label, self._stroke_group)
        self._recorder = None
        self._stroke_dirty = None
        self._stroke_object = None
        if edit is not None:
            self.history.push(edit)
            self.edited.emit(self._tiles(edit))
        return edit

    def replace(self, rect: Rect, values: np.ndarray | int, label: str,
                where: np.ndarray | None = None,
                only_over: Iterable[int] | None = None, *,
                object_value: int | np.ndarray | None = None,
                object_id: int | None = None, group: str | None = None) -> MaskEdit | None:
        """One undoable step that writes `values` into `rect` (fill, accept prediction, ...)."""
        if where is None:
            where = np.ones((rect.height, rect.width), bool)
        self.begin_stroke(label, object_id, group)
        self.write(rect, where, values, only_over, object_value=object_value)
        return self.end_stroke()

    def apply(self, new_mask: np.ndarray | None, label: str,
              new_objects: np.ndarray | None = None, group: str | None = None
              ) -> MaskEdit | None:
        """Make `new_mask` (and `new_objects`, if given) the layers as one undoable step
        (only changed tiles are kept)."""
        if new_mask is None:
            return None
        full = Rect(0, 0, *self.shape)
        where = new_mask != self.mask
        if new_objects is not None:
            where |= new_objects != (self.objects if self.objects is not None else 0)
        return self.replace(full, new_mask, label, where=where, object_value=new_objects,
                            group=group)

    # -- history -------------------------------------------------------------------------
    def undo(self) -> Rect | None:
        return self._step(redo=False)

    def redo(self) -> Rect | None:
        return self._step(redo=True)

    def _step(self, redo: bool) -> Rect | None:
        if self.read_only:
            raise ReadOnlyError(self.read_only)
        if self._recorder is not None:
            self.end_stroke()
        fn = self.history.redo if redo else self.history.undo
        nxt = self.history.peek(redo)
        if nxt is not None and nxt.has_objects:
            self.ensure_objects()
        edit = fn(self.mask, self.objects)
        if edit is None:
            return None
        self.edited.emit(self._tiles(edit))
        dirty = edit.bounds
        self.changed.emit(dirty)
        return dirty
