"""Label classes: ids, names and colours, with a colour-blind-safe default palette."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

BACKGROUND = 0
UNLABELED = 255  # "not labelled yet": ignored by losses and metrics
MAX_CLASSES = 255  # ids 0..254; 255 is reserved for unlabeled

# Okabe & Ito's palette, which stays distinct under the common colour-vision deficiencies.
PALETTE = ("#56B4E9", "#E69F00", "#009E73", "#CC79A7", "#0072B2", "#D55E00", "#F0E442", "#000000")
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


class ClassError(ValueError):
    """A class list that cannot be used (duplicate ids or names, bad colour)."""


@dataclass(frozen=True)
class LabelClass:
    id: int
    name: str
    color: str
    visible: bool = True

    @property
    def rgb(self) -> tuple[int, int, int]:
        return int(self.color[1:3], 16), int(self.color[3:5], 16), int(self.color[5:7], 16)


def default_color(class_id: int) -> str:
    return PALETTE[class_id % len(PALETTE)]


def validate_classes(classes: list[LabelClass]) -> None:
    ids = [c.id for c in classes]
    names = [c.name.casefold() for c in classes]
    if len(set(ids)) != len(ids):
        raise ClassError(f"duplicate class ids: {sorted(ids)}")
    if len(set(names)) != len(names):
        raise ClassError(f"duplicate class names: {[c.name for c in classes]}")
    for c in classes:
        if not 0 <= c.id < MAX_CLASSES:
            raise ClassError(f"class id {c.id} of '{c.name}' is outside 0..{MAX_CLASSES - 1}")
        if not c.name.strip():
            raise ClassError(f"class {c.id} has an empty name")
        if not _HEX.match(c.color):
            raise ClassError(f"class '{c.name}' has colour {c.color!r}; expected '#rrggbb'")


def next_class_id(classes: list[LabelClass]) -> int:
    used = {c.id for c in classes}
    for i in range(MAX_CLASSES):
        if i not in used:
            return i
    raise ClassError(f"a project holds at most {MAX_CLASSES} classes")


def color_lut(classes: list[LabelClass], opacity: float) -> np.ndarray:
    """256x4 uint8 RGBA lookup table: class id -> premultiplied overlay colour (255 stays clear)."""
    lut = np.zeros((256, 4), np.uint8)
    full = int(round(max(0.0, min(1.0, opacity)) * 255))
    for c in classes:
        if c.visible:
            # background is drawn fainter: it covers most of an image and the image must show
            a = full * 2 // 5 if c.id == BACKGROUND else full
            r, g, b = c.rgb
            lut[c.id] = (r * a // 255, g * a // 255, b * a // 255, a)
    lut[UNLABELED] = 0
    return lut
