""""Label this next": rank images by how unsure the model is about them.

numpy only. Scores come from the uncertainty maps a prediction returns (normalised entropy
and top-1 minus top-2 margin, both in 0..1). Where part of an image is already labelled, only
its unlabeled pixels count: labelling where the user has already painted teaches nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

METHODS = ("entropy", "margin")


@dataclass(frozen=True)
class UncertaintyScore:
    image_id: str
    mean_entropy: float          # 0 = certain everywhere, 1 = uniform everywhere
    mean_margin: float           # 1 = certain everywhere, 0 = two classes tied everywhere
    pixels: int                  # pixels the means are over

    def value(self, method: str = "entropy") -> float:
        """Higher = more uncertain, whichever the method."""
        if method == "entropy":
            return self.mean_entropy
        if method == "margin":
            return 1.0 - self.mean_margin
        raise ValueError(f"unknown ranking method {method!r}; known: {list(METHODS)}")


def _mean(a: np.ndarray, where: np.ndarray | None) -> tuple[float, int]:
    # float64 sums in row chunks: a float16 map of 256 Mpx must not be upcast whole
    total, count = 0.0, 0
    step = max(1, (1 << 22) // max(1, a.shape[1] if a.ndim > 1 else 1))
    for y in range(0, a.shape[0], step):
        part = a[y:y + step]
        if where is not None:
            part = part[where[y:y + step]]
        total += float(part.sum(dtype=np.float64))
        count += int(part.size)
    return (total / count if count else math.nan), count


def uncertainty_score(image_id: str, entropy: np.ndarray, margin: np.ndarray,
                      unlabeled: np.ndarray | None = None) -> UncertaintyScore:
    """Mean entropy and margin, over the unlabeled pixels only when a mask is given."""
    if entropy.shape != margin.shape:
        raise ValueError(f"entropy and margin maps differ in shape: {entropy.shape} vs "
                         f"{margin.shape}")
    if unlabeled is not None and unlabeled.shape != entropy.shape:
        raise ValueError(f"unlabeled mask {unlabeled.shape} does not fit the map "
                         f"{entropy.shape}")
    if unlabeled is not None and unlabeled.all():
        unlabeled = None
    e, n = _mean(entropy, unlabeled)
    m, _ = _mean(margin, unlabeled)
    return UncertaintyScore(image_id, e, m, n)


def rank_for_labelling(scores: Iterable[UncertaintyScore], method: str = "entropy"
                       ) -> list[UncertaintyScore]:
    """Most uncertain first; images with nothing left to label (NaN) are dropped."""
    if method not in METHODS:
        raise ValueError(f"unknown ranking method {method!r}; known: {list(METHODS)}")
    usable = [s for s in scores if s.pixels > 0 and math.isfinite(s.value(method))]
    return sorted(usable, key=lambda s: (-s.value(method), s.image_id))
