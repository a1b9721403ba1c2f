"""The one normalisation: how an image's pixels become a model's input, in training and after.

`Normalisation` is what a run stores (`to_dict` / `from_dict` in its checkpoint and card). Its
per-image modes ("percentile", "meanstd") take their statistics from the whole image, so
`for_image(image)` first turns it into a `PixelNormalisation`: a per-pixel `(x - shift) *
factor` that the tiled predictor may apply band by band. Training snapshots go through the very
same `for_image(...)(...)` call, so the model sees bit-identical inputs whether an image is
validated during training or measured later (`segstudio.ml.predict`). A `Normalisation` also
carries the run's working scale (`segstudio.ml.resample.WorkingScale`): the predictor asks
`working_shape(h, w)` and resamples before the model sees the pixels. numpy only, no torch.

Modes: "percentile" and "meanstd" per image (microscopy, photographs, radiographs); "clip"
for CT (clip to fixed values, then a fixed z-score: nnU-Net's rule, with the clip values and
statistics taken from the foreground of the training images); "fixed" for a given mean/std.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from segstudio.ml.resample import NATIVE, WorkingScale

NORMALISATIONS = ("percentile", "meanstd", "fixed", "clip")
PER_IMAGE = ("percentile", "meanstd")
_STATS_PIXELS = 1_000_000      # statistics of a strided sample of at most ~1 Mpx


class Normaliser(Protocol):
    """What the predictor takes: `for_image(image)` gives the per-pixel function for its bands."""

    def for_image(self, image: np.ndarray) -> PixelNormalisation: ...

    def working_shape(self, height: int, width: int) -> tuple[int, int]: ...


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
    """Per-pixel `(clip(x) - shift) * factor` (per channel) after adapting the channel count.

    Works on pixels as they come: the image is already at its working scale.
    """

    shift: tuple[float, ...] = (0.0,)
    factor: tuple[float, ...] = (1.0,)
    in_channels: int | None = None
    clip: tuple[float, float] | None = None

    def for_image(self, image: np.ndarray) -> PixelNormalisation:
        return self

    def working_shape(self, height: int, width: int) -> tuple[int, int]:
        return height, width

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
        if self.clip is not None:
            np.clip(out, self.clip[0] - shift, self.clip[1] - shift, out=out)
        out *= factor
        return np.moveaxis(out, -1, 0)


# The input is already normalised (a training snapshot): hand it on unchanged, same arithmetic.
PREPARED = PixelNormalisation()


@dataclass(frozen=True)
class Normalisation:
    """How a run turns images into model input; stored in its checkpoint so prediction matches.

    "percentile": (x - p_low) / (p_high - p_low) of each image; "meanstd": each image's z-score;
    "fixed": (x * scale - mean) / std with scale None meaning "by dtype" (1/255 for uint8,
    1/65535 for uint16, 1 otherwise); "clip": clip to (clip_low, clip_high), then (x - mean) /
    std. `working` is the scale the model sees images at. With in_channels set, grey images are repeated to 3
    channels, alpha is dropped and colour averaged to grey, so any readable image fits the model.
    """

    mode: str = "fixed"
    low: float = 1.0
    high: float = 99.8
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    scale: float | None = None
    in_channels: int | None = None
    clip_low: float = -1024.0
    clip_high: float = 3071.0
    working: WorkingScale = NATIVE

    def __post_init__(self) -> None:
        if self.mode not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {self.mode!r}; known: {list(NORMALISATIONS)}")
        if self.mode == "clip" and not self.clip_high > self.clip_low:
            raise ValueError(f"clip normalisation needs clip_high > clip_low, got "
                             f"{self.clip_low}, {self.clip_high}")

    def to_dict(self) -> dict[str, Any]:
        """What a checkpoint stores (in_channels lives beside it in the config)."""
        if self.mode in PER_IMAGE:
            d: dict[str, Any] = {"mode": self.mode, "low": self.low, "high": self.high}
        elif self.mode == "clip":
            d = {"mode": "clip", "clip": [self.clip_low, self.clip_high],
                 "mean": list(self.mean), "std": list(self.std)}
        else:
            d = {"mode": "fixed", "mean": list(self.mean), "std": list(self.std),
                 "scale": self.scale}
        if not self.working.native:
            d["working"] = self.working.to_dict()
        return d

    def working_shape(self, height: int, width: int) -> tuple[int, int]:
        """The size the model sees an image of this size at."""
        return self.working.shape_for(height, width)

    def describe(self) -> str:
        if self.mode == "percentile":
            return f"per image, percentiles {self.low:g}-{self.high:g} to 0-1"
        if self.mode == "meanstd":
            return "per image, zero mean and unit variance"
        if self.mode == "clip":
            return (f"clip to {self.clip_low:.0f}..{self.clip_high:.0f}, then (x - "
                    f"{self.mean[0]:.1f}) / {self.std[0]:.1f} (CT rule)")
        return f"fixed: (x - {list(self.mean)}) / {list(self.std)}"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, in_channels: int | None = None
                  ) -> Normalisation:
        """From a checkpoint: the trainer's {"mode", "low", "high"} or {"mean", "std", "scale"}."""
        d = dict(d or {})
        known = {"mode", "low", "high", "mean", "std", "scale", "in_channels", "clip", "working"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"normalisation: unknown key(s) {unknown}; known: {sorted(known)}")
        mean, std = d.get("mean", 0.0), d.get("std", 1.0)
        channels = d.get("in_channels", in_channels)
        clip = d.get("clip", (-1024.0, 3071.0))
        if not isinstance(clip, Sequence) or len(clip) != 2:
            raise ValueError(f"normalisation: 'clip' is two numbers, got {clip!r}")
        return cls(str(d.get("mode", "fixed")), float(d.get("low", 1.0)),
                   float(d.get("high", 99.8)),
                   tuple(float(v) for v in (mean if isinstance(mean, Sequence) else [mean])),
                   tuple(float(v) for v in (std if isinstance(std, Sequence) else [std])),
                   None if d.get("scale") is None else float(d["scale"]),
                   None if channels is None else int(channels),
                   float(clip[0]), float(clip[1]), WorkingScale.from_dict(d.get("working")))

    def for_image(self, image: np.ndarray) -> PixelNormalisation:
        """The per-pixel function for this image (statistics of the whole image, not a tile)."""
        if self.mode == "clip":
            std = np.asarray(self.std, np.float64)
            return PixelNormalisation(tuple(float(v) for v in np.atleast_1d(self.mean)),
                                      tuple(float(v) for v in np.atleast_1d(1.0 / std)),
                                      self.in_channels, (self.clip_low, self.clip_high))
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
    """(h, w, c) float32 model input of one whole image at the run's working scale: what
    training snapshots hold. Statistics come from the image as stored, pixels from the
    resampled image: the predictor does the same."""
    from segstudio.ml.resample import resize_image

    pixels = norm.for_image(data)
    small = resize_image(data, norm.working_shape(*data.shape[:2]))
    return np.moveaxis(pixels(small), 0, -1)
