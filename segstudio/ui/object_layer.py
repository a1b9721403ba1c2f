"""How objects of instance classes look: each a shade of its class's colour, with edges.

Pure numpy on screen-sized samples (the canvas gathers the visible pixels of the mask and of
the instance layer, as for the class overlay): no Qt here, so it is tested on small arrays.
"""

from __future__ import annotations

import colorsys
from functools import lru_cache

import numpy as np

LEVELS = 16                  # shades per class
_FIB = np.uint32(2654435769)  # 2**32 / golden ratio: Fibonacci hashing
SELECTED_BGRA = (255, 255, 255, 255)


def shade_level(ids: np.ndarray) -> np.ndarray:
    """0..LEVELS-1 per id: the top bits of id * 2**32/phi. Ids painted one after another
    (touching nuclei, usually) land on shades far apart, as golden-ratio steps do."""
    return ((ids.astype(np.uint32, copy=False) * _FIB) >> np.uint32(28)).astype(np.uint8)


def shade(ids: np.ndarray) -> np.ndarray:
    """Where each id's shade lies between the darkest (0) and the lightest (1)."""
    return _STEPS[shade_level(ids)]


_STEPS = ((np.arange(LEVELS) + 0.5) / LEVELS).astype(np.float32)


@lru_cache(maxsize=8)
def _shades(opaque: bytes) -> np.ndarray:
    """(256, LEVELS, 3) opaque BGR: each class colour from dark to light, its hue turned by up
    to +-22 degrees, so that touching objects of one class stand apart."""
    bgr = np.frombuffer(opaque, np.uint8).reshape(256, 3)
    out = np.empty((256, LEVELS, 3), np.uint8)
    for c in np.unique(bgr, axis=0):
        h, l, s = colorsys.rgb_to_hls(c[2] / 255, c[1] / 255, c[0] / 255)
        row = []
        for t in _STEPS:
            r, g, b = colorsys.hls_to_rgb((h + (float(t) - 0.5) * 0.12) % 1.0,
                                          0.22 + 0.56 * float(t), s)
            row.append((round(b * 255), round(g * 255), round(r * 255)))
        out[(bgr == c).all(axis=1)] = row
    return out


def shade_table(bgra: np.ndarray, opaque_bgr: np.ndarray) -> np.ndarray:
    """(256, LEVELS + 1, 4) premultiplied BGRA: [class, 0] the plain class colour (no
    object), [class, 1 + level] an object's shade of the class colour."""
    shaded = _shades(np.ascontiguousarray(opaque_bgr, np.uint8).tobytes()).astype(np.float32)
    alpha = bgra[:, 3].astype(np.float32)[:, None, None]
    table = np.empty((256, LEVELS + 1, 4), np.uint8)
    table[:, 0] = bgra
    table[:, 1:, :3] = np.clip(shaded * alpha / 255.0 + 0.5, 0, 255).astype(np.uint8)
    table[:, 1:, 3] = bgra[:, None, 3]
    return table


def object_bgra(ids: np.ndarray, bgra: np.ndarray, opaque_bgr: np.ndarray,
                mask: np.ndarray) -> np.ndarray:
    """Premultiplied BGRA of a sample: object pixels in their shade of the class colour,
    the others in the class colour (`bgra` and `opaque_bgr` are the 256-entry class LUTs)."""
    level = shade_level(ids) + np.uint8(1)
    level *= ids != 0                               # 0: no object
    flat = mask.astype(np.uint16) * np.uint16(LEVELS + 1) + level
    # one 4-byte word per colour: a gather of words is ~20x faster than of (n, 4) rows
    words = np.ascontiguousarray(shade_table(bgra, opaque_bgr)).view(np.uint32).ravel()
    return words[flat].view(np.uint8).reshape(mask.shape + (4,))


def edges(values: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another value."""
    e = np.zeros(values.shape, bool)
    e[:-1] |= values[:-1] != values[1:]
    e[1:] |= values[1:] != values[:-1]
    e[:, :-1] |= values[:, :-1] != values[:, 1:]
    e[:, 1:] |= values[:, 1:] != values[:, :-1]
    return e


def _words(bgra_rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(bgra_rows, np.uint8).view(np.uint32).ravel()


def render_objects(mask: np.ndarray, ids: np.ndarray, lut: np.ndarray, opaque_bgr: np.ndarray,
                   *, outline: bool, object_edges: bool,
                   selected: np.ndarray | None = None) -> np.ndarray:
    """BGRA premultiplied overlay of a screen sample (mask and ids gathered the same way).

    outline: only the edges of classes and of objects, opaque; object_edges: the boundary of
    every object drawn opaque over its fill, so touching objects show where they part;
    selected: ids drawn with a white edge. Pixels are handled as 4-byte words (fast).
    """
    obj_edge = edges(ids) & (ids != 0) if outline or object_edges else None
    if outline:
        solid = np.zeros_like(lut)
        shown = lut[:, 3] > 0
        solid[shown, :3] = opaque_bgr[shown]
        solid[shown, 3] = 255
        out = object_bgra(ids, solid, opaque_bgr, mask)
        words = out.view(np.uint32)[..., 0]
        np.multiply(words, edges(mask) | obj_edge, out=words)
    else:
        out = object_bgra(ids, lut, opaque_bgr, mask)
        words = out.view(np.uint32)[..., 0]
        if object_edges:
            dark = np.zeros_like(lut)
            shown = lut[:, 3] > 0
            dark[shown, :3] = (opaque_bgr[shown] * 0.35).astype(np.uint8)
            dark[shown, 3] = 255
            strong = obj_edge & shown[mask]
            np.copyto(words, _words(dark)[mask], where=strong)
    if selected is not None and selected.size:
        sel = np.zeros(ids.shape, bool)
        for oid in selected[:64]:         # a handful, usually: cheaper than np.isin
            sel |= ids == oid
        if sel.any():
            ring = sel & edges(np.where(sel, ids, 0))
            np.copyto(words, _words(np.array([SELECTED_BGRA], np.uint8))[0], where=ring)
    return out
