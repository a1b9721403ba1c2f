"""How objects of instance classes look: each a shade of its class's colour, with edges.

Pure numpy on screen-sized samples (the canvas gathers the visible pixels of the mask and of
the instance layer, as for the class overlay): no Qt here, so it is tested on small arrays.
"""

from __future__ import annotations

import numpy as np

GOLDEN = 0.6180339887498949
SELECTED_BGRA = (255, 255, 255, 255)


def shade(ids: np.ndarray) -> np.ndarray:
    """A lightness factor in 0.55..1.45 per object id. Golden-ratio steps: ids painted one
    after another (touching nuclei, usually) get shades far apart."""
    t = np.modf(ids.astype(np.float64) * GOLDEN)[0]
    return (0.55 + 0.9 * t).astype(np.float32)


def object_bgra(ids: np.ndarray, bgra: np.ndarray, opaque_bgr: np.ndarray) -> np.ndarray:
    """Premultiplied BGRA of object pixels: the class colour (`opaque_bgr`, alpha from `bgra`)
    darkened or lightened by the id's shade; pixels without an id keep `bgra`."""
    out = bgra.copy()
    hit = ids != 0
    if not hit.any():
        return out
    f = shade(ids[hit])[:, None]
    rgb = opaque_bgr[hit].astype(np.float32)
    rgb = np.where(f <= 1.0, rgb * f, rgb + (255.0 - rgb) * (f - 1.0))
    alpha = bgra[hit][:, 3:4].astype(np.float32)
    out[hit, :3] = np.clip(rgb * alpha / 255.0, 0, 255).astype(np.uint8)
    return out


def edges(values: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another value."""
    e = np.zeros(values.shape, bool)
    e[:-1] |= values[:-1] != values[1:]
    e[1:] |= values[1:] != values[:-1]
    e[:, :-1] |= values[:, :-1] != values[:, 1:]
    e[:, 1:] |= values[:, 1:] != values[:, :-1]
    return e


def render_objects(mask: np.ndarray, ids: np.ndarray, lut: np.ndarray, opaque_bgr: np.ndarray,
                   *, outline: bool, object_edges: bool,
                   selected: np.ndarray | None = None) -> np.ndarray:
    """BGRA premultiplied overlay of a screen sample (mask and ids gathered the same way).

    outline: only the edges of classes and of objects, opaque; object_edges: the boundary of
    every object drawn opaque over its fill, so touching objects show where they part;
    selected: ids drawn with a white edge.
    """
    base = lut[mask]
    colored = object_bgra(ids, base, opaque_bgr[mask])
    obj_edge = edges(ids) & (ids != 0)
    if outline:
        shown = base[..., 3] > 0
        edge = (edges(mask) | obj_edge) & shown
        solid = np.dstack([opaque_bgr[mask], np.full(mask.shape, 255, np.uint8)])
        out = np.where(edge[..., None], object_bgra(ids, solid, opaque_bgr[mask]), 0)
        out = out.astype(np.uint8)
    else:
        out = colored
        if object_edges:
            strong = obj_edge & (base[..., 3] > 0)
            dark = (opaque_bgr[mask].astype(np.float32) * 0.35).astype(np.uint8)
            out[strong, :3] = dark[strong]
            out[strong, 3] = 255
    if selected is not None and selected.size:
        sel = np.isin(ids, selected)
        ring = sel & edges(np.where(sel, ids, 0))
        out[ring] = SELECTED_BGRA
    return out
