"""labelme JSON files: one per image, shapes in pixel-centre coordinates."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segstudio.io.formats import FormatError
from segstudio.io.formats.polygons import fill_centre_polygon

log = logging.getLogger(__name__)

SHAPES = ("polygon", "rectangle", "circle")


@dataclass(frozen=True)
class LabelmeShape:
    label: str
    kind: str
    points: np.ndarray    # (n, 2) x, y pixel centres


@dataclass(frozen=True)
class LabelmeFile:
    path: Path
    image_path: str
    height: int | None
    width: int | None
    shapes: list[LabelmeShape]


def read_labelme(path: Path, shape: tuple[int, int] | None = None,
                 tolerance: float = 1.0) -> LabelmeFile:
    """Parse and check one labelme file against its image size (h, w) when given."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: cannot be read ({e})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("shapes"), list):
        raise FormatError(f"{path}: not a labelme file (no 'shapes' list)")
    h, w = raw.get("imageHeight"), raw.get("imageWidth")
    if shape is not None and h is not None and w is not None and (int(h), int(w)) != tuple(shape):
        raise FormatError(f"{path}: made for a {w} x {h} image but its image is "
                          f"{shape[1]} x {shape[0]}")
    if shape is not None:
        h, w = shape
    shapes = []
    for i, s in enumerate(raw["shapes"]):
        where = f"{path}: shapes[{i}]"
        shapes.append(_shape(s, where, h, w, tolerance))
    return LabelmeFile(path, str(raw.get("imagePath") or ""), None if h is None else int(h),
                       None if w is None else int(w), shapes)


def _shape(s: Any, where: str, h: int | None, w: int | None, tolerance: float) -> LabelmeShape:
    if not isinstance(s, dict) or "label" not in s or "points" not in s:
        raise FormatError(f"{where}: needs 'label' and 'points'")
    kind = s.get("shape_type") or "polygon"
    if kind not in SHAPES:
        raise FormatError(f"{where}: shape_type {kind!r} is not an area; supported: {list(SHAPES)}")
    try:
        pts = np.asarray(s["points"], np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise FormatError(f"{where}: 'points' must be a list of [x, y] pairs") from None
    need = 3 if kind == "polygon" else 2
    if len(pts) < need:
        raise FormatError(f"{where}: a {kind} needs at least {need} points, got {len(pts)}")
    if kind == "circle":
        r = float(np.hypot(*(pts[1] - pts[0])))
        lo, hi = pts[0] - r, pts[0] + r
    else:
        lo, hi = pts.min(0), pts.max(0)
    if w is not None and h is not None and (
            (lo < -tolerance).any() or hi[0] > w - 1 + tolerance or hi[1] > h - 1 + tolerance):
        raise FormatError(f"{where} ({s['label']!r}): reaches ({lo[0]:g}, {lo[1]:g})-({hi[0]:g}, "
                          f"{hi[1]:g}), outside the {w} x {h} image")
    return LabelmeShape(str(s["label"]), kind, pts)


def rasterize(f: LabelmeFile, shape: tuple[int, int], class_of: dict[str, int],
              fill: int) -> np.ndarray:
    """Shapes painted in file order, label -> class id via `class_of`."""
    import cv2

    out = np.full(shape, fill, np.uint8)
    for s in f.shapes:
        value = class_of[s.label]
        if s.kind == "polygon":
            fill_centre_polygon(out, s.points, value)
        elif s.kind == "rectangle":
            (x0, y0), (x1, y1) = np.sort(s.points[:2], axis=0)
            fill_centre_polygon(out, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]), value)
        else:
            c, edge = s.points[0], s.points[1]
            r = int(round(float(np.hypot(*(edge - c)))))
            cv2.circle(out, (int(round(c[0])), int(round(c[1]))), r, int(value), -1)
    return out
