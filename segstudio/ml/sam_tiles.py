"""Where a SAM encoder looks: the whole image, or micro-sam-style tiles with a halo on large ones.

A SAM encoder sees a fixed square (1024 px): a 16000 px image resized to it would lose every
small object, so a large image is cut into `tile`-sized cores, each embedded with `halo` pixels
of context on every side (micro-sam: 1024 px tiles, 256 px halo). A click uses the tile whose
core centre is nearest to it; the window (core + halo) is what the encoder saw, and the
decoder's mask is pasted back over that window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from segstudio.core.display import default_range, to_display


@dataclass(frozen=True)
class Tile:
    """One embedded window: (ty, tx) index, core and window as (y0, x0, y1, x1) image pixels."""

    index: tuple[int, int]
    core: tuple[int, int, int, int]
    window: tuple[int, int, int, int]

    @property
    def centre(self) -> tuple[float, float]:
        y0, x0, y1, x1 = self.core
        return (y0 + y1) / 2.0, (x0 + x1) / 2.0

    @property
    def shape(self) -> tuple[int, int]:
        y0, x0, y1, x1 = self.window
        return y1 - y0, x1 - x0

    @property
    def slices(self) -> tuple[slice, slice]:
        y0, x0, y1, x1 = self.window
        return slice(y0, y1), slice(x0, x1)


@dataclass(frozen=True)
class Tiling:
    """The tiles of one image size: one whole-image tile up to `whole_max` px, else a grid."""

    height: int
    width: int
    tile: int = 1024
    halo: int = 256
    whole_max: int = 2048

    @property
    def tiled(self) -> bool:
        return max(self.height, self.width) > self.whole_max

    @property
    def grid(self) -> tuple[int, int]:
        if not self.tiled:
            return 1, 1
        return math.ceil(self.height / self.tile), math.ceil(self.width / self.tile)

    def at(self, ty: int, tx: int) -> Tile:
        h, w = self.height, self.width
        if not self.tiled:
            return Tile((0, 0), (0, 0, h, w), (0, 0, h, w))
        y0, x0 = ty * self.tile, tx * self.tile
        y1, x1 = min(h, y0 + self.tile), min(w, x0 + self.tile)
        window = (max(0, y0 - self.halo), max(0, x0 - self.halo),
                  min(h, y1 + self.halo), min(w, x1 + self.halo))
        return Tile((ty, tx), (y0, x0, y1, x1), window)

    def nearest(self, y: float, x: float) -> Tile:
        """The tile whose core centre is nearest to (y, x) (the one containing it, inside)."""
        ny, nx = self.grid
        ty = min(max(int(y // self.tile), 0), ny - 1) if self.tiled else 0
        tx = min(max(int(x // self.tile), 0), nx - 1) if self.tiled else 0
        return self.at(ty, tx)

    def overlapping(self, region: tuple[float, float, float, float]) -> list[Tile]:
        """Tiles whose core meets the (y0, x0, y1, x1) region."""
        if not self.tiled:
            return [self.at(0, 0)]
        ny, nx = self.grid
        y0, x0, y1, x1 = region
        ty0, ty1 = max(0, int(y0 // self.tile)), min(ny - 1, int(max(y0, y1 - 1) // self.tile))
        tx0, tx1 = max(0, int(x0 // self.tile)), min(nx - 1, int(max(x0, x1 - 1) // self.tile))
        return [self.at(ty, tx) for ty in range(ty0, ty1 + 1) for tx in range(tx0, tx1 + 1)]


def window_rgb8(image: np.ndarray, tile: Tile, rng=None) -> np.ndarray:
    """The tile's window as contiguous uint8 RGB (grey repeated; 16-bit/float via `rng`)."""
    data = np.asarray(image[tile.slices])
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[..., 0]
    if not (data.dtype == np.uint8 and (data.ndim == 2 or data.shape[2] in (3, 4))):
        data = to_display(data, rng if rng is not None else default_range(image))
    if data.ndim == 3 and data.shape[2] == 4:
        data = data[..., :3]
    if data.ndim == 2:
        data = np.repeat(data[..., None], 3, axis=2)
    return np.ascontiguousarray(data)
