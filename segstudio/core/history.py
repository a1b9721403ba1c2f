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
    bytes instead of 8 KiB, so a long history fits in a few MB.
    """

    __slots__ = ("rect", "_before", "_after")

    def __init__(self, rect: Rect, before: np.ndarray, after: np.ndarray) -> None:
        self.rect = rect
        self._before = zlib.compress(np.ascontiguousarray(before).tobytes(), 1)
        self._after = zlib.compress(np.ascontiguousarray(after).tobytes(), 1)

    def _unpack(self, data: bytes) -> np.ndarray:
        return np.frombuffer(zlib.decompress(data), np.uint8).reshape(self.rect.height, self.rect.width)

    @property
    def before(self) -> np.ndarray:
        return self._unpack(self._before)

    @property
    def after(self) -> np.ndarray:
        return self._unpack(self._after)

    @property
    def nbytes(self) -> int:
        return len(self._before) + len(self._after) + 96   # + object overhead


@dataclass(frozen=True)
class MaskEdit:
    """One undo step: the tiles that really changed."""

    label: str
    patches: tuple[TilePatch, ...]

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.patches)

    @property
    def bounds(self) -> Rect:
        out = Rect(0, 0, 0, 0)
        for p in self.patches:
            out = out.union(p.rect)
        return out


class StrokeRecorder:
    """Copies each touched tile once, the first time a stroke writes into it."""

    def __init__(self, mask: np.ndarray) -> None:
        self._mask = mask
        self._before: dict[tuple[int, int], np.ndarray] = {}

    def will_write(self, rect: Rect) -> None:
        for key in tiles_in(rect.clip(self._mask.shape)):
            if key not in self._before:
                self._before[key] = self._mask[tile_rect(*key, self._mask.shape).slices].copy()

    def finish(self, label: str) -> MaskEdit | None:
        patches = []
        for key, before in self._before.items():
            rect = tile_rect(*key, self._mask.shape)
            after = self._mask[rect.slices]
            if not np.array_equal(before, after):  # a stroke over itself costs nothing
                patches.append(TilePatch(rect, before, after))
        self._before.clear()
        return MaskEdit(label, tuple(patches)) if patches else None


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

    def undo(self, mask: np.ndarray) -> MaskEdit | None:
        """Write the newest step's `before` tiles back; returns the step undone."""
        if not self._undo:
            return None
        edit = self._undo.pop()
        for p in edit.patches:
            mask[p.rect.slices] = p.before
        self._redo.append(edit)
        self._emit()
        return edit

    def redo(self, mask: np.ndarray) -> MaskEdit | None:
        if not self._redo:
            return None
        edit = self._redo.pop()
        for p in edit.patches:
            mask[p.rect.slices] = p.after
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
