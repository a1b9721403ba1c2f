"""DisplayControl: how the open image's pixels map to grey levels, and what is under the pointer.

It chooses each image's display range (a remembered preset, else one per image: natural colour
for photos, auto contrast for grey, 16-bit and float data, the header's window where there is
one), answers the Display panel, and fills the status bar's position, value, class and zoom
labels. It knows the canvas, the panel and two getters, not the window.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtWidgets import QLabel

from segstudio.core.classes import UNLABELED, LabelClass
from segstudio.core.display import CT_PRESETS, DisplayRange, auto_range, full_range, sample_pixels
from segstudio.core.document import ImageDocument
from segstudio.io.images import LoadedImage
from segstudio.ui.canvas import MaskCanvas, zoom_percent
from segstudio.ui.panels.display_panel import AUTO, FULL, HEADER, MANUAL, DisplayPanel


def default_preset(loaded: LoadedImage) -> str:
    """Colour photos as they are; grey, 16-bit and float data stretched to be visible."""
    data = loaded.data
    if loaded.info.window:
        return HEADER
    if data.dtype == np.uint8 and data.ndim == 3 and data.shape[2] >= 3 and not _is_grey(data):
        return FULL
    return AUTO


def _is_grey(data: np.ndarray) -> bool:
    s = sample_pixels(data, 4096)
    return bool(np.array_equal(s[..., 0], s[..., 1]) and np.array_equal(s[..., 1], s[..., 2]))


class DisplayControl:
    """The display range of the canvas and the status bar's hover labels (it owns the labels)."""

    def __init__(self, canvas: MaskCanvas, panel: DisplayPanel, *,
                 loaded: Callable[[], LoadedImage | None],
                 class_by_id: Callable[[int], LabelClass | None] = lambda _id: None,
                 show_message: Callable[[str, int], None] = lambda text, ms: None,
                 volume_place: Callable[[], tuple[np.ndarray, int, str | None] | None]
                 = lambda: None) -> None:
        self.canvas = canvas
        # for a slice of a volume: (4x4 voxel (col, row, slice) -> patient mm, slice, modality)
        self._volume_place = volume_place
        self.panel = panel
        self._loaded = loaded
        self._class_by_id = class_by_id
        self._show_message = show_message
        self.preset: str | None = None   # None: chosen per image (natural colour or auto contrast)
        self.position_label = QLabel("")
        self.value_label = QLabel("")
        self.class_label = QLabel("")
        self.zoom_label = QLabel("")
        panel.preset_chosen.connect(self.apply_preset)
        panel.range_edited.connect(self._on_range_edited)
        panel.opacity_changed.connect(canvas.set_opacity)
        panel.paint_range_changed.connect(lambda rng: setattr(canvas, "paint_range", rng))
        canvas.hovered.connect(self._on_canvas_hovered)
        canvas.view_changed.connect(self._on_canvas_view_changed)

    @property
    def labels(self) -> tuple[QLabel, ...]:
        """For the status bar, in the order they read."""
        return self.position_label, self.value_label, self.class_label, self.zoom_label

    def show(self, loaded: LoadedImage, doc: ImageDocument, same_volume: bool = False,
             view: tuple[float, float, float] | None = None) -> None:
        """Put a newly opened image on the canvas in its range, and the range in the panel.

        The next slice of the same volume keeps the view and, unless the header's window is
        asked for, the contrast: an auto range per slice would flicker from slice to slice."""
        preset = self.preset or default_preset(loaded)
        if same_volume and preset != HEADER and self.canvas.image_data is not None:
            rng = self.canvas.display_range
        else:
            rng = self.range_for(preset, loaded)
        self.canvas.set_content(loaded.data, doc, rng, keep_view=same_volume, view=view)
        self.panel.show_range(rng, preset)

    def range_for(self, preset: str, loaded: LoadedImage) -> DisplayRange:
        data = loaded.data
        if preset == FULL:
            if data.dtype.kind == "f":
                s = sample_pixels(data)
                return DisplayRange(float(np.nanmin(s)), float(np.nanmax(s)) + 1e-6)
            return full_range(data.dtype)
        if preset == HEADER and loaded.info.window:
            return DisplayRange.from_window(*loaded.info.window)
        if preset in CT_PRESETS:
            return DisplayRange.from_window(*CT_PRESETS[preset])
        if preset == MANUAL:
            return self.canvas.display_range
        return auto_range(data)

    def apply_preset(self, preset: str) -> None:
        """Use `preset` for this image and the next ones (until the user picks another)."""
        self.preset = preset
        loaded = self._loaded()
        if loaded is None:
            return
        if preset == HEADER and not loaded.info.window:
            self._show_message("This file's header has no window; using auto contrast", 4000)
        rng = self.range_for(preset, loaded)
        self.canvas.set_display_range(rng)
        self.panel.show_range(rng)

    def _on_range_edited(self, rng: DisplayRange) -> None:
        self.preset = MANUAL
        self.canvas.set_display_range(rng)

    # -- status bar ------------------------------------------------------------------------
    def _on_canvas_hovered(self, y: int, x: int) -> None:
        loaded = self._loaded()
        if y < 0 or loaded is None or self.canvas.document is None:
            self.position_label.setText("")
            self.value_label.setText("")
            self.class_label.setText("")
            return
        v = np.asarray(loaded.data[y, x])
        value = ", ".join(f"{t:.4g}" if v.dtype.kind == "f" else str(int(t)) for t in v.ravel()[:4])
        cid = int(self.canvas.document.mask[y, x])
        c = self._class_by_id(cid)
        place = self._volume_place()
        if place is None:
            self.position_label.setText(f"y {y}, x {x}")
            self.value_label.setText(f"value {value}")
        else:
            affine, k, modality = place
            mm = affine @ np.array([x, y, k, 1.0])
            self.position_label.setText(f"y {y}, x {x}, slice {k + 1} · "
                                        f"({mm[0]:.1f}, {mm[1]:.1f}, {mm[2]:.1f}) mm")
            self.value_label.setText(f"{value} HU" if modality == "CT" else f"value {value}")
        name = "unlabeled" if cid == UNLABELED else (c.name if c else f"class {cid}")
        objects = self.canvas.document.objects
        oid = int(objects[y, x]) if objects is not None else 0
        self.class_label.setText(f"{name}, object {oid}" if oid else name)

    def _on_canvas_view_changed(self) -> None:
        self.zoom_label.setText(zoom_percent(self.canvas.zoom))
