"""Masks to instances to polygons and back.

An instance is one 8-connected component of one class; for a class that holds objects (an
object layer beside the class mask), one object id of that class, however its pixels touch
other objects (two touching nuclei are two instances). Two polygon conventions exist and
we follow each tool's own:

- COCO (pycocotools): continuous coordinates, pixel (x, y) covers [x, x+1) x [y, y+1).
  We trace the component at twice the resolution, so the outline runs a quarter pixel
  outside the centres of its edge pixels and decodes back to exactly the same pixels.
- Ultralytics / labelme: integer coordinates are pixel centres and masks are drawn with
  `cv2.fillPoly` (labelme: Pillow's polygon with outline, which `formats.labelme` calls
  itself so that imports equal labelme2voc's). The outline through the centres of the edge
  pixels (`cv2.findContours`) fills back to the same pixels.

Polygons cannot hold holes: a ring exports as its filled outline (RLE keeps holes).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

_SHIFT = 4  # fixed-point bits for cv2.fillPoly: 1/16 pixel


@dataclass(frozen=True)
class Instance:
    class_id: int
    bbox: tuple[int, int, int, int]    # x, y, w, h in pixels
    area: int                          # pixels
    crop: np.ndarray                   # (h, w) bool mask of the component inside bbox
    object_id: int = 0                 # the object layer's id (0: a connected component)

    def full_mask(self, shape: tuple[int, int], order: str = "C") -> np.ndarray:
        out = np.zeros(shape, np.uint8, order=order)
        x, y, w, h = self.bbox
        out[y:y + h, x:x + w] = self.crop
        return out


def instances(mask: np.ndarray, class_ids: list[int] | tuple[int, ...],
              objects: np.ndarray | None = None,
              object_classes: frozenset[int] | set[int] | tuple[int, ...] = ()) -> Iterator[Instance]:
    """Every instance of each class in `class_ids`, in class then object-id / scan order.

    Classes in `object_classes` give one instance per id of `objects` (uint32, same shape)
    inside the class, touching or not; their pixels without an object id, and every other
    class, give one instance per 8-connected component, as before objects existed.
    """
    import cv2

    counts = cv2.calcHist([mask], [0], None, [256], [0, 256]).ravel()
    for cid in class_ids:
        if counts[cid] == 0:
            continue
        binary = (mask == cid).view(np.uint8)
        if objects is not None and cid in object_classes:
            ids = np.where(binary.view(bool), objects, 0)
            yield from _objects_of(cid, ids)
            binary = (binary.view(bool) & (ids == 0)).view(np.uint8)
            if not binary.any():
                continue
        yield from _components(cid, binary)


def _components(cid: int, binary: np.ndarray) -> Iterator[Instance]:
    import cv2

    # 16-bit labels make the statistics pass about twice as fast; fall back to 32-bit
    # only for the rare class with more components than 16 bits can count
    n = cv2.connectedComponents(binary, connectivity=8, ltype=cv2.CV_32S)[0]
    ltype = cv2.CV_16U if n < 65535 else cv2.CV_32S
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8, ltype=ltype)
    for k in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[k])
        crop = labels[y:y + h, x:x + w] == k
        yield Instance(cid, (x, y, w, h), area, crop)


def _objects_of(cid: int, ids: np.ndarray) -> Iterator[Instance]:
    """One instance per non-zero id of `ids` (zero outside the class), in id order."""
    ys, xs = np.nonzero(ids)
    if ys.size == 0:
        return
    labels = ids[ys, xs]
    order = np.argsort(labels, kind="stable")     # one sort, then each object is a slice
    labels, ys, xs = labels[order], ys[order], xs[order]
    cuts = np.flatnonzero(np.diff(labels)) + 1
    for start, end in zip(np.r_[0, cuts], np.r_[cuts, labels.size]):
        oy, ox = ys[start:end], xs[start:end]
        y0, x0 = int(oy.min()), int(ox.min())
        h, w = int(oy.max()) - y0 + 1, int(ox.max()) - x0 + 1
        crop = np.zeros((h, w), bool)
        crop[oy - y0, ox - x0] = True
        yield Instance(cid, (x0, y0, w, h), int(end - start), crop, int(labels[start]))


def has_holes(inst: Instance) -> bool:
    """Whether the instance encloses background (which an outline polygon would fill)."""
    import cv2

    inside = np.pad(~inst.crop, 1, constant_values=True).view(np.uint8)
    n = cv2.connectedComponents(inside, connectivity=4)[0]     # 4: 8-connected pixels enclose
    return n > 2          # label 0 is the instance itself, 1 the outside (it touches the pad)


def edge_polygon(inst: Instance, tolerance: float = 0.25) -> list[float]:
    """COCO outline [x0, y0, x1, y1, ...] in continuous coordinates (see module doc)."""
    import cv2

    x0, y0, _w, _h = inst.bbox
    padded = np.pad(inst.crop.view(np.uint8), 1)
    up = cv2.resize(padded, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    c = max(contours, key=cv2.contourArea) if len(contours) > 1 else contours[0]
    if tolerance > 0:
        c = cv2.approxPolyDP(c, 2 * tolerance, True)
    pts = (c.reshape(-1, 2).astype(np.float64) + 0.5) / 2 - 1    # undo 2x and the pad
    pts += (x0, y0)
    if len(pts) < 3:     # a single pixel after simplification: its square
        x, y = pts[0]
        pts = np.array([[x - .25, y - .25], [x + .25, y - .25], [x + .25, y + .25], [x - .25, y + .25]])
    return [round(float(v), 2) for v in pts.reshape(-1)]


def edge_polygons(inst: Instance, tolerance: float = 0.25) -> list[list[float]]:
    """COCO outlines of every part of the instance (an object may have several), largest first."""
    import cv2

    x0, y0, _w, _h = inst.bbox
    padded = np.pad(inst.crop.view(np.uint8), 1)
    up = cv2.resize(padded, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in sorted(contours, key=cv2.contourArea, reverse=True):
        if tolerance > 0:
            c = cv2.approxPolyDP(c, 2 * tolerance, True)
        pts = (c.reshape(-1, 2).astype(np.float64) + 0.5) / 2 - 1 + (x0, y0)
        if len(pts) < 3:
            x, y = pts[0]
            pts = np.array([[x - .25, y - .25], [x + .25, y - .25], [x + .25, y + .25],
                            [x - .25, y + .25]])
        out.append([round(float(v), 2) for v in pts.reshape(-1)])
    return out


def centre_polygon(inst: Instance) -> np.ndarray:
    """Outline through the centres of the edge pixels, (n, 2) x/y; at least 3 points."""
    import cv2

    x0, y0, _w, _h = inst.bbox
    contours, _ = cv2.findContours(inst.crop.view(np.uint8).copy(), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    c = max(contours, key=cv2.contourArea) if len(contours) > 1 else contours[0]
    pts = c.reshape(-1, 2).astype(np.float64) + (x0, y0)
    while len(pts) < 3:          # one pixel or a straight line: repeat points (still fills it)
        pts = np.concatenate([pts, pts[-1:]])
    return pts


def edge_slack(size: int) -> float:
    """Pixels a shape may reach past an image edge and still be clipped (with a warning).

    Tools round outwards or write the far edge itself (labelme: y = 375.77 in a 375 px
    image), so a little is intent; more than 1 % of the side (at least 2 px) is refused
    as a wrong image size or wrong coordinates.
    """
    return max(2.0, 0.01 * size)


def is_number(v: object) -> bool:
    """A JSON number (bools are ints in Python, but no tool means a coordinate by true)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def fill_centre_polygon(out: np.ndarray, pts: np.ndarray, value: int) -> None:
    """Fill a pixel-centre polygon (Ultralytics / labelme convention) into `out` in place."""
    import cv2

    fixed = np.round(np.asarray(pts, np.float64) * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(out, [fixed.reshape(-1, 1, 2)], int(value), lineType=cv2.LINE_8, shift=_SHIFT)
    # fillPoly leaves out some edge pixels of sub-pixel polygons; labelme draws the outline too
    cv2.polylines(out, [fixed.reshape(-1, 1, 2)], True, int(value), lineType=cv2.LINE_8,
                  shift=_SHIFT)
