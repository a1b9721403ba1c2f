"""Tile-diff undo: a stroke records the tiles it touched; undo writes them back."""

from __future__ import annotations

import zlib
from collections import deque
from dataclasses import dataclass

import numpy as np
from psygnal import Signal

from segstudio.core.geometry import Rect, tile_rect, tiles_in

DEFAULT_HISTORY_BYTES = 256 * 1024 * 1024


class TilePatch:
    """A tile's contents before and after one step, kept zlib-compressed.

    Label tiles are mostly runs of one value: compressed, a brushed 64x64 tile costs ~100
    bytes instead of 8 KiB, so a long history fits in a few MB. A step that changed object ids
    keeps the tile of the instance layer (uint32) beside the mask tile: one patch, one history.
    """

    __slots__ = ("rect", "_before", "_after", "_obj_before", "_obj_after")

    def __init__(self, rect: Rect, before: np.ndarray, after: np.ndarray,
                 objects_before: np.ndarray | None = None,
                 objects_after: np.ndarray | None = None) -> None:
        self.rect = rect
        self._before = _pack(before, np.uint8)
        self._after = _pack(after, np.uint8)
        if (objects_before is None) != (objects_after is None):
            raise ValueError("a patch keeps the objects tile before and after, or neither")
        self._obj_before = None if objects_before is None else _pack(objects_before, np.uint32)
        self._obj_after = None if objects_after is None else _pack(objects_after, np.uint32)

    def _unpack(self, data: bytes, dtype=np.uint8) -> np.ndarray:
        return np.frombuffer(zlib.decompress(data), dtype).reshape(self.rect.height, self.rect.width)

    @property
    def before(self) -> np.ndarray:
        return self._unpack(self._before)

    @property
    def after(self) -> np.ndarray:
        return self._unpack(self._after)

    @property
    def has_objects(self) -> bool:
        return self._obj_before is not None

    @property
    def objects_before(self) -> np.ndarray | None:
        return None if self._obj_before is None else self._unpack(self._obj_before, np.uint32)

    @property
    def objects_after(self) -> np.ndarray | None:
        return None if self._obj_after is None else self._unpack(self._obj_after, np.uint32)

    @property
    def nbytes(self) -> int:
        extra = len(self._obj_before) + len(self._obj_after) if self._obj_before else 0
        return len(self._before) + len(self._after) + extra + 96   # + object overhead


def _pack(values: np.ndarray, dtype) -> bytes:
    return zlib.compress(np.ascontiguousarray(values, dtype).tobytes(), 1)


@dataclass(frozen=True)
class MaskEdit:
    """One undo step: the tiles that really changed."""

    label: str
    patches: tuple[TilePatch, ...]
    group: str | None = None    # one step across several images (slices of a volume): its id

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.patches)

    @property
    def has_objects(self) -> bool:
        return any(p.has_objects for p in self.patches)

    @property
    def bounds(self) -> Rect:
        out = Rect(0, 0, 0, 0)
        for p in self.patches:
            out = out.union(p.rect)
        return out


class StrokeRecorder:
    """Copies each touched tile once, the first time a stroke writes into it.

    With an instance layer (`objects`) the same tile of it is copied too; a layer created
    part-way through a stroke is attached with `attach_objects` (it was all zeros before).
    """

    def __init__(self, mask: np.ndarray, objects: np.ndarray | None = None) -> None:
        self._mask = mask
        self._objects = objects
        self._before: dict[tuple[int, int], np.ndarray] = {}
        self._obj_before: dict[tuple[int, int], np.ndarray] = {}

    def attach_objects(self, objects: np.ndarray) -> None:
        """The instance layer was just created (zeros): tiles copied so far had no objects."""
        self._objects = objects
        for key in self._before:
            rect = tile_rect(*key, self._mask.shape)
            self._obj_before[key] = np.zeros((rect.height, rect.width), np.uint32)

    def will_write(self, rect: Rect) -> None:
        for key in tiles_in(rect.clip(self._mask.shape)):
            if key not in self._before:
                slices = tile_rect(*key, self._mask.shape).slices
                self._before[key] = self._mask[slices].copy()
                if self._objects is not None:
                    self._obj_before[key] = self._objects[slices].copy()

    def finish(self, label: str, group: str | None = None) -> MaskEdit | None:
        patches = []
        for key, before in self._before.items():
            rect = tile_rect(*key, self._mask.shape)
            after = self._mask[rect.slices]
            obj_before = self._obj_before.get(key)
            obj_after = None if obj_before is None else self._objects[rect.slices]
            if obj_before is not None and np.array_equal(obj_before, obj_after):
                obj_before = obj_after = None       # ids unchanged here: keep the mask tile only
            if obj_before is not None or not np.array_equal(before, after):
                # a stroke over itself costs nothing
                patches.append(TilePatch(rect, before, after, obj_before, obj_after))
        self._before.clear()
        self._obj_before.clear()
        return MaskEdit(label, tuple(patches), group) if patches else None


def whole_mask_edit(before: np.ndarray, after: np.ndarray, label: str,
                    group: str | None = None) -> MaskEdit | None:
    """The step that turns `before` into `after` (a mask not open on the canvas: a slice an
    interpolation filled), as the tiles that differ; None when nothing does."""
    if before.shape != after.shape:
        raise ValueError(f"masks differ in shape: {before.shape} vs {after.shape}")
    work = before.copy()
    recorder = StrokeRecorder(work)
    recorder.will_write(Rect(0, 0, *before.shape))
    work[...] = after
    return recorder.finish(label, group)


class History:
    """Undo/redo of MaskEdits, bounded by bytes rather than by step count."""

    history_changed = Signal(bool, bool)  # can_undo, can_redo

    def __init__(self, max_bytes: int = DEFAULT_HISTORY_BYTES) -> None:
        self.max_bytes = max_bytes
        self._undo: deque[MaskEdit] = deque()
        self._redo: list[MaskEdit] = []
        self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def __len__(self) -> int:
        return len(self._undo)

    def push(self, edit: MaskEdit) -> None:
        self._undo.append(edit)
        self._bytes += edit.nbytes
        self._bytes -= sum(e.nbytes for e in self._redo)
        self._redo.clear()
        while self._bytes > self.max_bytes and len(self._undo) > 1:
            self._bytes -= self._undo.popleft().nbytes
        self._emit()

    def holds(self, group: str) -> bool:
        """Whether a step of `group` can still be undone here."""
        return any(e.group == group for e in self._undo)

    def peek(self, redo: bool = False) -> MaskEdit | None:
        """The step that undo (or redo) would apply next, left in place."""
        stack = self._redo if redo else self._undo
        return stack[-1] if stack else None

    def undo(self, mask: np.ndarray, objects: np.ndarray | None = None) -> MaskEdit | None:
        """Write the newest step's `before` tiles back (both layers); returns the step undone."""
        if not self._undo:
            return None
        _check_layer(self._undo[-1], objects)
        edit = self._undo.pop()
        for p in edit.patches:
            mask[p.rect.slices] = p.before
            if p.has_objects:
                objects[p.rect.slices] = p.objects_before
        self._redo.append(edit)
        self._emit()
        return edit

    def redo(self, mask: np.ndarray, objects: np.ndarray | None = None) -> MaskEdit | None:
        if not self._redo:
            return None
        _check_layer(self._redo[-1], objects)
        edit = self._redo.pop()
        for p in edit.patches:
            mask[p.rect.slices] = p.after
            if p.has_objects:
                objects[p.rect.slices] = p.objects_after
        self._undo.append(edit)
        self._emit()
        return edit

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()
        self._bytes = 0
        self._emit()

    def _emit(self) -> None:
        self.history_changed.emit(self.can_undo, self.can_redo)


def _check_layer(edit: MaskEdit, objects: np.ndarray | None) -> None:
    if objects is None and edit.has_objects:
        raise ValueError(f"the step {edit.label!r} changed object ids; pass the instance layer")
