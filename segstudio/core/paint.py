"""Brush geometry: which pixels a round brush covers when dragged from one point to the next."""

from __future__ import annotations

import numpy as np

from segstudio.core.geometry import Rect


def segment_rect(p0: tuple[float, float], p1: tuple[float, float], radius: float) -> Rect:
    r = int(np.ceil(radius)) + 1
    return Rect(int(np.floor(min(p0[0], p1[0]))) - r, int(np.floor(min(p0[1], p1[1]))) - r,
                int(np.ceil(max(p0[0], p1[0]))) + r + 1, int(np.ceil(max(p0[1], p1[1]))) + r + 1)


def segment_stencil(p0: tuple[float, float], p1: tuple[float, float], radius: float,
                    rect: Rect) -> np.ndarray:
    """Boolean mask over `rect` of pixels whose centre lies within `radius` of segment p0-p1.

    One capsule per mouse move instead of dabs: no gaps at any drag speed.
    """
    ys = np.arange(rect.y0, rect.y1, dtype=np.float32)[:, None]
    xs = np.arange(rect.x0, rect.x1, dtype=np.float32)[None, :]
    (ay, ax), (by, bx) = p0, p1
    dy, dx = by - ay, bx - ax
    length2 = dy * dy + dx * dx
    if length2 < 1e-12:
        d2 = (ys - ay) ** 2 + (xs - ax) ** 2
    else:
        t = np.clip(((ys - ay) * dy + (xs - ax) * dx) / length2, 0.0, 1.0)
        d2 = (ys - (ay + t * dy)) ** 2 + (xs - (ax + t * dx)) ** 2
    # a radius-0.5 brush still covers the pixel under the cursor
    return d2 <= max(radius, 0.5) ** 2
