"""Region proposals: flood fill, polygons, rectangles, magic wand, GrabCut, watershed, threshold.

Each returns `Proposal(rect, region)`: a boolean region over `rect` of the image, which the UI
shows before it is committed (smart tools) or commits at once (fill, polygon, rectangle).
Smart tools work on a window around the user's input so they stay instant on huge images.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from segstudio.core.display import DisplayRange, to_display
from segstudio.core.geometry import Rect

SMART_WINDOW = 1024   # half-size of the window a click-driven smart tool looks at


@dataclass(frozen=True)
class Proposal:
    rect: Rect
    region: np.ndarray          # bool, shape (rect.height, rect.width)

    @property
    def empty(self) -> bool:
        return not bool(self.region.any())

    @property
    def area(self) -> int:
        return int(self.region.sum())


def _window(shape: tuple[int, ...], y: int, x: int, half: int = SMART_WINDOW) -> Rect:
    return Rect(y - half, x - half, y + half, x + half).clip(shape)


def _box(shape: tuple[int, ...], p0: tuple[float, float], p1: tuple[float, float]) -> Rect:
    # a point inside pixel (i, j) has floor coordinates (i, j): the box includes both corner pixels
    y0, y1 = sorted((int(np.floor(p0[0])), int(np.floor(p1[0]))))
    x0, x1 = sorted((int(np.floor(p0[1])), int(np.floor(p1[1]))))
    return Rect(y0, x0, y1 + 1, x1 + 1).clip(shape)


def flood_fill(mask: np.ndarray, y: int, x: int, connectivity: int = 4) -> Proposal:
    """The connected region of equal mask values around (y, x)."""
    h, w = mask.shape
    if not (0 <= y < h and 0 <= x < w):
        return Proposal(Rect(0, 0, 0, 0), np.zeros((0, 0), bool))
    seen = np.zeros((h + 2, w + 2), np.uint8)
    flags = connectivity | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (1 << 8)
    _n, _img, _m, (bx, by, bw, bh) = cv2.floodFill(mask, seen, (int(x), int(y)), 0, 0, 0, flags)
    rect = Rect(by, bx, by + bh, bx + bw)
    return Proposal(rect, seen[1 + by:1 + by + bh, 1 + bx:1 + bx + bw].astype(bool))


def polygon(shape: tuple[int, ...], points: list[tuple[float, float]]) -> Proposal:
    """Inside of a closed polygon given as (y, x) vertices (a lasso is a dense polygon)."""
    if len(points) < 3:
        return Proposal(Rect(0, 0, 0, 0), np.zeros((0, 0), bool))
    pts = np.asarray(points, np.float64)
    rect = Rect(int(np.floor(pts[:, 0].min())), int(np.floor(pts[:, 1].min())),
                int(np.ceil(pts[:, 0].max())) + 1, int(np.ceil(pts[:, 1].max())) + 1).clip(shape)
    if rect.empty:
        return Proposal(rect, np.zeros((0, 0), bool))
    canvas = np.zeros((rect.height, rect.width), np.uint8)
    xy = np.round(pts[:, ::-1] - (rect.x0, rect.y0)).astype(np.int32)
    cv2.fillPoly(canvas, [xy], 1)
    return Proposal(rect, canvas.astype(bool))


def rectangle(shape: tuple[int, ...], p0: tuple[float, float], p1: tuple[float, float]) -> Proposal:
    rect = _box(shape, p0, p1)
    return Proposal(rect, np.ones((rect.height, rect.width), bool))


def _as_float(image: np.ndarray) -> np.ndarray:
    data = np.asarray(image)
    if data.ndim == 3:
        data = data[..., :3] if data.shape[2] >= 3 else data[..., 0]
    return data.astype(np.float32)


def _as_bgr8(image: np.ndarray, rng: DisplayRange | None) -> np.ndarray:
    """8-bit, 3-channel view for the OpenCV tools that need it (GrabCut, watershed)."""
    data = np.asarray(image)
    if rng is None:
        rng = DisplayRange(0, 255) if data.dtype == np.uint8 else DisplayRange(
            float(np.percentile(data, 0.5)), float(np.percentile(data, 99.5)) + 1e-6)
    shown = to_display(data, rng)
    if shown.ndim == 2:
        shown = cv2.cvtColor(shown, cv2.COLOR_GRAY2BGR)
    else:
        shown = cv2.cvtColor(np.ascontiguousarray(shown), cv2.COLOR_RGB2BGR)
    return np.ascontiguousarray(shown)


def magic_wand(image: np.ndarray, y: int, x: int, tolerance: float,
               connectivity: int = 8) -> Proposal:
    """Pixels connected to (y, x) whose value is within `tolerance` of the clicked value."""
    win = _window(image.shape, y, x)
    patch = np.ascontiguousarray(_as_float(image[win.slices]))
    seen = np.zeros((win.height + 2, win.width + 2), np.uint8)
    channels = 1 if patch.ndim == 2 else patch.shape[2]
    diff = (float(tolerance),) * channels + (0.0,) * (4 - channels)
    flags = connectivity | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (1 << 8)
    cv2.floodFill(patch, seen, (int(x - win.x0), int(y - win.y0)), 0, diff, diff, flags)
    return Proposal(win, seen[1:-1, 1:-1].astype(bool))


def grabcut(image: np.ndarray, p0: tuple[float, float], p1: tuple[float, float],
            rng: DisplayRange | None = None, iterations: int = 4,
            fg_seeds: list[tuple[int, int]] = (), bg_seeds: list[tuple[int, int]] = (),
            seed_radius: int = 2) -> Proposal:
    """Foreground of a box by GrabCut (colour models of inside vs a margin around it).

    Seeds (y, x) are hard constraints, as a person's refining strokes are: disks of
    `seed_radius` px that stay foreground / background.
    """
    box = _box(image.shape, p0, p1)
    if box.height < 3 or box.width < 3:
        return Proposal(box, np.zeros((box.height, box.width), bool))
    margin = max(8, max(box.height, box.width) // 4)
    win = Rect(box.y0 - margin, box.x0 - margin, box.y1 + margin, box.x1 + margin).clip(image.shape)
    bgr = _as_bgr8(image[win.slices], rng)
    mask = np.zeros(bgr.shape[:2], np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    rect = (box.x0 - win.x0, box.y0 - win.y0, box.width, box.height)
    if fg_seeds or bg_seeds:
        mask[rect[1]:rect[1] + rect[3], rect[0]:rect[0] + rect[2]] = cv2.GC_PR_FGD
        for seeds, value in ((bg_seeds, cv2.GC_BGD), (fg_seeds, cv2.GC_FGD)):
            for (y, x) in seeds:
                cv2.circle(mask, (int(x) - win.x0, int(y) - win.y0), seed_radius, int(value), -1)
        if (mask == cv2.GC_BGD).any() and ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).any():
            cv2.grabCut(bgr, mask, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    else:
        cv2.grabCut(bgr, mask, rect, bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    fg = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    return Proposal(box, fg[box.y0 - win.y0:box.y1 - win.y0, box.x0 - win.x0:box.x1 - win.x0])


def watershed(image: np.ndarray, fg_seeds: list[tuple[int, int]], bg_seeds: list[tuple[int, int]],
              rng: DisplayRange | None = None, seed_radius: int = 2) -> Proposal:
    """The basin flooded from the foreground seeds before it meets the background seeds.

    Without background seeds, the border of the working window acts as background.
    """
    if not fg_seeds:
        return Proposal(Rect(0, 0, 0, 0), np.zeros((0, 0), bool))
    pts = np.asarray(fg_seeds + bg_seeds)
    margin = 64
    win = Rect(int(pts[:, 0].min()) - margin, int(pts[:, 1].min()) - margin,
               int(pts[:, 0].max()) + margin + 1, int(pts[:, 1].max()) + margin + 1).clip(image.shape)
    bgr = _as_bgr8(image[win.slices], rng)
    markers = np.zeros(bgr.shape[:2], np.int32)
    if not bg_seeds:
        markers[[0, -1], :] = 1
        markers[:, [0, -1]] = 1
    for (y, x) in bg_seeds:
        cv2.circle(markers, (x - win.x0, y - win.y0), seed_radius, 1, -1)
    for (y, x) in fg_seeds:
        cv2.circle(markers, (x - win.x0, y - win.y0), seed_radius, 2, -1)
    cv2.watershed(bgr, markers)
    return Proposal(win, markers == 2)


def threshold(image: np.ndarray, p0: tuple[float, float], p1: tuple[float, float],
              bright: bool = True) -> Proposal:
    """Otsu's threshold inside a box: its bright (or dark) pixels."""
    box = _box(image.shape, p0, p1)
    data = _as_float(image[box.slices])
    if data.ndim == 3:
        data = data.mean(axis=2)
    if data.size < 4 or float(data.max()) == float(data.min()):
        return Proposal(box, np.zeros((box.height, box.width), bool))
    scaled = ((data - data.min()) * (255.0 / (data.max() - data.min()))).astype(np.uint8)
    t, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    region = scaled > t if bright else scaled <= t
    return Proposal(box, region)
