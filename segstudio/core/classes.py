"""Label classes: ids, names and colours, with a colour-blind-safe default palette."""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, replace

import numpy as np

BACKGROUND = 0
UNLABELED = 255  # "not labelled yet": ignored by losses and metrics
MAX_CLASSES = 255  # ids 0..254; 255 is reserved for unlabeled

# Okabe & Ito's palette, which stays distinct under the common colour-vision deficiencies.
PALETTE = ("#56B4E9", "#E69F00", "#009E73", "#CC79A7", "#0072B2", "#D55E00", "#F0E442", "#000000")
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
MAX_NAME_LENGTH = 64
# categories that break a one-line name: controls (newline, tab, NUL), invisible format
# characters (zero-width joiners, bidi overrides) and the Unicode line/paragraph separators
_CONTROL_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")
_LINE_BREAKS = set("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_RULE = f"class names are one line of at most {MAX_NAME_LENGTH} characters"

log = logging.getLogger(__name__)


class ClassError(ValueError):
    """A class list that cannot be used (duplicate ids or names, bad colour)."""


@dataclass(frozen=True)
class LabelClass:
    id: int
    name: str
    color: str
    visible: bool = True
    objects: bool = False      # an instance class: each pixel also carries an object id


    @property
    def rgb(self) -> tuple[int, int, int]:
        return int(self.color[1:3], 16), int(self.color[3:5], 16), int(self.color[5:7], 16)


def class_record(c: LabelClass) -> dict:
    """The manifest record of a class; `objects` only when set, so old readers see old files."""
    d = {"id": c.id, "name": c.name, "color": c.color, "visible": c.visible}
    if c.objects:
        d["objects"] = True
    return d


def object_class_ids(classes: list[LabelClass]) -> frozenset[int]:
    """Ids of the classes whose labels carry object ids."""
    return frozenset(c.id for c in classes if c.objects)


def default_color(class_id: int) -> str:
    return PALETTE[class_id % len(PALETTE)]


def _shown(name: str) -> str:
    """The name as a message shows it: escapes visible, a huge name cut short."""
    return repr(name) if len(name) <= 80 else f"{name[:40]!r}... ({len(name)} characters)"


def validate_class_name(name: object) -> str:
    """The name without surrounding whitespace; raises ClassError if it cannot be a class name.

    Names end up as one line of classes.txt, a YAML scalar, a CSV cell and a menu entry, so a
    line break, tab or NUL would shift ids or break those files.
    """
    if not isinstance(name, str):
        raise ClassError(f"class name {name!r} is {type(name).__name__}, not text; {_RULE}")
    stripped = name.strip()
    if not stripped:
        raise ClassError(f"class name {name!r} is empty; {_RULE}")
    if len(stripped) > MAX_NAME_LENGTH:
        raise ClassError(f"class name {_shown(stripped)} is {len(stripped)} characters long; "
                         f"{_RULE}")
    bad = [ch for ch in stripped if unicodedata.category(ch) in _CONTROL_CATEGORIES]
    if bad:
        if any(ch in _LINE_BREAKS for ch in bad):
            what = "a line break"
        elif "\t" in bad:
            what = "a tab"
        elif "\0" in bad:
            what = "a NUL character"
        else:
            what = f"the invisible control character U+{ord(bad[0]):04X}"
        raise ClassError(f"class name {_shown(stripped)} contains {what}; {_RULE}")
    return stripped


def source_class_name(value: object) -> str:
    """A class name read from another tool's file: text (or a plain number, as YOLO's
    `names: {0: 1}` has), checked like any other name; raises ClassError."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return validate_class_name(value)


def clean_class_name(name: str) -> str:
    """A usable name from one read off disk: control characters become spaces, cut to length.

    For names saved before they were checked (an old project.json): refusing them would
    leave the project unopenable. May return "" (the caller picks a fallback).
    """
    text = "".join(" " if unicodedata.category(ch) in _CONTROL_CATEGORIES else ch
                   for ch in str(name))
    return " ".join(text.split())[:MAX_NAME_LENGTH].strip()


def clean_classes(classes: list[LabelClass], where: str = "project") -> list[LabelClass]:
    """The classes with every name made valid (see clean_class_name), each change logged.

    A name that cleans to nothing becomes 'class <id>'; one that would then equal another
    class's name gets its id appended, so the list still validates.
    """
    out: list[LabelClass] = []
    taken = {c.name.casefold() for c in classes}
    for c in classes:
        try:
            if validate_class_name(c.name) == c.name:
                out.append(c)
                continue
        except ClassError:
            pass
        name = clean_class_name(c.name) or f"class {c.id}"
        if name.casefold() != c.name.casefold() and name.casefold() in taken:
            name = f"{name[:MAX_NAME_LENGTH - 8]} ({c.id})"
        taken.add(name.casefold())
        log.warning("%s: class %d name %s is not a valid class name; using %r (%s)",
                    where, c.id, _shown(c.name), name, _RULE)
        out.append(replace(c, name=name))
    return out


def validate_classes(classes: list[LabelClass]) -> None:
    """Raises ClassError for duplicate ids or names, bad names, ids or colours."""
    ids = [c.id for c in classes]
    names = [c.name.casefold() for c in classes]
    if len(set(ids)) != len(ids):
        raise ClassError(f"duplicate class ids: {sorted(ids)}")
    if len(set(names)) != len(names):
        raise ClassError(f"duplicate class names: {[c.name for c in classes]}")
    for c in classes:
        if not 0 <= c.id < MAX_CLASSES:
            raise ClassError(f"class id {c.id} of '{c.name}' is outside 0..{MAX_CLASSES - 1}")
        validate_class_name(c.name)
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
