"""The fingerprint of a project's labelled images, the facts a training plan is derived from
(`segstudio.ml.plan`): per image its size, channels, modality and the size and place of every
class's objects; over all of them the foreground intensity statistics.

numpy and OpenCV only: the window and the CLI plan without importing torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from segstudio.core.classes import BACKGROUND, UNLABELED, LabelClass

SIDE_AGREEMENT = 0.9        # share of images in which a layout must hold (lateral, "stuff")
MAX_COMPONENTS = 2000       # objects measured per image and class
STUFF_SPAN = 0.8            # a region this wide (share of the long side) is "stuff", not a thing


# -- the fingerprint -------------------------------------------------------------------------------
@dataclass
class ImageFacts:
    """What the plan needs from one labelled image (its mask at full resolution)."""

    id: str
    height: int
    width: int
    channels: int
    dtype: str
    modality: str                                  # "ct", "mr", "xray", "photo", "grey", ...
    extents: dict[int, list[int]] = field(default_factory=dict)   # class -> object extents px
    areas: dict[int, list[int]] = field(default_factory=dict)     # class -> their pixel counts
    centroids: dict[int, tuple[float, float]] = field(default_factory=dict)  # (x, y) / size
    pixels: dict[int, int] = field(default_factory=dict)

    @property
    def long_side(self) -> int:
        return max(self.height, self.width)


@dataclass
class Fingerprint:
    """The labelled training images, summarised: sizes, modality, objects and where they lie."""

    images: list[ImageFacts]
    classes: list[LabelClass]
    foreground: dict[str, float] = field(default_factory=dict)    # CT: p0.5, p99.5, mean, std

    @property
    def modality(self) -> str:
        kinds = [f.modality for f in self.images]
        return max(set(kinds), key=kinds.count) if kinds else "grey"

    def extents(self, cls: int | None = None, *, things: bool = False) -> np.ndarray:
        """Object extents in px, of one class or all; `things`: without "stuff" classes."""
        skip = self.stuff_classes() if things else set()
        vals = [e for f in self.images for c, es in f.extents.items()
                if (cls is None or c == cls) and c not in skip for e in es]
        return np.asarray(vals, np.float64)

    def stuff_classes(self) -> set[int]:
        """Classes that span the image (road, sky, tissue) in most images where they appear:
        regions seen by their texture, not objects that must fit a patch whole."""
        out = set()
        for c in {c for f in self.images for c in f.extents}:
            spans = [max(f.extents[c]) >= STUFF_SPAN * f.long_side for f in self.images
                     if f.extents.get(c)]
            if spans and np.mean(spans) >= SIDE_AGREEMENT - 0.1:
                out.add(c)
        return out

    def typical_extents(self, relative: bool = False) -> dict[int, float]:
        """Per object class, the area-weighted median extent (px, or share of the long side):
        how big the objects a pixel belongs to are, fragments barely counting."""
        out = {}
        stuff = self.stuff_classes()
        for c in {c for f in self.images for c in f.extents} - stuff:
            ext, wts = [], []
            for f in self.images:
                for e, a in zip(f.extents.get(c, []), f.areas.get(c, [])):
                    ext.append(e / f.long_side if relative else e)
                    wts.append(a)
            if ext:
                order = np.argsort(ext)
                cum = np.cumsum(np.asarray(wts, np.float64)[order])
                out[c] = float(np.asarray(ext)[order][np.searchsorted(cum, cum[-1] / 2)])
        return out

    def to_dict(self) -> dict[str, Any]:
        sizes = np.asarray([(f.height, f.width) for f in self.images] or [(0, 0)])
        ext = self.extents()
        return {"images": len(self.images), "modality": self.modality,
                "height": [int(sizes[:, 0].min()), int(sizes[:, 0].max())],
                "width": [int(sizes[:, 1].min()), int(sizes[:, 1].max())],
                "object_extent_px": _quantiles(ext),
                "foreground": self.foreground}


def _quantiles(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {}
    q = np.percentile(values, [10, 50, 90])
    return {"p10": float(q[0]), "p50": float(q[1]), "p90": float(q[2])}


def modality_of(image: np.ndarray, kind: str = "raster", extra: Mapping[str, Any] | None = None
                ) -> str:
    """"ct" for CT (the DICOM tag, or Hounsfield-like values in a volume), the DICOM modality
    in lower case when it says, else "photo" for colour and "grey" for one channel."""
    extra = extra or {}
    tag = str(extra.get("modality") or "").strip().lower()
    if tag:
        return tag
    a = np.asarray(image)
    if kind in ("nifti", "dicom") and a.ndim == 2 and (a.dtype.kind in "if"):
        sample = a[::4, ::4]
        if sample.size and float(sample.min()) <= -500 and float(np.percentile(sample, 99)) < 4000:
            return "ct"              # air at about -1000 HU, bone below 4000
    if a.ndim == 3 and a.shape[2] >= 3:
        from segstudio.ml.normalise import effective_channels
        return "photo" if effective_channels(a) == 3 else "grey"
    return "grey"


def image_facts(image_id: str, image: np.ndarray, mask: np.ndarray, *, kind: str = "raster",
                extra: Mapping[str, Any] | None = None) -> ImageFacts:
    """The objects of each class in one mask: extents, centroid, pixel count."""
    from segstudio.ml.normalise import effective_channels

    a = np.asarray(image)
    h, w = mask.shape
    facts = ImageFacts(image_id, h, w, effective_channels(a), str(a.dtype),
                       modality_of(a, kind, extra))
    for c in np.unique(mask):
        if c == UNLABELED:
            continue
        binary = (mask == c).astype(np.uint8)
        n, _lab, stats, cents = cv2.connectedComponentsWithStats(binary, connectivity=8)
        if n <= 1:
            continue
        stats, cents = stats[1:], cents[1:]
        area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
        facts.pixels[int(c)] = int(area.sum())
        if int(c) != BACKGROUND:
            ext = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT])
            keep = np.argsort(-area)[:MAX_COMPONENTS]
            facts.extents[int(c)] = [int(e) for e in ext[keep]]
            facts.areas[int(c)] = [int(a) for a in area[keep]]
        cx = float((cents[:, 0] * area).sum() / area.sum()) / max(w, 1)
        cy = float((cents[:, 1] * area).sum() / area.sum()) / max(h, 1)
        facts.centroids[int(c)] = (cx, cy)
    return facts


def foreground_statistics(items: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """nnU-Net's CT statistics: percentiles 0.5 / 99.5, mean and std of the labelled foreground
    pixels (class ids other than background) over all images, from a sample of at most 1 M."""
    values = []
    for image, mask in items:
        fg = (mask != UNLABELED) & (mask != BACKGROUND)
        v = np.asarray(image)[fg] if np.asarray(image).ndim == 2 else np.asarray(image)[fg][:, 0]
        if v.size:
            values.append(v[:: max(1, v.size // 200_000)].astype(np.float64))
    if not values:
        return {}
    v = np.concatenate(values)
    lo, hi = np.percentile(v, [0.5, 99.5])
    clipped = np.clip(v, lo, hi)
    return {"p00_5": float(lo), "p99_5": float(hi), "mean": float(clipped.mean()),
            "std": float(max(clipped.std(), 1e-6))}


def fingerprint(facts: Sequence[ImageFacts], classes: Sequence[LabelClass],
                foreground: Mapping[str, float] | None = None) -> Fingerprint:
    return Fingerprint(list(facts), list(classes), dict(foreground or {}))
