"""Rectangles and 64x64 tiles in (y, x) image coordinates."""

from __future__ import annotations

from dataclasses import dataclass

TILE = 64  # 64x64 uint8 = 4 KiB per saved tile


@dataclass(frozen=True)
class Rect:
    """Half-open pixel rectangle: rows y0..y1-1, columns x0..x1-1."""

    y0: int
    x0: int
    y1: int
    x1: int

    @property
    def height(self) -> int:
        return max(0, self.y1 - self.y0)

    @property
    def width(self) -> int:
        return max(0, self.x1 - self.x0)

    @property
    def empty(self) -> bool:
        return self.y1 <= self.y0 or self.x1 <= self.x0

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def clip(self, shape: tuple[int, ...]) -> Rect:
        h, w = shape[0], shape[1]
        return Rect(max(0, self.y0), max(0, self.x0), min(h, self.y1), min(w, self.x1))

    def union(self, other: Rect | None) -> Rect:
        if other is None or other.empty:
            return self
        if self.empty:
            return other
        return Rect(min(self.y0, other.y0), min(self.x0, other.x0),
                    max(self.y1, other.y1), max(self.x1, other.x1))

    def intersects(self, other: Rect) -> bool:
        return not (other.y0 >= self.y1 or other.y1 <= self.y0
                    or other.x0 >= self.x1 or other.x1 <= self.x0)

    @staticmethod
    def around(y: float, x: float, radius: float) -> Rect:
        r = int(radius) + 1
        return Rect(int(y) - r, int(x) - r, int(y) + r + 1, int(x) + r + 1)


def tile_rect(ty: int, tx: int, shape: tuple[int, ...]) -> Rect:
    """The tile at (ty, tx), clipped at the image edges."""
    return Rect(ty * TILE, tx * TILE, (ty + 1) * TILE, (tx + 1) * TILE).clip(shape)


def tiles_in(rect: Rect) -> list[tuple[int, int]]:
    """Indices of the tiles a rectangle touches."""
    if rect.empty:
        return []
    return [(ty, tx)
            for ty in range(rect.y0 // TILE, (rect.y1 - 1) // TILE + 1)
            for tx in range(rect.x0 // TILE, (rect.x1 - 1) // TILE + 1)]
