"""Touching objects told apart: 3-class targets (background / interior / boundary) and back.

The boundary-aware formulation of the 3-class U-Net that the StarDist paper (Schmidt et al.,
MICCAI 2018) compares against: a semantic model learns, beside background, the *interior* of
each object and a thin *boundary* ring wherever an object meets another object or the
background. Two touching nuclei then have two interiors separated by boundary pixels; the
connected components of the interior are one seed per object, and a seeded flood over the
predicted foreground (interior + boundary) gives each boundary pixel back to its object.
It needs no new model head: any segmentation model trained on three classes does it, with the
plan, augmentation and losses of the ordinary training.

numpy and OpenCV only (no torch, no Qt), so the benchmark, the CLI and tests share it.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

log = logging.getLogger(__name__)

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
CLASS_NAMES = ("background", "interior", "boundary")
# An object whose equivalent diameter reaches this gets a 2 px boundary, smaller ones 1 px: a
# 2 px ring would eat most of a 6 px nucleus, and 1 px between two large touching cells is easy
# for a model to miss at a coarse working scale.
WIDE_BOUNDARY_DIAMETER = 16.0
MIN_AREA = 6          # px: predicted objects smaller than this are dropped (noise specks)


def _equivalent_diameters(labels: np.ndarray) -> np.ndarray:
    """Per label id, the diameter of the disc of the same area (index 0 = background)."""
    area = np.bincount(labels.reshape(-1), minlength=int(labels.max()) + 1).astype(np.float64)
    return np.sqrt(4 * area / np.pi)


def edge_pixels(labels: np.ndarray, size: int) -> np.ndarray:
    """Pixels whose size x size neighbourhood holds another label (the image border does not
    count: an object cut by the frame has no boundary there)."""
    f = labels.astype(np.float32)     # exact for ids below 2**24
    kernel = np.ones((size, size), np.uint8)
    hi = cv2.dilate(f, kernel, borderType=cv2.BORDER_REPLICATE)
    lo = cv2.erode(f, kernel, borderType=cv2.BORDER_REPLICATE)
    return (hi != f) | (lo != f)


def three_class_targets(instance_labels: np.ndarray, *,
                        wide_diameter: float = WIDE_BOUNDARY_DIAMETER) -> np.ndarray:
    """uint8 mask: 0 background, 1 interior, 2 boundary, from an instance label image.

    Boundary: the pixels of an object within 1 px (objects of equivalent diameter below
    `wide_diameter`) or 2 px (larger ones) of another object or the background.
    """
    labels = np.asarray(instance_labels)
    if labels.ndim != 2:
        raise ValueError(f"instance labels must be one 2-D image, got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"instance labels must be integers, got dtype {labels.dtype}")
    if labels.size and int(labels.min()) < 0:
        raise ValueError("instance labels must be >= 0 (0 = background)")
    ids, seq = np.unique(labels, return_inverse=True)
    seq = seq.reshape(labels.shape).astype(np.int32)
    if ids.size and ids[0] != 0:
        seq += 1                      # no background pixel at all: ids start at 1 anyway
    if int(seq.max(initial=0)) >= 1 << 24:
        raise ValueError("more than 16 million objects in one image are not supported")
    out = np.zeros(labels.shape, np.uint8)
    inside = seq > 0
    wide = (_equivalent_diameters(seq) >= wide_diameter)[seq] & inside
    boundary = np.where(wide, edge_pixels(seq, 5), edge_pixels(seq, 3)) & inside
    out[inside] = INTERIOR
    out[boundary] = BOUNDARY
    return out


def flood(markers: np.ndarray, allowed: np.ndarray, max_steps: int = 1000) -> np.ndarray:
    """Grow labelled seeds one pixel per step into `allowed` pixels (a geodesic Voronoi split
    of each foreground component between its seeds); where two fronts meet, the larger id wins
    that pixel, a 1 px arbitrariness on lines that are 1-2 px wide anyway."""
    out = markers.astype(np.float32)
    kernel = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    todo = allowed & (out == 0)
    for _ in range(max_steps):
        if not todo.any():
            break
        grown = cv2.dilate(out, kernel)
        take = todo & (grown > 0)
        if not take.any():
            break
        out[take] = grown[take]
        todo &= ~take
    return out.astype(np.int32)


def instances_from_probabilities(probs: np.ndarray, *, interior_threshold: float = 0.5,
                                 foreground_threshold: float = 0.5,
                                 min_area: int = MIN_AREA, min_seed_area: int = 2) -> np.ndarray:
    """int32 instance labels (0 = background, 1..n) from a 3-class prediction.

    `probs`: (3, h, w) class probabilities (background, interior, boundary) or an (h, w) map
    of class ids (the argmax). Seeds: 4-connected components of the interior (probability >=
    `interior_threshold`) of at least `min_seed_area` px. Foreground: interior + boundary
    probability >= `foreground_threshold`. Each seed grows over its foreground component; a
    foreground component without a seed (an object too small to have an interior) becomes one
    object by itself; objects below `min_area` px are removed and the rest numbered 1..n.
    """
    a = np.asarray(probs)
    if a.ndim == 3:
        if a.shape[0] < 3:
            raise ValueError(f"probabilities need 3 channels (background, interior, boundary), "
                             f"got shape {a.shape}")
        p = a.astype(np.float32, copy=False)
        interior = p[INTERIOR] >= interior_threshold
        foreground = (p[INTERIOR] + p[BOUNDARY]) >= foreground_threshold
    elif a.ndim == 2:
        interior = a == INTERIOR
        foreground = (a == INTERIOR) | (a == BOUNDARY)
    else:
        raise ValueError(f"expected (3, h, w) probabilities or an (h, w) class map, got shape "
                         f"{a.shape}")
    interior &= foreground
    n, seeds, stats, _ = cv2.connectedComponentsWithStats(interior.astype(np.uint8),
                                                          connectivity=4, ltype=cv2.CV_32S)
    small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < min_seed_area)
    keep = np.ones(n, bool)
    keep[0] = False
    keep[small[small > 0]] = False
    seeds = np.where(keep[seeds], seeds, 0)
    grown = flood(seeds, foreground)
    # foreground left without a seed: an object of its own (its component id after the seeds)
    rest = foreground & (grown == 0)
    if rest.any():
        _, extra = cv2.connectedComponents(rest.astype(np.uint8), connectivity=8,
                                           ltype=cv2.CV_32S)
        grown = np.where(rest, extra + n, grown)
    area = np.bincount(grown.reshape(-1))
    alive = area >= max(int(min_area), 1)
    alive[0] = False
    remap = np.zeros(area.size, np.int32)
    remap[alive] = np.arange(1, int(alive.sum()) + 1, dtype=np.int32)
    return remap[grown]
