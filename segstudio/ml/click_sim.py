"""Simulated clicks: objects of labelled masks, the click robot, and the model's window.

No torch here: the click model's training, the benchmark and the tests share these pieces.

- Objects: one per stored object id, or per connected region of one class where a class keeps
  no object ids (class 0 = background and 255 = unlabeled are never objects).
- The robot (RITM's protocol): the next click goes to the point farthest from the edge of the
  largest error region, positive in a false negative, negative in a false positive. Pixels
  marked unlabeled (255) are no error either way.
- The window: the model sees a square crop around the prompt, resized to a fixed side, so a
  16k image costs the same per click as a small one.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from segstudio.core.classes import UNLABELED
from segstudio.core.clicks import Click

MIN_OBJECT_PIXELS = 12


@dataclass(frozen=True)
class ObjectRef:
    """One object of one image: which pixels (by label in `labels`) and its bounding box."""

    image: int                   # index into the caller's image list
    label: int                   # value in that image's object label map
    box: tuple[int, int, int, int]   # y0, x0, y1, x1 (exclusive)
    area: int
    cls: int = 0                 # its class in the mask (0: not known)


def object_labels(mask: np.ndarray, objects: np.ndarray | None = None,
                  object_classes: frozenset[int] = frozenset()) -> np.ndarray:
    """int32 label map: stored object ids for `object_classes`, connected regions elsewhere.

    Every class other than 0 and 255 gives objects; labels are 1..n, 0 = no object.
    """
    out = np.zeros(mask.shape, np.int32)
    n = 0
    if objects is not None and object_classes:
        in_obj = np.isin(mask, list(object_classes)) & (objects > 0)
        ids, inverse = np.unique(objects[in_obj], return_inverse=True)
        out[in_obj] = inverse.astype(np.int32) + 1
        n = len(ids)
    for cls in np.unique(mask):
        if cls in (0, UNLABELED) or int(cls) in object_classes and objects is not None:
            continue
        count, comp = cv2.connectedComponents((mask == cls).astype(np.uint8), connectivity=8)
        sel = comp > 0
        out[sel] = comp[sel] + n
        n += count - 1
    return out


def object_refs(labels: np.ndarray, image: int, min_pixels: int = MIN_OBJECT_PIXELS,
                mask: np.ndarray | None = None) -> list[ObjectRef]:
    """The objects of one label map, large enough to click (`min_pixels`); with the class
    `mask` each carries its class."""
    n = int(labels.max())
    if n == 0:
        return []
    cls_of = np.zeros(n + 1, np.int64)
    if mask is not None:
        sel = labels > 0
        cls_of[labels[sel]] = mask[sel]
    out = []
    for i, sl in enumerate(_find_objects(labels, n), start=1):
        if sl is None:
            continue
        area = int(np.count_nonzero(labels[sl] == i))
        if area >= min_pixels:
            out.append(ObjectRef(image, i, (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop),
                                 area, int(cls_of[i])))
    return out


def _find_objects(labels: np.ndarray, n: int) -> list[tuple[slice, slice] | None]:
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    out: list[tuple[slice, slice] | None] = [None] * n
    if len(lab) == 0:
        return out
    y0 = np.full(n + 1, 1 << 30); x0 = np.full(n + 1, 1 << 30)
    y1 = np.full(n + 1, -1); x1 = np.full(n + 1, -1)
    np.minimum.at(y0, lab, ys); np.minimum.at(x0, lab, xs)
    np.maximum.at(y1, lab, ys); np.maximum.at(x1, lab, xs)
    for i in range(1, n + 1):
        if y1[i] >= 0:
            out[i - 1] = (slice(int(y0[i]), int(y1[i]) + 1), slice(int(x0[i]), int(x1[i]) + 1))
    return out


def _farthest_inside(region: np.ndarray) -> tuple[int, int, float]:
    """(y, x, distance) of the point of `region` farthest from its edge (the image border counts)."""
    padded = np.pad(region.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    i = int(np.argmax(dist))
    y, x = divmod(i, region.shape[1])
    return y, x, float(dist[y, x])


def first_click(target: np.ndarray) -> Click:
    """The robot's first click: the object's interior point farthest from its edge."""
    y, x, d = _farthest_inside(target)
    if d <= 0:
        raise ValueError("the object has no pixels to click")
    return Click(float(y), float(x), True)


def next_click(target: np.ndarray, proposal: np.ndarray,
               valid: np.ndarray | None = None) -> Click | None:
    """The robot's next click: centre of the largest error region; None when there is none.

    `target` and `proposal` are bool (h, w); `valid` (bool) marks labelled pixels: an
    unlabeled pixel is never an error.
    """
    fn = target & ~proposal
    fp = proposal & ~target
    if valid is not None:
        fn &= valid
        fp &= valid
    best: Click | None = None
    best_d = 0.0
    for region, positive in ((fn, True), (fp, False)):
        if not region.any():
            continue
        y, x, d = _farthest_inside(region)
        if d > best_d:
            best, best_d = Click(float(y), float(x), positive), d
    return best


def iou(a: np.ndarray, b: np.ndarray, valid: np.ndarray | None = None) -> float:
    if valid is not None:
        a, b = a & valid, b & valid
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


@dataclass(frozen=True)
class Window:
    """A square crop of the image (may reach past its edges) and the side it is resized to."""

    y0: float
    x0: float
    side: float                  # in image pixels
    size: int                    # model pixels

    @property
    def scale(self) -> float:
        return self.size / self.side

    def crop(self, image: np.ndarray, nearest: bool = False, fill: float = 0.0) -> np.ndarray:
        """The window's pixels at `size` x `size` (outside the image: `fill`)."""
        s = self.scale
        m = np.array([[s, 0, -self.x0 * s], [0, s, -self.y0 * s]], np.float64)
        flags = cv2.INTER_NEAREST if nearest else (
            cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        src = image
        if src.dtype == bool:
            src = src.astype(np.uint8)
        if flags == cv2.INTER_AREA:
            # warpAffine has no area filter: shrink the covered region first, then place it
            flags = cv2.INTER_LINEAR
            k = int(1 / s)
            if k >= 2:
                src = cv2.resize(src, (max(1, src.shape[1] // k), max(1, src.shape[0] // k)),
                                 interpolation=cv2.INTER_AREA)
                m = m.copy()
                m[:, :2] *= k
                # pixel centres: source pixel j of the shrunk image covers k*j .. k*j + k
                m[:, 2] += (k - 1) / 2 * s
        border = cv2.BORDER_CONSTANT
        if src.ndim == 3 and src.shape[2] > 4:
            chans = [cv2.warpAffine(np.ascontiguousarray(src[..., c]), m,
                                    (self.size, self.size), flags=flags, borderMode=border,
                                    borderValue=fill) for c in range(src.shape[2])]
            return np.stack(chans, axis=-1)
        out = cv2.warpAffine(np.ascontiguousarray(src), m, (self.size, self.size), flags=flags,
                             borderMode=border, borderValue=fill)
        if src.ndim == 3 and out.ndim == 2:
            out = out[..., None]
        return out

    def paste_region(self, small: np.ndarray, shape: tuple[int, int]
                     ) -> tuple[int, int, np.ndarray]:
        """(y0, x0, region): a size x size float map back on the image grid, for the part of
        the image the window covers only (never a full-size float copy of a large image)."""
        h, w = shape
        y0 = min(h, max(0, int(np.floor(self.y0))))
        x0 = min(w, max(0, int(np.floor(self.x0))))
        y1 = min(h, max(y0, int(np.ceil(self.y0 + self.side))))
        x1 = min(w, max(x0, int(np.ceil(self.x0 + self.side))))
        if y0 >= y1 or x0 >= x1:
            return y0, x0, np.zeros((y1 - y0, x1 - x0), np.float32)
        s = self.scale
        # inverse map: region pixel (y, x) -> window pixel ((y + y0 - win.y0) * s, ...)
        m = np.array([[s, 0, (x0 - self.x0) * s], [0, s, (y0 - self.y0) * s]], np.float64)
        region = cv2.warpAffine(small.astype(np.float32), m, (x1 - x0, y1 - y0),
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
        return y0, x0, region


def window_around(box: tuple[float, float, float, float], margin: float, min_side: float,
                  size: int) -> Window:
    """A square window centred on `box` (y0, x0, y1, x1), `margin` x its longer side."""
    y0, x0, y1, x1 = box
    side = max(min_side, margin * max(y1 - y0, x1 - x0, 1.0))
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    return Window(cy - side / 2, cx - side / 2, side, size)
