"""The prediction layer: a model's labels, its uncertainty, or where it disagrees with the mask.

Drawn under the user's mask with its own opacity; like the mask overlay it is computed only for
the screen pixels that show, from the same screen-to-image index arrays.
"""

from __future__ import annotations

import numpy as np

from segstudio.core.classes import UNLABELED, LabelClass, color_lut

VIEW_MODES = ("mask", "prediction", "both", "uncertainty", "disagreement")
_MAGENTA = np.array([204, 121, 167], np.float32)      # Okabe-Ito reddish purple
_VERMILLION = (0, 94, 213, 255)                         # BGRA of #D55E00


class PredictionLayer:
    def __init__(self) -> None:
        self.labels: np.ndarray | None = None          # uint8 (h, w) class ids
        self.uncertainty: np.ndarray | None = None     # (h, w) in 0..1 (float16) or 0..255 (uint8)
        self.mode = "both"
        self.opacity = 0.45
        self._lut = np.zeros((256, 4), np.uint8)

    @property
    def active(self) -> bool:
        return self.labels is not None and self.mode != "mask"

    @property
    def shows_mask(self) -> bool:
        return self.mode in ("mask", "both", "disagreement") or self.labels is None

    def set_classes(self, classes: list[LabelClass]) -> None:
        lut = color_lut(classes, self.opacity)
        self._lut = np.ascontiguousarray(lut[:, [2, 1, 0, 3]])

    def render(self, gather, mask: np.ndarray, rs: slice, cs: slice) -> np.ndarray | None:
        """BGRA premultiplied pixels for a screen region, or None when the layer is off."""
        if not self.active:
            return None
        if self.mode in ("prediction", "both"):
            return self._lut[gather(self.labels, rs, cs)]
        if self.mode == "uncertainty":
            if self.uncertainty is None:
                return None
            u = gather(self.uncertainty, rs, cs).astype(np.float32)
            if self.uncertainty.dtype == np.uint8:
                u /= 255.0
            a = np.clip(u, 0, 1) * (0.15 + 0.85 * self.opacity)
            out = np.empty(u.shape + (4,), np.uint8)
            out[..., 0] = _MAGENTA[2] * a
            out[..., 1] = _MAGENTA[1] * a
            out[..., 2] = _MAGENTA[0] * a
            out[..., 3] = 255 * a
            return out
        m = gather(mask, rs, cs)
        p = gather(self.labels, rs, cs)
        out = np.zeros(m.shape + (4,), np.uint8)
        out[(m != UNLABELED) & (m != p)] = _VERMILLION
        return out
