"""The working scale: the resolution at which a model sees images, in training and after.

A run trains on images resampled to its working scale (`WorkingScale`, chosen by the plan,
`segstudio.ml.plan`) and stores the rule in its checkpoint beside the normalisation. The
predictor resamples every image by the same rule, predicts at that scale and brings the class
probabilities back to the image's own size, so masks, Measure and exports are always at full
resolution. The rule is one of:

- "native": the image as it is (scale 1);
- "factor": one scale for every image (objects of the same size in pixels everywhere, such as
  microscopy at one magnification);
- "long_side": each image resampled so its longer side has this many pixels (images showing
  the same scene at different resolutions, such as radiographs from different detectors).

numpy and OpenCV only, no torch: training snapshots and the plan use it as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from segstudio.core.classes import UNLABELED

WORKING_MODES = ("native", "factor", "long_side")
MAX_FACTOR = 8.0
_CV_DTYPES = (np.uint8, np.uint16, np.int16, np.float32, np.float64)


@dataclass(frozen=True)
class WorkingScale:
    """How an image of a given size is resampled for the model; `scale_for` gives the factor."""

    mode: str = "native"
    factor: float = 1.0          # "factor": the scale for every image
    long_side: int = 0           # "long_side": pixels of the longer side after resampling

    def __post_init__(self) -> None:
        if self.mode not in WORKING_MODES:
            raise ValueError(f"unknown working scale {self.mode!r}; known: {list(WORKING_MODES)}")
        if self.mode == "factor" and not 0.0 < self.factor <= MAX_FACTOR:
            raise ValueError(f"working scale factor must be in (0, {MAX_FACTOR:g}], "
                             f"got {self.factor}")
        if self.mode == "long_side" and self.long_side < 8:
            raise ValueError(f"working size must be at least 8 px, got {self.long_side}")

    @property
    def native(self) -> bool:
        return self.mode == "native" or (self.mode == "factor" and self.factor == 1.0)

    def scale_for(self, height: int, width: int) -> float:
        """The factor for an image of this size (1.0: as it is). Never enlarges in long_side."""
        if self.mode == "factor":
            return float(self.factor)
        if self.mode == "long_side":
            return min(1.0, self.long_side / max(height, width, 1))
        return 1.0

    def shape_for(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) at the working scale, at least 1 x 1."""
        s = self.scale_for(height, width)
        if s == 1.0:
            return height, width
        return max(1, int(round(height * s))), max(1, int(round(width * s)))

    def describe(self) -> str:
        if self.mode == "factor" and self.factor != 1.0:
            return f"images scaled by {self.factor:.3g}"
        if self.mode == "long_side":
            return f"longer side {self.long_side} px"
        return "images at their own resolution"

    def to_dict(self) -> dict[str, Any]:
        if self.mode == "factor":
            return {"mode": "factor", "factor": self.factor}
        if self.mode == "long_side":
            return {"mode": "long_side", "long_side": self.long_side}
        return {"mode": "native"}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> WorkingScale:
        d = dict(d or {})
        unknown = sorted(set(d) - {"mode", "factor", "long_side"})
        if unknown:
            raise ValueError(f"working scale: unknown key(s) {unknown}")
        return cls(str(d.get("mode", "native")), float(d.get("factor", 1.0)),
                   int(d.get("long_side", 0)))


NATIVE = WorkingScale()


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The image at (height, width): area averaging when shrinking, bilinear when enlarging.

    Kept in its own dtype where OpenCV can (uint8, uint16, int16, float); other integer types
    become float32. The same call for training snapshots and prediction, so both see the same
    pixels.
    """
    a = np.asarray(image)
    if a.shape[:2] == tuple(shape):
        return a
    if a.dtype not in _CV_DTYPES:
        a = a.astype(np.float32)
    a = np.ascontiguousarray(a)
    shrink = shape[0] * shape[1] < a.shape[0] * a.shape[1]
    out = cv2.resize(a, (int(shape[1]), int(shape[0])),
                     interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if a.ndim == 3 and out.ndim == 2:
        out = out[:, :, None]
    return out


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A mask at (height, width) that keeps thin strokes: each working pixel takes the class
    covering most of its footprint among the labelled ones; unlabeled only where no source
    pixel is labelled. (Nearest-neighbour sampling would drop most of a 3 px scribble at a
    tenth of the size.)"""
    m = np.asarray(mask, np.uint8)
    if m.shape == tuple(shape):
        return m.copy()
    dsize = (int(shape[1]), int(shape[0]))
    if shape[0] * shape[1] >= m.shape[0] * m.shape[1]:
        return cv2.resize(m, dsize, interpolation=cv2.INTER_NEAREST)
    best = np.zeros(shape, np.float32)
    out = np.full(shape, UNLABELED, np.uint8)
    for c in np.unique(m):
        if c == UNLABELED:
            continue
        share = cv2.resize((m == c).astype(np.float32), dsize, interpolation=cv2.INTER_AREA)
        win = share > best
        out[win] = c
        best[win] = share[win]
    return out


def source_coordinates(out_size: int, src_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For linear interpolation along one axis (pixel centres aligned, as cv2.resize does):
    the lower source index, the upper one and the weight of the upper, per output position."""
    pos = (np.arange(out_size, dtype=np.float64) + 0.5) * (src_size / out_size) - 0.5
    pos = np.clip(pos, 0.0, src_size - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, src_size - 1)
    return lo, hi, (pos - lo).astype(np.float32)
