"""labelme JSON files: one per image, shapes in pixel-centre coordinates.

Masks are drawn the way labelme's own converters (labelme2voc, shapes_to_label) draw them:
Pillow's ImageDraw with fill and outline, shapes in file order, so an import equals
labelme2voc's SegmentationClass for the same files. What the converters would do with a
shape a little past the image edge (the far edge itself, y = 375.77 in a 375 px image) is
done here too: Pillow crops it, and the file gets a warning. `mask` shapes (labelme 5's AI
tools: two corner points and a base64 PNG patch) are pasted at their corner. Lines,
line strips and points are left out with a warning: they are not areas (labelme2voc would
draw them 10 px wide or as 5 px discs, a thickness nobody drew).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segstudio.core.classes import ClassError, validate_class_name
from segstudio.io.formats import FormatError
from segstudio.io.formats.polygons import edge_slack, is_number

log = logging.getLogger(__name__)

SHAPES = ("polygon", "rectangle", "circle", "oriented_rectangle", "mask")
NOT_AREAS = ("line", "linestrip", "point", "points")
_NEED = {"polygon": 3, "oriented_rectangle": 3, "rectangle": 2, "circle": 2, "mask": 2}


@dataclass(frozen=True)
class LabelmeShape:
    label: str
    kind: str
    points: np.ndarray    # (n, 2) x, y pixel centres
    patch: np.ndarray | None = None   # kind "mask": (h, w) bool, its top-left at points[0]
    group: int | str | None = None    # labelme's group_id: shapes of one label and group are one object


@dataclass(frozen=True)
class LabelmeFile:
    path: Path
    image_path: str
    height: int | None
    width: int | None
    shapes: list[LabelmeShape]
    warnings: tuple[str, ...] = ()     # what was clipped or left out, for the user


def _size(raw: dict[str, Any], key: str, path: Path) -> int | None:
    v = raw.get(key)
    if v is None:
        return None
    if is_number(v) and float(v).is_integer() and v > 0:
        return int(v)
    raise FormatError(f"{path}: {key} must be a positive whole number (pixels), got {v!r}")


def _places(items: list[str]) -> str:
    return ", ".join(items[:5]) + (", ..." if len(items) > 5 else "")


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
    shapes, clipped, left_out = [], [], []
    for i, s in enumerate(raw["shapes"]):
        where = f"{path}: shapes[{i}]"
        kind = s.get("shape_type") if isinstance(s, dict) else None
        kind = kind or "polygon"
        if kind not in SHAPES:
            label = s.get("label") if isinstance(s, dict) else None
            left_out.append(f"shapes[{i}] {kind!r}" + (f" ({label!r})" if isinstance(label, str) else ""))
            continue
        shape_, over = _shape(s, kind, where, h, w)
        shapes.append(shape_)
        if over > 0:
            clipped.append((f"shapes[{i}]", over))
    warnings = []
    if clipped:
        warnings.append(f"{path}: {len(clipped)} shape(s) reach up to "
                        f"{max(o for _, o in clipped):.2f} px past the image edge "
                        f"({_places([p for p, _ in clipped])}); clipped to the image")
    if left_out:
        warnings.append(f"{path}: {len(left_out)} shape(s) are not areas and were left out "
                        f"({_places(left_out)}); only {', '.join(SHAPES)} become mask pixels")
    return LabelmeFile(path, image_path or "", h, w, shapes, tuple(warnings))


def _label(s: Any, where: str) -> str:
    if not isinstance(s, dict) or "label" not in s or "points" not in s:
        raise FormatError(f"{where}: needs 'label' and 'points'")
    if not isinstance(s["label"], str):
        raise FormatError(f"{where}: label must be text (a class name), got {s['label']!r}")
    try:
        return validate_class_name(s["label"])
    except ClassError as e:
        raise FormatError(f"{where}: label: {e}") from None


def _patch(s: dict[str, Any], where: str) -> np.ndarray:
    """The bool patch of a `mask` shape: a base64 PNG (grey or 1-bit), non-zero = inside."""
    from PIL import Image, UnidentifiedImageError

    data = s.get("mask")
    if not isinstance(data, str):
        raise FormatError(f"{where}: a 'mask' shape needs 'mask', the patch as base64 PNG text")
    try:
        with Image.open(io.BytesIO(base64.b64decode(data, validate=False))) as im:
            arr = np.asarray(im)
    except (binascii.Error, UnidentifiedImageError, OSError, ValueError) as e:
        raise FormatError(f"{where}: 'mask' is not a base64 PNG ({e})") from None
    if arr.ndim != 2 or arr.size == 0:
        raise FormatError(f"{where}: 'mask' must be a one-channel PNG (grey or 1-bit), got "
                          f"shape {arr.shape}")
    return arr != 0


def _shape(s: Any, kind: str, where: str, h: int | None,
           w: int | None) -> tuple[LabelmeShape, float]:
    """The checked shape, and how far (px) it reaches past the image (0 if it does not)."""
    label = _label(s, where)
    points = s["points"]
    if not (isinstance(points, list) and all(
            isinstance(p, list) and len(p) == 2 and all(is_number(v) for v in p) for p in points)):
        raise FormatError(f"{where} ({label!r}): 'points' must be a list of [x, y] number pairs")
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    need = _NEED[kind]
    if len(pts) < need:
        raise FormatError(f"{where} ({label!r}): a {kind} needs at least {need} points, "
                          f"got {len(pts)}")
    if not np.isfinite(pts).all():
        raise FormatError(f"{where} ({label!r}): holds the coordinate "
                          f"{pts[~np.isfinite(pts)][0]}, which is not a finite number; "
                          f"the shape was refused")
    patch = None
    if kind == "circle":
        r = float(np.hypot(*(pts[1] - pts[0])))
        lo, hi = pts[0] - r, pts[0] + r
    elif kind == "mask":
        patch = _patch(s, where)
        pts = _mask_box(pts[:2], patch.shape)
        lo, hi = pts[0], pts[1]
    else:
        lo, hi = pts.min(0), pts.max(0)
    over = 0.0
    if w is not None and h is not None:
        # points are pixel centres: the image spans -0.5 .. size - 0.5; what reaches past it
        # is cropped when drawn (as labelme's converters do), not moved
        past = np.maximum(-0.5 - lo, hi - (w - 0.5, h - 0.5))
        if (past > (edge_slack(w), edge_slack(h))).any():
            raise FormatError(f"{where} ({label!r}): reaches ({lo[0]:g}, {lo[1]:g})-({hi[0]:g}, "
                              f"{hi[1]:g}), outside the {w} x {h} image by more than the "
                              f"{edge_slack(w):g} x {edge_slack(h):g} px that are clipped")
        over = max(0.0, float(past.max()))
    group = s.get("group_id")
    if isinstance(group, bool) or not isinstance(group, (int, str)):
        group = None                   # null (each shape its own object) or nothing usable
    return LabelmeShape(label, kind, pts, patch, group), over


def _mask_box(corners: np.ndarray, patch_shape: tuple[int, int]) -> np.ndarray:
    """[[x0, y0], [x1, y1]] pixels (inclusive) a mask patch covers.

    The top-left corner is rounded to a pixel. Whole-number corners give the extent
    (older files; a larger patch is cut to it); fractional corners, rounded one by one,
    could differ from the patch by a pixel, so the patch's own size wins."""
    top_left = np.round(corners[0])
    size = np.array(patch_shape[::-1], np.float64)           # w, h
    if np.array_equal(corners, np.trunc(corners)):
        size = np.minimum(size, np.round(corners[1]) - top_left + 1)
    return np.array([top_left, top_left + size - 1])


def rasterize(f: LabelmeFile, shape: tuple[int, int], class_of: dict[str, int],
              fill: int) -> np.ndarray:
    """Shapes painted in file order, label -> class id via `class_of` (labelme2voc's pixels)."""
    return _draw(f, np.full(shape, fill, np.uint8), [int(class_of[s.label]) for s in f.shapes])


def object_numbers(f: LabelmeFile) -> list[int]:
    """Object number (1..n) of each shape: shapes sharing a label and a group_id are one object
    (labelme's own instance rule), every other shape is its own."""
    numbers, groups = [], {}
    for s in f.shapes:
        key = (s.label, s.group) if s.group is not None else len(numbers)
        numbers.append(groups.setdefault(key, len(groups) + 1))
    return numbers


def rasterize_objects(f: LabelmeFile, shape: tuple[int, int]) -> np.ndarray:
    """Object ids (uint32) painted with the same pixels and order as `rasterize`."""
    return _draw(f, np.zeros(shape, np.int32), object_numbers(f)).astype(np.uint32)


def _draw(f: LabelmeFile, out: np.ndarray, values: list[int]) -> np.ndarray:
    """Shapes drawn into `out` (uint8, or int32 as Pillow's mode "I") with one value each."""
    from PIL import Image, ImageDraw

    canvas = draw = None
    for s, value in zip(f.shapes, values):
        if s.kind == "mask":
            if canvas is not None:
                out, canvas = np.array(canvas), None
            _paste(out, s, value)
            continue
        if canvas is None:
            canvas = Image.fromarray(out)
            draw = ImageDraw.Draw(canvas)
        xy = [(float(x), float(y)) for x, y in s.points]
        if s.kind == "rectangle":
            (x0, y0), (x1, y1) = xy[:2]
            draw.rectangle(((min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1))),
                           fill=value, outline=value)
        elif s.kind == "circle":
            (cx, cy), (px, py) = xy[:2]
            r = float(np.hypot(px - cx, py - cy))
            draw.ellipse(((cx - r, cy - r), (cx + r, cy + r)), fill=value, outline=value)
        else:                          # polygon, oriented_rectangle
            draw.polygon(xy, fill=value, outline=value)
    return np.array(canvas) if canvas is not None else out


def _paste(out: np.ndarray, s: LabelmeShape, value: int) -> None:
    """A mask shape's patch at its corner, cropped at the image edges."""
    (x0, y0), (x1, y1) = s.points.astype(int)
    h, w = out.shape
    ys, ye = max(y0, 0), min(y1 + 1, h)
    xs, xe = max(x0, 0), min(x1 + 1, w)
    if ys < ye and xs < xe:
        region = out[ys:ye, xs:xe]
        region[s.patch[ys - y0:ye - y0, xs - x0:xe - x0]] = value
