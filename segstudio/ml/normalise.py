"""The one normalisation: how an image's pixels become a model's input, in training and after.

`Normalisation` is what a run stores (`to_dict` / `from_dict` in its checkpoint and card). Its
per-image modes ("percentile", "meanstd") take their statistics from the whole image, so
`for_image(image)` first turns it into a `PixelNormalisation`: a per-pixel `(x - shift) *
factor` that the tiled predictor may apply band by band. Training snapshots go through the very
same `for_image(...)(...)` call, so the model sees bit-identical inputs whether an image is
validated during training or measured later (`segstudio.ml.predict`). numpy only, no torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

NORMALISATIONS = ("percentile", "meanstd", "fixed")
PER_IMAGE = ("percentile", "meanstd")
_STATS_PIXELS = 1_000_000      # statistics of a strided sample of at most ~1 Mpx


class Normaliser(Protocol):
    """What the predictor takes: `for_image(image)` gives the per-pixel function for its bands."""

    def for_image(self, image: np.ndarray) -> PixelNormalisation: ...


def effective_channels(data: np.ndarray) -> int:
    """1 for grey images (also RGB(A) with R = G = B), 3 for colour; alpha never counts."""
    if data.ndim == 2 or data.shape[2] in (1, 2):
        return 1
    rgb = data[::7, ::7, :3]
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
        return 1
    return 3


def to_channels(data: np.ndarray, n: int | None) -> np.ndarray:
    """(h, w, n) float32 from an (h, w) or (h, w, c) image; alpha dropped, grey <-> RGB converted.

    n None keeps the image's channels. May return `data` itself when it already fits: never
    write into the result.
    """
    a = np.asarray(data)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ValueError(f"expected an (h, w) or (h, w, c) image, got shape {a.shape}")
    c = a.shape[2]
    if n is not None and n != c and c in (2, 4):      # grey+alpha, RGBA: drop alpha
        a = a[:, :, : c - 1]
        c -= 1
    a = a.astype(np.float32, copy=False)
    if n is None or c == n:
        return np.ascontiguousarray(a)
    if n == 1:
        return np.ascontiguousarray(a.mean(axis=2, keepdims=True, dtype=np.float32))
    if c == 1:
        return np.ascontiguousarray(np.repeat(a, n, axis=2))
    raise ValueError(f"the model takes {n} channel(s); this image has {c}")


def _dtype_scale(dtype: np.dtype) -> float:
    return {np.dtype(np.uint8): 1 / 255, np.dtype(np.uint16): 1 / 65535}.get(np.dtype(dtype), 1.0)


@dataclass(frozen=True)
class PixelNormalisation:
    """Per-pixel `(x - shift) * factor` (per channel) after adapting the channel count."""

    shift: tuple[float, ...] = (0.0,)
    factor: tuple[float, ...] = (1.0,)
    in_channels: int | None = None

    def for_image(self, image: np.ndarray) -> PixelNormalisation:
        return self

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """(c, h, w) float32 of an (h, w) / (h, w, c) block: a view of (h, w, c) memory."""
        x = to_channels(block, self.in_channels)
        c = x.shape[2]
        shift = np.asarray(self.shift, np.float32)
        factor = np.asarray(self.factor, np.float32)
        if shift.size not in (1, c) or factor.size not in (1, c):
            raise ValueError(f"normalisation has {shift.size} mean(s) and {factor.size} std(s) "
                             f"for an image with {c} channel(s)")
        out = np.subtract(x, shift, dtype=np.float32)     # a new array: `x` may be the input
        out *= factor
        return np.moveaxis(out, -1, 0)


# The input is already normalised (a training snapshot): hand it on unchanged, same arithmetic.
PREPARED = PixelNormalisation()


@dataclass(frozen=True)
class Normalisation:
    """How a run turns images into model input; stored in its checkpoint so prediction matches.

    "percentile": (x - p_low) / (p_high - p_low) of each image; "meanstd": each image's z-score;
    "fixed": (x * scale - mean) / std with scale None meaning "by dtype" (1/255 for uint8,
    1/65535 for uint16, 1 otherwise). With in_channels set, grey images are repeated to 3
    channels, alpha is dropped and colour averaged to grey, so any readable image fits the model.
    """

    mode: str = "fixed"
    low: float = 1.0
    high: float = 99.8
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    scale: float | None = None
    in_channels: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {self.mode!r}; known: {list(NORMALISATIONS)}")

    def to_dict(self) -> dict[str, Any]:
        """What a checkpoint stores (in_channels lives beside it in the config)."""
        if self.mode in PER_IMAGE:
            return {"mode": self.mode, "low": self.low, "high": self.high}
        return {"mode": "fixed", "mean": list(self.mean), "std": list(self.std),
                "scale": self.scale}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, in_channels: int | None = None
                  ) -> Normalisation:
        """From a checkpoint: the trainer's {"mode", "low", "high"} or {"mean", "std", "scale"}."""
        d = dict(d or {})
        known = {"mode", "low", "high", "mean", "std", "scale", "in_channels"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"normalisation: unknown key(s) {unknown}; known: {sorted(known)}")
        mean, std = d.get("mean", 0.0), d.get("std", 1.0)
        channels = d.get("in_channels", in_channels)
        return cls(str(d.get("mode", "fixed")), float(d.get("low", 1.0)),
                   float(d.get("high", 99.8)),
                   tuple(float(v) for v in (mean if isinstance(mean, Sequence) else [mean])),
                   tuple(float(v) for v in (std if isinstance(std, Sequence) else [std])),
                   None if d.get("scale") is None else float(d["scale"]),
                   None if channels is None else int(channels))

    def for_image(self, image: np.ndarray) -> PixelNormalisation:
        """The per-pixel function for this image (statistics of the whole image, not a tile)."""
        if self.mode == "fixed":
            a = np.asarray(image)
            scale = self.scale if self.scale is not None else _dtype_scale(a.dtype)
            std = np.asarray(self.std, np.float64)
            mean = np.asarray(self.mean, np.float64)
            return PixelNormalisation(tuple(float(v) for v in np.atleast_1d(mean / scale)),
                                      tuple(float(v) for v in np.atleast_1d(scale / std)),
                                      self.in_channels)
        h, w = image.shape[:2]
        step = max(1, int(np.sqrt(h * w / _STATS_PIXELS)))
        sample = to_channels(np.asarray(image[::step, ::step]), self.in_channels)
        if self.mode == "percentile":
            lo, hi = np.percentile(sample, [self.low, self.high])
            return PixelNormalisation((float(lo),), (1.0 / max(float(hi - lo), 1e-6),),
                                      self.in_channels)
        mean, std = float(sample.mean()), float(sample.std())
        return PixelNormalisation((mean,), (1.0 / max(std, 1e-6),), self.in_channels)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """(c, h, w) float32 of a whole image (statistics from it)."""
        return self.for_image(image)(image)


def normalise_image(data: np.ndarray, norm: Normalisation) -> np.ndarray:
    """(h, w, c) float32 model input of one whole image: what training snapshots hold."""
    return np.moveaxis(norm.for_image(data)(data), 0, -1)
