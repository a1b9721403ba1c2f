"""Display mapping (contrast, window/level): data values -> 8-bit grey/RGB for the screen only.

The mapping never touches the data: models and metrics see the original values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Common CT windows as (centre, width) in Hounsfield units.
CT_PRESETS: dict[str, tuple[float, float]] = {
    "CT lung": (-600.0, 1500.0),
    "CT soft tissue": (40.0, 400.0),
    "CT bone": (400.0, 1800.0),
    "CT brain": (40.0, 80.0),
}


@dataclass(frozen=True)
class DisplayRange:
    """Values <= low map to black, >= high to white, linear between."""

    low: float
    high: float

    @classmethod
    def from_window(cls, centre: float, width: float) -> DisplayRange:
        width = max(float(width), 1e-6)
        return cls(centre - width / 2.0, centre + width / 2.0)

    @property
    def centre(self) -> float:
        return (self.low + self.high) / 2.0

    @property
    def width(self) -> float:
        return self.high - self.low


def full_range(dtype: np.dtype) -> DisplayRange:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return DisplayRange(float(info.min), float(info.max))
    return DisplayRange(0.0, 1.0)


def sample_pixels(data: np.ndarray, max_samples: int = 1 << 18) -> np.ndarray:
    """A strided subsample of at most ~max_samples pixels (cheap on memory-mapped images)."""
    h, w = data.shape[:2]
    step = max(1, int(np.sqrt(h * w / max_samples)))
    return np.asarray(data[::step, ::step])


def auto_range(data: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> DisplayRange:
    """Percentile contrast stretch over a subsample of the image."""
    sample = sample_pixels(data)
    if sample.ndim == 3:
        sample = sample[..., :3]
    sample = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample.ravel()
    if sample.size == 0:
        return DisplayRange(0.0, 1.0)
    lo, hi = np.percentile(sample, [low_pct, high_pct])
    if hi <= lo:
        hi = lo + 1.0
    return DisplayRange(float(lo), float(hi))


def default_range(data: np.ndarray) -> DisplayRange:
    """8-bit images as they are; anything else stretched by percentiles."""
    if data.dtype == np.uint8:
        return DisplayRange(0.0, 255.0)
    return auto_range(data)


def to_display(data: np.ndarray, rng: DisplayRange) -> np.ndarray:
    """Map a (h, w) or (h, w, c) region to uint8 (h, w) grey or (h, w, 3) RGB."""
    if data.ndim == 3:
        if data.shape[2] == 1:
            data = data[..., 0]
        elif data.shape[2] == 2:
            data = data[..., 0]      # grey + alpha
        else:
            data = data[..., :3]     # drop alpha; the overlay draws on an opaque image
    if data.dtype == np.uint8 and rng.low == 0.0 and rng.high == 255.0:
        return np.ascontiguousarray(data)
    if data.dtype in (np.uint8, np.uint16):
        return lut_for(data.dtype, rng)[data]
    scale = 255.0 / max(rng.high - rng.low, 1e-12)
    out = (data.astype(np.float32) - np.float32(rng.low)) * np.float32(scale)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


_LUT_CACHE: dict[tuple[str, float, float], np.ndarray] = {}


def lut_for(dtype: np.dtype, rng: DisplayRange) -> np.ndarray:
    """A lookup table for 8/16-bit data: one indexing pass instead of float arithmetic."""
    key = (np.dtype(dtype).str, rng.low, rng.high)
    lut = _LUT_CACHE.get(key)
    if lut is None:
        n = 256 if np.dtype(dtype) == np.uint8 else 65536
        values = np.arange(n, dtype=np.float32)
        lut = np.clip((values - rng.low) * (255.0 / max(rng.high - rng.low, 1e-12)), 0, 255)
        lut = lut.astype(np.uint8)
        if len(_LUT_CACHE) > 16:
            _LUT_CACHE.clear()
        _LUT_CACHE[key] = lut
    return lut
