"""Object classes in training and prediction: one extra "object boundary" output.

A project whose classes include object classes (nucleus, cell: `LabelClass.objects`) trains a
model with one more output channel than it has class ids: the *boundary* of every object, a
1-2 px ring wherever an object meets anything else, at least 2 px where it meets another object
(`segstudio.ml.instances`, the boundary-aware formulation of the 3-class U-Net in Schmidt et
al., MICCAI 2018). The ring is cut out of the object's class in the training targets, so two
touching nuclei become two interiors with boundary pixels between them; images labelled
without object ids still teach the classes (their connected regions stand in for objects,
so their rings lie only on the outside).

Reading a prediction out (`read_out`) undoes it: the connected interiors of each object class
are the seeds, each seed floods the boundary pixels next to it (a geodesic split between
touching seeds), the flooded boundary pixels take their object's class and the rest take the
best class that is not the boundary. The result is a class mask in the project's ids, as any
other model gives, plus an object id per pixel (uint32, 0 = none).

numpy and OpenCV only: training data, the predictor, the benchmark and tests share it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from segstudio.core.classes import UNLABELED
from segstudio.ml.instances import MIN_AREA, WIDE_BOUNDARY_DIAMETER, edge_pixels, flood

BOUNDARY_NAME = "object boundary"
# where two objects touch, each object's ring is at least this wide (px), also for objects
# whose outline is 1 px: merged neighbours were the commonest error on dsb2018_nuclei
# (docs/objects.md)
CONTACT_RING = 2
# an object's seed is where its class beats the boundary by at least this much probability:
# less sure interior pixels join the object they are flooded from (a faint bridge of interior
# between two touching nuclei no longer makes them one). 0.6 to 0.95 tried on the train split
# of dsb2018_nuclei (docs/objects.md): 0.9 split the most merged pairs without losing objects
SEED_MARGIN = 0.9


@dataclass(frozen=True)
class ObjectHead:
    """Which output channel is the boundary, and which class ids are object classes."""

    boundary: int                  # output channel of the boundary = the project's max id + 1
    classes: tuple[int, ...]       # object class ids
    seed_margin: float = SEED_MARGIN   # how much an object class must beat the boundary to seed

    def __post_init__(self) -> None:
        if not self.classes:
            raise ValueError("an object head needs at least one object class")
        if not 0 < self.boundary < UNLABELED:
            raise ValueError(f"boundary channel {self.boundary} is outside 1..254")
        if any(c >= self.boundary or c < 0 for c in self.classes):
            raise ValueError(f"object classes {list(self.classes)} must lie below the boundary "
                             f"channel {self.boundary}")
        if not 0.0 <= self.seed_margin < 1.0:
            raise ValueError(f"seed_margin is a probability difference in 0..1, got "
                             f"{self.seed_margin}")

    @property
    def num_outputs(self) -> int:
        return self.boundary + 1

    def to_dict(self) -> dict[str, Any]:
        return {"boundary": int(self.boundary), "classes": [int(c) for c in self.classes],
                "seed_margin": float(self.seed_margin)}

    @classmethod
    def from_dict(cls, raw: Any) -> ObjectHead | None:
        """None for a checkpoint without objects; ValueError for a malformed entry."""
        if raw is None:
            return None
        if not isinstance(raw, dict) or "boundary" not in raw or "classes" not in raw:
            raise ValueError(f"'objects' must be {{'boundary': id, 'classes': [ids]}}, got {raw!r}")
        # checkpoints written before the seed margin existed read with today's default
        return cls(int(raw["boundary"]), tuple(sorted(int(c) for c in raw["classes"])),
                   float(raw.get("seed_margin", SEED_MARGIN)))


def head_for(classes: Iterable[Any]) -> ObjectHead | None:
    """The head a project's classes call for (None when no class is an object class)."""
    classes = list(classes)
    ids = sorted(int(c.id) for c in classes if getattr(c, "objects", False))
    if not ids:
        return None
    return ObjectHead(max(int(c.id) for c in classes) + 1, tuple(ids))


def objects_or_regions(mask: np.ndarray, objects: np.ndarray | None, head: ObjectHead
                       ) -> np.ndarray:
    """int32 object ids of the object-class pixels: the given ids where an object-class pixel
    has one, the connected regions of its class where it has none (unique across classes)."""
    mask = np.asarray(mask)
    out = np.zeros(mask.shape, np.int32)
    next_id = 1
    if objects is not None:
        objects = np.asarray(objects)
        if objects.shape != mask.shape:
            raise ValueError(f"object ids {objects.shape} and mask {mask.shape} differ in size")
        of_objects = np.isin(mask, head.classes) & (objects > 0)
        if of_objects.any():
            ids, inverse = np.unique(objects[of_objects], return_inverse=True)
            out[of_objects] = inverse.astype(np.int32) + 1
            next_id = int(ids.size) + 1
    for c in head.classes:
        loose = (mask == c) & (out == 0)
        if not loose.any():
            continue
        n, regions = cv2.connectedComponents(loose.astype(np.uint8), connectivity=8,
                                             ltype=cv2.CV_32S)
        out[loose] = regions[loose] + (next_id - 1)
        next_id += n - 1
    return out


def training_target(mask: np.ndarray, objects: np.ndarray | None, head: ObjectHead, *,
                    wide_diameter: float = WIDE_BOUNDARY_DIAMETER,
                    contact_ring: int = CONTACT_RING) -> np.ndarray:
    """The mask a model with an object head learns: object rings set to the boundary id.

    The ring of an object: its pixels within 1 px (objects narrower than `wide_diameter` as
    an equal-area disc) or 2 px (wider ones) of a pixel that is not the same object, and
    within `contact_ring` px of a pixel of another object. Pixels next to
    unlabeled ones count too: an object's outline is its outline whatever lies beyond it.
    """
    mask = np.asarray(mask, np.uint8)
    ids = objects_or_regions(mask, objects, head)
    if not ids.any():
        return mask.copy()
    inside = ids > 0
    area = np.bincount(ids.reshape(-1)).astype(np.float64)
    wide = (np.sqrt(4 * area / np.pi) >= wide_diameter)[ids] & inside
    ring = np.where(wide, edge_pixels(ids, 5), edge_pixels(ids, 3)) & inside
    if contact_ring > 0:
        # where an object meets another object (not background) the ring is wider on both
        # sides: the gap between touching objects is what the read-out splits them along
        k = np.ones((2 * contact_ring + 1, 2 * contact_ring + 1), np.uint8)
        hi = cv2.dilate(np.where(inside, ids, -1).astype(np.float32), k,
                        borderType=cv2.BORDER_REPLICATE)
        far = float(1 << 24)
        lo = cv2.erode(np.where(inside, ids, far).astype(np.float32), k,
                       borderType=cv2.BORDER_REPLICATE)
        ring |= inside & (((hi != ids) & (hi > 0)) | ((lo != ids) & (lo < far)))
    out = mask.copy()
    out[ring] = head.boundary
    return out


def resize_objects(objects: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Object ids at (height, width), nearest neighbour (ids are names, not amounts)."""
    a = np.asarray(objects)
    if a.shape == tuple(shape):
        return a.astype(np.int32, copy=False)
    if a.size and int(a.max()) >= 1 << 31:
        raise ValueError("object ids above 2**31 cannot be resampled")
    return cv2.resize(a.astype(np.int32), (int(shape[1]), int(shape[0])),
                      interpolation=cv2.INTER_NEAREST)


def read_out(labels: np.ndarray, best_other: np.ndarray, head: ObjectHead, *,
             sure: np.ndarray | None = None, min_area: int = MIN_AREA, min_seed_area: int = 2
             ) -> tuple[np.ndarray, np.ndarray]:
    """(class mask in the project's ids, uint32 object ids) from a prediction with a head.

    `labels`: the argmax over every output (boundary included); `best_other`: the argmax over
    the outputs without the boundary, read where `labels` is the boundary. `sure`: where the
    winning class beats the boundary by the head's `seed_margin` (None: everywhere); an object class's
    pixels that are not sure seed nothing and are read like the boundary (flooded from the
    seeds, else their class). Objects smaller than `min_area` px lose their id (their pixels
    keep the class).
    """
    labels = np.asarray(labels)
    if labels.shape != np.asarray(best_other).shape:
        raise ValueError(f"labels {labels.shape} and best_other {np.shape(best_other)} differ")
    if sure is not None:
        if np.shape(sure) != labels.shape:
            raise ValueError(f"labels {labels.shape} and sure {np.shape(sure)} differ")
        unsure = np.isin(labels, head.classes) & ~np.asarray(sure, bool)
        if unsure.any():
            best_other = np.where(unsure, labels, best_other)
            labels = np.where(unsure, np.uint8(head.boundary), labels).astype(labels.dtype)
    seeds = np.zeros(labels.shape, np.int32)
    seed_class = [0]
    for c in head.classes:
        n, comp, stats, _ = cv2.connectedComponentsWithStats((labels == c).astype(np.uint8),
                                                             connectivity=4, ltype=cv2.CV_32S)
        keep = stats[:, cv2.CC_STAT_AREA] >= min_seed_area
        keep[0] = False
        kept = int(keep.sum())
        if not kept:
            continue
        renumber = np.zeros(n, np.int32)
        renumber[keep] = np.arange(len(seed_class), len(seed_class) + kept, dtype=np.int32)
        seeds = np.where(keep[comp], renumber[comp], seeds)
        seed_class += [c] * kept
    boundary = labels == head.boundary
    grown = flood(seeds, boundary | (seeds > 0)) if len(seed_class) > 1 else seeds
    out = labels.astype(np.uint8, copy=True)
    if boundary.any():
        best_other = np.asarray(best_other, np.uint8)
        reached = boundary & (grown > 0)
        rest = boundary & (grown == 0)
        out[rest] = best_other[rest]
        # boundary with no interior next to it whose best other class is an object class: an
        # object too small to have an interior, one object per connected piece
        for c in head.classes:
            alone = rest & (best_other == c)
            if not alone.any():
                continue
            n, pieces = cv2.connectedComponents(alone.astype(np.uint8), connectivity=8,
                                                ltype=cv2.CV_32S)
            grown = np.where(alone, pieces + (len(seed_class) - 1), grown)
            seed_class += [c] * (n - 1)
        classes_of = np.asarray(seed_class, np.uint8)
        out[reached] = classes_of[grown[reached]]
    area = np.bincount(grown.reshape(-1), minlength=len(seed_class))
    alive = area >= max(int(min_area), 1)
    alive[0] = False
    remap = np.zeros(area.size, np.uint32)
    remap[alive] = np.arange(1, int(alive.sum()) + 1, dtype=np.uint32)
    return out, remap[grown]


def project_objects(project: Any, entry: Any, shape: tuple[int, int], head: ObjectHead | None
                    ) -> np.ndarray | None:
    """The image's stored object ids (None when the project keeps none for it)."""
    if head is None:
        return None
    masks = getattr(project, "masks", None)
    has = getattr(masks, "has_objects", None)
    if has is None or not has(entry.id):
        return None
    return np.asarray(project.load_objects(entry, shape))


def describe(head: ObjectHead | None, classes: Sequence[Any]) -> str:
    """A plan line: which classes are trained as objects."""
    if head is None:
        return ""
    names = {int(c.id): c.name for c in classes}
    shown = ", ".join(f"'{names.get(c, c)}'" for c in head.classes)
    return (f"objects: {shown} learnt with an object-boundary output (channel {head.boundary}) "
            f"so that touching objects come apart")



def write_object_ids(folder: Any, stem: str, objects: np.ndarray) -> str:
    """Save predicted object ids beside a mask as the project stores its own
    (`segstudio.io.instance_files`: 16-bit PNG while the ids fit, else uint32 TIFF).
    Returns the file name."""
    from pathlib import Path

    from segstudio.io.atomic import atomic_write_bytes
    from segstudio.io.instance_files import encode_objects

    suffix, data = encode_objects(np.asarray(objects))
    name = f"{stem}{suffix}"
    atomic_write_bytes(Path(folder) / name, data)
    return name
