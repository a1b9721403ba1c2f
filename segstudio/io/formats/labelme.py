"""labelme JSON files: one per image, shapes in pixel-centre coordinates."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segstudio.core.classes import ClassError, validate_class_name
from segstudio.io.formats import FormatError
from segstudio.io.formats.polygons import edge_slack, fill_centre_polygon, is_number

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
    warnings: tuple[str, ...] = ()     # what was clipped, for the user


def _size(raw: dict[str, Any], key: str, path: Path) -> int | None:
    v = raw.get(key)
    if v is None:
        return None
    if is_number(v) and float(v).is_integer() and v > 0:
        return int(v)
    raise FormatError(f"{path}: {key} must be a positive whole number (pixels), got {v!r}")


def read_labelme(path: Path, shape: tuple[int, int] | None = None) -> LabelmeFile:
    """Parse and check one labelme file against its image size (h, w) when given."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: cannot be read ({e})") from None
    except RecursionError:
        raise FormatError(f"{path}: nested too deeply to be a labelme file") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("shapes"), list):
        raise FormatError(f"{path}: not a labelme file (no 'shapes' list)")
    h, w = _size(raw, "imageHeight", path), _size(raw, "imageWidth", path)
    image_path = raw.get("imagePath")
    if image_path is not None and not isinstance(image_path, str):
        raise FormatError(f"{path}: imagePath must be text (the image's file name), "
                          f"got {image_path!r}")
    if shape is not None and h is not None and w is not None and (h, w) != tuple(shape):
        raise FormatError(f"{path}: made for a {w} x {h} image but its image is "
                          f"{shape[1]} x {shape[0]}")
    if shape is not None:
        h, w = (int(v) for v in shape)
    shapes, clipped = [], []
    for i, s in enumerate(raw["shapes"]):
        shape_, over = _shape(s, f"{path}: shapes[{i}]", h, w)
        shapes.append(shape_)
        if over > 0:
            clipped.append((f"shapes[{i}]", over))
    warnings = ()
    if clipped:
        places = ", ".join(p for p, _ in clipped[:5]) + (", ..." if len(clipped) > 5 else "")
        warnings = (f"{path}: {len(clipped)} shape(s) reach up to "
                    f"{max(o for _, o in clipped):.2f} px past the image edge ({places}); "
                    f"clipped to the image",)
    return LabelmeFile(path, image_path or "", h, w, shapes, warnings)


def _shape(s: Any, where: str, h: int | None, w: int | None) -> tuple[LabelmeShape, float]:
    """The checked shape, and how far (px) it reaches past the image (0 if it does not)."""
    if not isinstance(s, dict) or "label" not in s or "points" not in s:
        raise FormatError(f"{where}: needs 'label' and 'points'")
    if not isinstance(s["label"], str):
        raise FormatError(f"{where}: label must be text (a class name), got {s['label']!r}")
    try:
        label = validate_class_name(s["label"])
    except ClassError as e:
        raise FormatError(f"{where}: label: {e}") from None
    kind = s.get("shape_type") or "polygon"
    if kind not in SHAPES:
        raise FormatError(f"{where} ({label!r}): shape_type {kind!r} is not an area; "
                          f"supported: {list(SHAPES)}")
    points = s["points"]
    if not (isinstance(points, list) and all(
            isinstance(p, list) and len(p) == 2 and all(is_number(v) for v in p) for p in points)):
        raise FormatError(f"{where} ({label!r}): 'points' must be a list of [x, y] number pairs")
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    need = 3 if kind == "polygon" else 2
    if len(pts) < need:
        raise FormatError(f"{where} ({label!r}): a {kind} needs at least {need} points, "
                          f"got {len(pts)}")
    if not np.isfinite(pts).all():
        raise FormatError(f"{where} ({label!r}): holds the coordinate "
                          f"{pts[~np.isfinite(pts)][0]}, which is not a finite number; "
                          f"the shape was refused")
    if kind == "circle":
        r = float(np.hypot(*(pts[1] - pts[0])))
        lo, hi = pts[0] - r, pts[0] + r
    else:
        lo, hi = pts.min(0), pts.max(0)
    over = 0.0
    if w is not None and h is not None:
        # points are pixel centres: the image spans -0.5 .. size - 0.5
        past = np.maximum(-0.5 - lo, hi - (w - 0.5, h - 0.5))
        if (past > (edge_slack(w), edge_slack(h))).any():
            raise FormatError(f"{where} ({label!r}): reaches ({lo[0]:g}, {lo[1]:g})-({hi[0]:g}, "
                              f"{hi[1]:g}), outside the {w} x {h} image by more than the "
                              f"{edge_slack(w):g} x {edge_slack(h):g} px that are clipped")
        over = max(0.0, float(past.max()))
        if over > 0 and kind != "circle":       # a circle is cut by the image edge as drawn
            pts = np.clip(pts, -0.5, (w - 0.5, h - 0.5))
    return LabelmeShape(label, kind, pts), over


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
